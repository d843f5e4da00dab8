package kafkastream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// ErrNotBuilt is returned by the DLQReader's Redrive and Discard: the
// Kafka engine's dead-letter tool reads, it does not change (ADR 0046).
var ErrNotBuilt = errors.New("not built on the Kafka engine yet")

// DLQReader reads one topic's dead letters ("<topic>_DLQ") for the
// operator's dlq command (stream.DLQCommand): List and Inspect, with a
// dead letter's Seq being its offset in the dead-letter topic plus one
// (dead letters are numbered from 1 on both engines, as a JetStream
// stream's sequences are). It reads
// dead-letter topics of one partition (TopicConfig's default); records are
// never deleted by it. Its clients are plain (no TLS or SASL options yet).
// Redrive and Discard return ErrNotBuilt: republish a
// record with any Kafka client (its headers carry the original key,
// partition and offset), and let retention remove it.
type DLQReader struct {
	seeds []string
	topic string
	wait  time.Duration
}

var _ stream.DeadLetters = (*DLQReader)(nil)

// NewDLQReader returns the dead-letter reader of topic on the cluster at
// seeds.
func NewDLQReader(seeds []string, topic string) (*DLQReader, error) {
	if len(seeds) == 0 {
		return nil, fmt.Errorf("%w: dlq of %s: no seed brokers", stream.ErrInvalid, topic)
	}
	if err := validName("topic", topic); err != nil {
		return nil, err
	}
	return &DLQReader{seeds: seeds, topic: topic, wait: 10 * time.Second}, nil
}

// bounds returns the dead-letter topic's first and end offsets.
func (q *DLQReader) bounds(ctx context.Context) (start, end int64, err error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(q.seeds...))
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	dlq := DLQTopic(q.topic)
	n, err := TopicPartitions(ctx, adm, dlq)
	if err != nil {
		return 0, 0, err
	}
	if n != 1 {
		return 0, 0, fmt.Errorf("%w: dlq %s has %d partitions; this tool reads dead-letter topics of one", stream.ErrInvalid, dlq, n)
	}
	starts, err := adm.ListStartOffsets(ctx, dlq)
	if err != nil {
		return 0, 0, fmt.Errorf("dlq %s: start offsets: %w", dlq, err)
	}
	ends, err := adm.ListEndOffsets(ctx, dlq)
	if err != nil {
		return 0, 0, fmt.Errorf("dlq %s: end offsets: %w", dlq, err)
	}
	s, _ := starts.Lookup(dlq, 0)
	e, _ := ends.Lookup(dlq, 0)
	if s.Err != nil || e.Err != nil {
		return 0, 0, fmt.Errorf("dlq %s: offsets: %w", dlq, errors.Join(s.Err, e.Err))
	}
	return s.Offset, e.Offset, nil
}

// read calls fn with the dead letters from offset from to end, in order,
// until fn returns false.
func (q *DLQReader) read(ctx context.Context, from, end int64, fn func(stream.DeadLetter) bool) error {
	if from >= end {
		return nil
	}
	dlq := DLQTopic(q.topic)
	cl, err := kgo.NewClient(kgo.SeedBrokers(q.seeds...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{dlq: {0: kgo.NewOffset().At(from)}}))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, q.wait)
	defer cancel()
	for next := from; next < end; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("dlq %s: read up to offset %d: stopped at %d: %w", dlq, end, next, ctx.Err())
		}
		if err := fs.Err0(); err != nil {
			return fmt.Errorf("dlq %s: %w", dlq, err)
		}
		more := true
		fs.EachRecord(func(r *kgo.Record) {
			if !more || r.Offset >= end {
				return
			}
			next = r.Offset + 1
			h := make(map[string]string, len(r.Headers))
			for _, kv := range r.Headers {
				h[kv.Key] = string(kv.Value)
			}
			more = fn(stream.DeadLetterFromHeaders(uint64(r.Offset)+1, r.Timestamp, h, r.Value))
		})
		if !more {
			return nil
		}
	}
	return nil
}

// List returns up to limit dead letters (1..1000, default 100) of group
// (all groups when empty), oldest first.
func (q *DLQReader) List(ctx context.Context, group string, limit int) ([]stream.DeadLetter, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	if group != "" {
		if err := validName("group", group); err != nil {
			return nil, err
		}
	}
	start, end, err := q.bounds(ctx)
	if err != nil {
		return nil, err
	}
	var out []stream.DeadLetter
	err = q.read(ctx, start, end, func(dl stream.DeadLetter) bool {
		if group == "" || dl.Group == group {
			out = append(out, dl)
		}
		return len(out) < limit
	})
	return out, err
}

// Inspect returns dead letter seq (its offset plus one), or
// stream.ErrNotFound.
func (q *DLQReader) Inspect(ctx context.Context, seq uint64) (stream.DeadLetter, error) {
	start, end, err := q.bounds(ctx)
	if err != nil {
		return stream.DeadLetter{}, err
	}
	off := int64(seq) - 1
	if seq == 0 || off < start || off >= end {
		return stream.DeadLetter{}, fmt.Errorf("%w: no dead letter %d in %s (it holds %d..%d)", stream.ErrNotFound, seq, DLQTopic(q.topic), start+1, end)
	}
	var found stream.DeadLetter
	err = q.read(ctx, off, off+1, func(dl stream.DeadLetter) bool { found = dl; return false })
	return found, err
}

// Redrive returns ErrNotBuilt.
func (q *DLQReader) Redrive(context.Context, stream.RedriveOptions) (stream.RedriveReport, error) {
	return stream.RedriveReport{}, fmt.Errorf("dlq redrive of %s: %w (ADR 0046); republish the record with a Kafka client", DLQTopic(q.topic), ErrNotBuilt)
}

// Discard returns ErrNotBuilt.
func (q *DLQReader) Discard(context.Context, uint64, string, string) error {
	return fmt.Errorf("dlq discard of %s: %w (ADR 0046); records leave the topic with its retention", DLQTopic(q.topic), ErrNotBuilt)
}
