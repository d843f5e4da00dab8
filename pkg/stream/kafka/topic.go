package kafkastream

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// TopicConfig describes a partitioned topic and its dead-letter topic. The
// zero value of every field but Name picks the default.
type TopicConfig struct {
	// Name of the topic, e.g. "ORDERS": letters, digits, '_' and '-' (the
	// names pkg/stream allows, so one name works on both engines).
	// Required. Its dead-letter topic is "<Name>_DLQ".
	Name string
	// Partitions of the topic. Default 8. Fixed for the life of the topic:
	// EnsureTopic refuses to change it (stream.ErrPartitionsChanged),
	// because the partitioner maps keys with it.
	Partitions int
	// ReplicationFactor of both topics: 3 on a production cluster (with
	// min.insync.replicas=2, acks=all then means two copies at least).
	// Default -1, the broker's default.
	ReplicationFactor int16
	// DLQPartitions of the dead-letter topic. Default 1: dead letters are
	// few and read by a person.
	DLQPartitions int
}

// DLQTopic is the name of topic's dead-letter topic: "<topic>_DLQ", the
// same name pkg/stream gives its dead-letter stream.
func DLQTopic(topic string) string { return stream.DLQStream(topic) }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)

func validName(kind, s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%w: %s name %q must be 1-200 letters, digits, '_' or '-'", stream.ErrInvalid, kind, s)
	}
	return nil
}

func (c TopicConfig) withDefaults() TopicConfig {
	if c.Partitions == 0 {
		c.Partitions = 8
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.DLQPartitions == 0 {
		c.DLQPartitions = 1
	}
	return c
}

// EnsureTopic creates the topic and its dead-letter topic if they do not
// exist; calling it at every start is safe. An existing topic keeps its
// settings; one with another partition count than cfg's is refused with
// stream.ErrPartitionsChanged (a new count would send keys to other
// partitions and break per-key order: re-partition by creating a new
// topic, as for a JetStream stream). cl is any client of the cluster.
func EnsureTopic(ctx context.Context, cl *kgo.Client, cfg TopicConfig) error {
	cfg = cfg.withDefaults()
	if err := validName("topic", cfg.Name); err != nil {
		return err
	}
	if cfg.Partitions < 1 || cfg.Partitions > stream.MaxPartitions {
		return fmt.Errorf("%w: topic %s: partitions %d outside 1..%d", stream.ErrInvalid, cfg.Name, cfg.Partitions, stream.MaxPartitions)
	}
	adm := kadm.NewClient(cl)
	for _, t := range []struct {
		name string
		n    int
	}{{cfg.Name, cfg.Partitions}, {DLQTopic(cfg.Name), cfg.DLQPartitions}} {
		if err := ensureOne(ctx, adm, t.name, t.n, cfg.ReplicationFactor); err != nil {
			return err
		}
	}
	return nil
}

func ensureOne(ctx context.Context, adm *kadm.Client, name string, n int, rf int16) error {
	resp, err := adm.CreateTopic(ctx, int32(n), rf, nil, name)
	if err == nil && resp.Err == nil {
		return nil
	}
	if err == nil {
		err = resp.Err
	}
	if !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", name, err)
	}
	have, err := TopicPartitions(ctx, adm, name)
	if err != nil {
		return err
	}
	if have != n {
		return fmt.Errorf("%w: topic %s has %d partitions, configured %d", stream.ErrPartitionsChanged, name, have, n)
	}
	return nil
}

// TopicPartitions returns the partition count of topic; a topic that does
// not exist is an error wrapping kerr.UnknownTopicOrPartition.
func TopicPartitions(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describe topic %s: %w", topic, err)
	}
	d, ok := details[topic]
	if !ok {
		return 0, fmt.Errorf("describe topic %s: %w", topic, kerr.UnknownTopicOrPartition)
	}
	if d.Err != nil {
		return 0, fmt.Errorf("describe topic %s: %w", topic, d.Err)
	}
	return len(d.Partitions), nil
}

// subject names a partition in logs and dead-letter headers:
// "<topic>.<partition>", like a JetStream subject's last token.
func subject(topic string, p int32) string { return topic + "." + strconv.Itoa(int(p)) }
