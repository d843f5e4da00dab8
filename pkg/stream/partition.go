package stream

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
)

// Partition returns the partition of key among n: FNV-1a 32-bit of the key's
// bytes, mod n. It is stable across processes and releases (a test pins it
// with fixed vectors). It panics if n < 1, a programming error.
func Partition(key string, n int) int {
	if n < 1 {
		panic(fmt.Sprintf("stream: Partition with n = %d", n))
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key)) // hash.Hash.Write never fails
	return int(h.Sum32() % uint32(n))
}

// Subject is the subject of partition p of stream: "<stream>.events.<p>".
func Subject(stream string, p int) string {
	return stream + ".events." + strconv.Itoa(p)
}

// SubjectForKey is the subject a message with key goes to in a stream of n
// partitions.
func SubjectForKey(stream, key string, n int) string {
	return Subject(stream, Partition(key, n))
}

// DLQStream is the name of stream's dead-letter stream: "<stream>_DLQ".
func DLQStream(stream string) string { return stream + "_DLQ" }

// dlqSubject is where group's dead letters of stream go.
func dlqSubject(stream, group string) string { return DLQStream(stream) + "." + group }

// name is what stream and group names may contain: they become subject
// tokens and consumer names, where '.', '*', '>' and spaces are not allowed.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)

func validName(kind, s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%w: %s name %q must be 1-200 letters, digits, '_' or '-'", ErrInvalid, kind, s)
	}
	return nil
}

// MaxPartitions bounds Partitions: one durable consumer per partition per
// group is cheap, thousands are not.
const MaxPartitions = 1024

// CheckPartitions reports, in a configuration error's words, each
// partition count that is not 1..MaxPartitions; name is the variable
// ("ORDERS_PARTITIONS").
func CheckPartitions(name string, n int) error {
	if n < 1 || n > MaxPartitions {
		return fmt.Errorf("%s: must be 1..%d (got %d)", name, MaxPartitions, n)
	}
	return nil
}
