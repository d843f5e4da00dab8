package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
)

// Stream dead letters (ORDERS_DLQ …) are listed, inspected and redriven
// through pkg/stream's DLQ, the code behind every service's `dlq` command,
// with the same rules: bodies shown with PersonalFields redacted, a
// redrive names its consumer group (redrive one consumer's failures once
// that consumer is fixed) and is rate-bounded.

// DLQStreams are the streams whose dead letters the console shows.
var DLQStreams = []string{"ORDERS", "PAYMENTS", "CATALOG"}

// StreamDeadLetters is one stream's dead-letter stream with its first
// messages.
type StreamDeadLetters struct {
	Stream  string
	Letters []StreamDeadLetter
	Err     string
	// Redrivable is false on the Kafka engine: its dead letters are read
	// only (ADR 0046).
	Redrivable bool
}

// StreamDeadLetter is a dead letter as the console shows it: the payload
// redacted (stream.RedactPersonal).
type StreamDeadLetter struct {
	stream.DeadLetter
	Redacted json.RawMessage
}

// Type is the event's type (its metadata header).
func (d StreamDeadLetter) Type() string { return d.Headers[events.MetaType] }

// PayloadText is the redacted payload indented for reading.
func (d StreamDeadLetter) PayloadText() string {
	return DeadLetter{Body: d.Redacted}.BodyText()
}

type streamDLQs struct {
	mu       sync.Mutex
	open     func(name string) (stream.DeadLetters, error) // nil: not enabled
	readOnly bool                                          // Kafka: list and inspect only
	names    []string
	dlq      map[string]stream.DeadLetters
}

// EnableStreamDLQs lets the console read and redrive the dead letters of
// streams (none: DLQStreams) through js (a connection to the sandbox's
// NATS, not through its Toxiproxy link: cutting the link must not blind
// the console).
func (c *Console) EnableStreamDLQs(js jetstream.JetStream, streams ...string) {
	c.enableStreamDLQs(func(name string) (stream.DeadLetters, error) { return stream.NewDLQ(js, name, nil) }, streams)
}

// EnableKafkaStreamDLQs is EnableStreamDLQs for a sandbox whose streams
// run on Kafka (ADR 0046): the dead-letter topics of the cluster at seeds,
// listed and inspected; a redrive answers that it is not built on Kafka.
func (c *Console) EnableKafkaStreamDLQs(seeds []string, streams ...string) {
	c.enableStreamDLQs(func(name string) (stream.DeadLetters, error) { return kafkastream.NewDLQReader(seeds, name) }, streams)
	c.streams.readOnly = true
}

// StreamDLQsRedrivable reports whether the stream dead letters can be
// redriven from the console (JetStream's; Kafka's are read only).
func (c *Console) StreamDLQsRedrivable() bool { return c.streams.open != nil && !c.streams.readOnly }

func (c *Console) enableStreamDLQs(open func(string) (stream.DeadLetters, error), streams []string) {
	if len(streams) == 0 {
		streams = DLQStreams
	}
	c.streams.open, c.streams.names = open, streams
}

// StreamDLQsEnabled reports whether the console can read stream dead
// letters.
func (c *Console) StreamDLQsEnabled() bool { return c.streams.open != nil }

func (c *Console) streamDLQ(name string) (stream.DeadLetters, error) {
	names := c.streams.names
	if names == nil {
		names = DLQStreams
	}
	if !slices.Contains(names, name) {
		return nil, fmt.Errorf("%w: no stream %q", ErrUnknown, name)
	}
	if c.streams.open == nil {
		return nil, errors.New("this console has no connection to the streams for their dead letters")
	}
	c.streams.mu.Lock()
	defer c.streams.mu.Unlock()
	if c.streams.dlq == nil {
		c.streams.dlq = map[string]stream.DeadLetters{}
	}
	if q := c.streams.dlq[name]; q != nil {
		return q, nil
	}
	q, err := c.streams.open(name)
	if err != nil {
		return nil, err
	}
	c.streams.dlq[name] = q
	return q, nil
}

// StreamDeadLetterQueues lists every stream's first dead letters (all
// groups), asking at once.
func (c *Console) StreamDeadLetterQueues(ctx context.Context) []StreamDeadLetters {
	if c.streams.open == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out := make([]StreamDeadLetters, len(c.streams.names))
	var wg sync.WaitGroup
	for i, name := range c.streams.names {
		wg.Go(func() {
			out[i] = StreamDeadLetters{Stream: name, Redrivable: !c.streams.readOnly}
			q, err := c.streamDLQ(name)
			if err != nil {
				out[i].Err = err.Error()
				return
			}
			dls, err := q.List(ctx, "", deadLetterLimit)
			if err != nil {
				out[i].Err = err.Error()
			}
			for _, d := range dls {
				out[i].Letters = append(out[i].Letters, redacted(d))
			}
		})
	}
	wg.Wait()
	return out
}

// StreamDeadLetter returns one dead letter of stream name.
func (c *Console) StreamDeadLetter(ctx context.Context, name string, seq uint64) (StreamDeadLetter, error) {
	q, err := c.streamDLQ(name)
	if err != nil {
		return StreamDeadLetter{}, err
	}
	d, err := q.Inspect(ctx, seq)
	if err != nil {
		return StreamDeadLetter{}, err
	}
	return redacted(d), nil
}

// RedriveStream publishes group's dead letters of stream name (seqs; none:
// every one of the group's) again to their partitions, at RedriveRate per
// second.
func (c *Console) RedriveStream(ctx context.Context, name, group string, seqs []uint64) (stream.RedriveReport, error) {
	q, err := c.streamDLQ(name)
	if err != nil {
		return stream.RedriveReport{}, err
	}
	return q.Redrive(ctx, stream.RedriveOptions{Group: group, Seqs: seqs, RatePerSecond: RedriveRate})
}

func redacted(d stream.DeadLetter) StreamDeadLetter {
	r := json.RawMessage(`"[not JSON, not shown]"`)
	if json.Valid(d.Payload) {
		r = stream.RedactPersonal(d.Payload)
	}
	d.Payload = nil // only the redacted copy leaves the console
	return StreamDeadLetter{DeadLetter: d, Redacted: r}
}
