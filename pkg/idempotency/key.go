package idempotency

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/fnv"
	"strings"
)

// HeaderKey is the request header field that carries the idempotency key.
const HeaderKey = "Idempotency-Key"

// HeaderReplayed is set to "true" on a response that is a replay of the
// stored response of an earlier request with the same key (Stripe's name).
// It is absent from the response of the request that did the work.
const HeaderReplayed = "Idempotent-Replayed"

// MaxKeyLength is the longest key accepted, in bytes (Stripe's limit). The
// IETF draft recommends a UUID (36 bytes) or another random value with
// enough entropy.
const MaxKeyLength = 255

// parseKey returns the key carried by the Idempotency-Key field values of a
// request, or errKeyMissing / errKeyInvalid.
//
// The IETF draft defines the field as an Item Structured Header whose value
// MUST be a String (RFC 8941: "8e03978e-…", quoted), and says a client MUST
// NOT send the field more than once. Many clients (Stripe's among them) send
// the bare value, so both forms are accepted and name the same key: `"abc"`
// and `abc` are one key. A quoted key may use the escapes \" and \\ only.
func parseKey(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", errKeyMissing("")
	case 1:
	default:
		return "", errKeyInvalid("send the Idempotency-Key header exactly once")
	}
	v := strings.Trim(values[0], " \t")
	if v == "" {
		return "", errKeyMissing("the Idempotency-Key header is empty")
	}
	if v[0] == '"' {
		key, ok := unquote(v)
		if !ok {
			return "", errKeyInvalid(`the Idempotency-Key header is not a valid quoted string; send "<key>" or the bare key, with 1 to 255 printable ASCII characters`)
		}
		v = key
	}
	if err := checkKey(v); err != nil {
		return "", err
	}
	return v, nil
}

// unquote decodes an RFC 8941 sf-string: DQUOTE *( unescaped / "\" ( DQUOTE
// / "\" ) ) DQUOTE, where unescaped is printable ASCII but DQUOTE and "\".
// Nothing may follow the closing quote.
func unquote(s string) (string, bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			i++
			if i >= len(s) || (s[i] != '"' && s[i] != '\\') {
				return "", false
			}
			b.WriteByte(s[i])
		case c == '"':
			return b.String(), i == len(s)-1
		case c < 0x20 || c > 0x7e:
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return "", false // no closing quote
}

// checkKey enforces the key rules Do applies to every Request: 1 to
// MaxKeyLength bytes of printable ASCII (space to tilde).
func checkKey(key string) error {
	if key == "" {
		return errKeyMissing("")
	}
	if len(key) > MaxKeyLength {
		return errKeyInvalid("the Idempotency-Key is longer than 255 characters; send a UUID or another random value of at most 255 printable ASCII characters")
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return errKeyInvalid("the Idempotency-Key may contain only printable ASCII characters; send a UUID")
		}
	}
	return nil
}

// fingerprint is the SHA-256 of the request's method, path and body, each
// preceded by its length so that no two different requests share an
// encoding ("POST", "/a" + "b" differs from "POST", "/ab" + "").
func fingerprint(method, path string, body []byte) []byte {
	h := sha256.New()
	var n [8]byte
	for _, part := range [][]byte{[]byte(method), []byte(path), body} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return h.Sum(nil)
}

// lockID maps (scope, key) to the second key of the transaction advisory
// lock that marks a request in flight. Two different keys may share an id
// (32 bits); the only effect is that one of them, when both are in flight
// at the same instant, is answered 409 and retried by its client.
func lockID(scope, key string) int32 {
	b := binary.BigEndian.AppendUint64(nil, uint64(len(scope)))
	b = append(append(b, scope...), key...)
	h := fnv.New32a()
	_, _ = h.Write(b) // a hash.Hash never returns an error
	return int32(h.Sum32())
}
