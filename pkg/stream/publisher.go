package stream

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers that pkg/stream sets on every message it publishes.
const (
	// HeaderEventID carries the message ID. It survives a redrive (which
	// publishes with a new Nats-Msg-Id), so consumers de-duplicate by it.
	HeaderEventID = "Shopfloor-Event-Id"
	// HeaderKey carries the message key, which picked the partition.
	HeaderKey = "Shopfloor-Key"
)

// Message is one message to publish.
type Message struct {
	// ID identifies the message (the event ID). Required. It is sent as
	// Nats-Msg-Id for the broker's publish de-duplication and as
	// Shopfloor-Event-Id for the consumers'.
	ID string
	// Key picks the partition (an order id, a product id). Required: all
	// messages of one key are consumed in publish order.
	Key string
	// Payload is the message body.
	Payload []byte
	// Headers travel with the message (a traceparent, the event type).
	// Nats-Msg-Id, Shopfloor-Event-Id and Shopfloor-Key are set by the
	// publisher and override values given here.
	Headers map[string]string
}

// Ack is the broker's acknowledgement of one published message.
type Ack struct {
	// Partition the message went to.
	Partition int
	// Sequence is the message's stream sequence (for a duplicate: the
	// sequence of the message stored first, when the broker reports it).
	Sequence uint64
	// Duplicate is true when the broker dropped the message as a re-publish
	// of an ID seen inside the duplicate window.
	Duplicate bool
}

// Result is the outcome of one message of PublishAsync.
type Result struct {
	Ack Ack
	// Err is nil when the broker acknowledged the message (stored or
	// dropped as a duplicate: either way it is in the stream).
	Err error
}

// PublisherOption configures a Publisher.
type PublisherOption func(*Publisher)

// WithInject sets a function that writes the trace context of ctx into a
// message's headers (e.g. pkg/telemetry's propagator). It is called once
// per message with a copy of Message.Headers that it may modify.
func WithInject(inject func(ctx context.Context, headers map[string]string)) PublisherOption {
	return func(p *Publisher) { p.inject = inject }
}

// WithAckTimeout bounds how long PublishAsync waits for the broker's
// acknowledgements of one call, and how long a publish waits when too many
// are outstanding. Default 5s.
func WithAckTimeout(d time.Duration) PublisherOption {
	return func(p *Publisher) {
		if d > 0 {
			p.ackTimeout = d
		}
	}
}

// Publisher publishes keyed messages to the partitions of one stream. It is
// safe for concurrent use.
type Publisher struct {
	js         jetstream.JetStream
	stream     string
	partitions int
	inject     func(context.Context, map[string]string)
	ackTimeout time.Duration
}

// NewPublisher returns a publisher to stream, which has partitions
// partitions (the count it was created with: EnsureStream's config, or
// StreamPartitions). A wrong count sends keys to the wrong partitions; it is
// the caller's to get right, which is why the stream records it.
func NewPublisher(js jetstream.JetStream, stream string, partitions int, opts ...PublisherOption) (*Publisher, error) {
	if js == nil {
		return nil, invalidf("publisher: nil JetStream")
	}
	if err := validName("stream", stream); err != nil {
		return nil, err
	}
	if partitions < 1 || partitions > MaxPartitions {
		return nil, invalidf("publisher %s: partitions %d outside 1..%d", stream, partitions, MaxPartitions)
	}
	p := &Publisher{js: js, stream: stream, partitions: partitions, ackTimeout: 5 * time.Second}
	for _, o := range opts {
		o(p)
	}
	return p, nil
}

// Subject returns the subject a message with key is published to.
func (p *Publisher) Subject(key string) string { return SubjectForKey(p.stream, key, p.partitions) }

func (p *Publisher) msg(ctx context.Context, m Message) (*nats.Msg, int, error) {
	if m.ID == "" {
		return nil, 0, invalidf("publish to %s: message without ID (de-duplication needs one)", p.stream)
	}
	if m.Key == "" {
		return nil, 0, invalidf("publish %s to %s: message without key (the key picks the partition)", m.ID, p.stream)
	}
	part := Partition(m.Key, p.partitions)
	nm := nats.NewMsg(Subject(p.stream, part))
	nm.Data = m.Payload
	headers := maps.Clone(m.Headers)
	if headers == nil {
		headers = map[string]string{}
	}
	if p.inject != nil {
		p.inject(ctx, headers)
	}
	for k, v := range headers {
		nm.Header.Set(k, v)
	}
	nm.Header.Set(jetstream.MsgIDHeader, m.ID)
	nm.Header.Set(HeaderEventID, m.ID)
	nm.Header.Set(HeaderKey, m.Key)
	return nm, part, nil
}

// Publish sends m and waits for the broker's acknowledgement. A nil error
// means the message is in the stream (Ack.Duplicate: it already was). On an
// error the message may or may not be stored; publishing it again with the
// same ID is safe inside the duplicate window.
func (p *Publisher) Publish(ctx context.Context, m Message) (Ack, error) {
	nm, part, err := p.msg(ctx, m)
	if err != nil {
		return Ack{}, err
	}
	pa, err := p.js.PublishMsg(ctx, nm, jetstream.WithExpectStream(p.stream))
	if err != nil {
		return Ack{Partition: part}, fmt.Errorf("publish %s to %s: %w", m.ID, nm.Subject, err)
	}
	return Ack{Partition: part, Sequence: pa.Sequence, Duplicate: pa.Duplicate}, nil
}

// PublishAsync sends every message without waiting between them, then waits
// for all acknowledgements (at most the ack timeout in total) and returns
// one Result per message, in the order of msgs. Use it to publish a batch
// (the outbox relay) and mark exactly the acknowledged ones as published.
//
// Order: messages are sent in slice order on one connection, so messages of
// one key are stored in that order when all succeed. When one fails, later
// messages of the same key in the same batch may still have been stored;
// a caller that needs strict per-key order must not send a key's next
// message before the previous one was acknowledged (the outbox relay
// publishes in rounds for that reason).
func (p *Publisher) PublishAsync(ctx context.Context, msgs []Message) []Result {
	results := make([]Result, len(msgs))
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		nm, part, err := p.msg(ctx, m)
		results[i].Ack.Partition = part
		if err != nil {
			results[i].Err = err
			continue
		}
		futures[i], err = p.js.PublishMsgAsync(nm, jetstream.WithExpectStream(p.stream), jetstream.WithStallWait(p.ackTimeout))
		if err != nil {
			results[i].Err = fmt.Errorf("publish %s to %s: %w", m.ID, nm.Subject, err)
		}
	}
	timer := time.NewTimer(p.ackTimeout)
	defer timer.Stop()
	expired := false
	for i, f := range futures {
		if f == nil {
			continue
		}
		if expired {
			// The deadline has passed: take what has arrived, wait no more.
			select {
			case pa := <-f.Ok():
				results[i].Ack.Sequence, results[i].Ack.Duplicate = pa.Sequence, pa.Duplicate
			case err := <-f.Err():
				results[i].Err = fmt.Errorf("publish %s: %w", msgs[i].ID, err)
			default:
				results[i].Err = fmt.Errorf("publish %s: no acknowledgement within %s: %w", msgs[i].ID, p.ackTimeout, context.DeadlineExceeded)
			}
			continue
		}
		select {
		case pa := <-f.Ok():
			results[i].Ack.Sequence, results[i].Ack.Duplicate = pa.Sequence, pa.Duplicate
		case err := <-f.Err():
			results[i].Err = fmt.Errorf("publish %s: %w", msgs[i].ID, err)
		case <-timer.C:
			expired = true
			results[i].Err = fmt.Errorf("publish %s: no acknowledgement within %s: %w", msgs[i].ID, p.ackTimeout, context.DeadlineExceeded)
		case <-ctx.Done():
			expired = true
			results[i].Err = fmt.Errorf("publish %s: %w", msgs[i].ID, ctx.Err())
		}
	}
	return results
}
