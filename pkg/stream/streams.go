package stream

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// metaPartitions is the stream metadata key that records the partition count.
const metaPartitions = "shopfloor.partitions"

// StreamConfig describes a partitioned stream and its dead-letter stream.
// The zero value of every field but Name picks the default.
type StreamConfig struct {
	// Name of the stream, e.g. "ORDERS": letters, digits, '_' and '-'.
	// Required. Its subjects are "<Name>.events.<partition>"; its
	// dead-letter stream is "<Name>_DLQ".
	Name string
	// Partitions is the number of partitions. Default 8. Fixed for the life
	// of the stream: EnsureStream refuses to change it (ErrPartitionsChanged).
	Partitions int
	// Replicas of each message: 1 on a single server, 3 in a cluster.
	// Default 1.
	Replicas int
	// MaxAge drops messages older than this. Default 7 days. Replays and
	// new groups can only see what is still retained.
	MaxAge time.Duration
	// MaxBytes bounds the stream's size; the oldest messages go first.
	// Default -1 (unbounded; MaxAge bounds it).
	MaxBytes int64
	// Duplicates is the publish de-duplication window: a message with a
	// Nats-Msg-Id seen within it is dropped. Default 2 minutes.
	Duplicates time.Duration
	// Storage is file (the default, survives restarts) or memory.
	Storage jetstream.StorageType
	// DLQMaxAge drops dead letters older than this. Default 30 days: long
	// enough for a person to look at them after a holiday.
	DLQMaxAge time.Duration
}

// DefaultDLQMaxAge is how long a dead-letter stream keeps a dead letter
// (StreamConfig.DLQMaxAge's default): the horizon of a redrive. Consumers
// keep their inbox claims a day longer (inbox.Retention).
const DefaultDLQMaxAge = 30 * 24 * time.Hour

func (c StreamConfig) withDefaults() StreamConfig {
	if c.Partitions == 0 {
		c.Partitions = 8
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxAge == 0 {
		c.MaxAge = 7 * 24 * time.Hour
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = -1
	}
	if c.Duplicates == 0 {
		c.Duplicates = 2 * time.Minute
	}
	if c.DLQMaxAge == 0 {
		c.DLQMaxAge = DefaultDLQMaxAge
	}
	return c
}

func (c StreamConfig) validate() error {
	if err := validName("stream", c.Name); err != nil {
		return err
	}
	switch {
	case c.Partitions < 1 || c.Partitions > MaxPartitions:
		return invalidf("stream %s: partitions %d outside 1..%d", c.Name, c.Partitions, MaxPartitions)
	case c.Replicas < 1 || c.Replicas > 5:
		return invalidf("stream %s: replicas %d outside 1..5", c.Name, c.Replicas)
	case c.MaxAge < 0 || c.DLQMaxAge < 0 || c.Duplicates < 0:
		return invalidf("stream %s: negative duration", c.Name)
	case c.Duplicates > c.MaxAge:
		return invalidf("stream %s: duplicate window %s longer than MaxAge %s", c.Name, c.Duplicates, c.MaxAge)
	case c.MaxBytes < -1:
		return invalidf("stream %s: MaxBytes %d (use -1 for unbounded)", c.Name, c.MaxBytes)
	case c.Storage != jetstream.FileStorage && c.Storage != jetstream.MemoryStorage:
		return invalidf("stream %s: unknown storage type %d", c.Name, c.Storage)
	}
	return nil
}

// EnsureStream creates the stream and its dead-letter stream, or updates them
// to cfg if they exist; calling it at every start is safe. It refuses with
// ErrPartitionsChanged when the stream exists with another partition count,
// and with ErrInvalid when a stream of that name exists that pkg/stream did
// not create (no partition count in its metadata). Limits (MaxAge, MaxBytes,
// Duplicates, Replicas) are updated in place; the broker itself refuses
// changes it cannot make, such as the storage type.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	meta := map[string]string{}
	existing, err := js.Stream(ctx, cfg.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return fmt.Errorf("stream %s: look up: %w", cfg.Name, err)
	default:
		info := existing.CachedInfo()
		have, err := partitionsOf(info)
		if err != nil {
			return err
		}
		if have != cfg.Partitions {
			return fmt.Errorf("%w: stream %s has %d partitions, config asks for %d; changing it remaps keys to other partitions and breaks per-key order (create a new stream and migrate instead)",
				ErrPartitionsChanged, cfg.Name, have, cfg.Partitions)
		}
		maps.Copy(meta, info.Config.Metadata)
	}
	meta[metaPartitions] = strconv.Itoa(cfg.Partitions)

	sc := jetstream.StreamConfig{
		Name:        cfg.Name,
		Description: "shopfloor partitioned stream (pkg/stream): " + strconv.Itoa(cfg.Partitions) + " partitions, subject " + cfg.Name + ".events.<partition>",
		Subjects:    []string{cfg.Name + ".events.*"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     cfg.Storage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cfg.MaxBytes,
		Duplicates:  cfg.Duplicates,
		Discard:     jetstream.DiscardOld,
		AllowDirect: true,
		Metadata:    meta,
	}
	if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
		return fmt.Errorf("stream %s: create or update: %w", cfg.Name, err)
	}
	dlq := jetstream.StreamConfig{
		Name:        DLQStream(cfg.Name),
		Description: "dead letters of stream " + cfg.Name + " (pkg/stream), subject " + DLQStream(cfg.Name) + ".<group>",
		Subjects:    []string{DLQStream(cfg.Name) + ".*"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     cfg.Storage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.DLQMaxAge,
		MaxBytes:    -1,
		Duplicates:  min(cfg.Duplicates, cfg.DLQMaxAge),
		Discard:     jetstream.DiscardOld,
		AllowDirect: true,
	}
	if _, err := js.CreateOrUpdateStream(ctx, dlq); err != nil {
		return fmt.Errorf("stream %s: create or update: %w", dlq.Name, err)
	}
	return nil
}

// BindStream checks that a stream another service owns is there to be
// consumed: the stream, with partitions partitions, and its dead-letter
// stream. It creates and changes nothing, so a consumer needs no right
// to create or update its producer's streams (ADR 0039): only the owner
// calls EnsureStream. An error wrapping jetstream.ErrStreamNotFound means
// the owner has not created it yet (retry); ErrPartitionsChanged means
// the consumer is configured for another partition count than the
// stream has.
func BindStream(ctx context.Context, js jetstream.JetStream, name string, partitions int) error {
	have, err := StreamPartitions(ctx, js, name)
	if err != nil {
		return fmt.Errorf("%w (its owner creates it)", err)
	}
	if have != partitions {
		return fmt.Errorf("%w: stream %s has %d partitions, config asks for %d",
			ErrPartitionsChanged, name, have, partitions)
	}
	if _, err := js.Stream(ctx, DLQStream(name)); err != nil {
		return fmt.Errorf("stream %s: look up: %w (its owner creates it)", DLQStream(name), err)
	}
	return nil
}

// StreamPartitions returns the partition count recorded in an existing
// stream's metadata.
func StreamPartitions(ctx context.Context, js jetstream.JetStream, stream string) (int, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: look up: %w", stream, err)
	}
	return partitionsOf(s.CachedInfo())
}

func partitionsOf(info *jetstream.StreamInfo) (int, error) {
	v, ok := info.Config.Metadata[metaPartitions]
	n, err := strconv.Atoi(v)
	if !ok || err != nil || n < 1 {
		return 0, invalidf("stream %s exists but was not created by pkg/stream (metadata %s = %q); refusing to guess its partition count",
			info.Config.Name, metaPartitions, v)
	}
	return n, nil
}
