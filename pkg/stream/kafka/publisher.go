package kafkastream

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// Partitioner sends a record to stream.Partition(key, n) of its topic's n
// partitions: the partition number a key gets is the same on both engines
// (FNV-1a 32 of the key's bytes, mod n), which Kafka's default (murmur2)
// would not give. A record without a key goes to partition 0 (the
// Publisher refuses such records; other producers of the client may not).
func Partitioner() kgo.Partitioner {
	return kgo.BasicConsistentPartitioner(func(string) func(r *kgo.Record, n int) int {
		return func(r *kgo.Record, n int) int { return stream.Partition(string(r.Key), n) }
	})
}

// ClientOpts are the options every client of this package starts with:
// seed brokers, acks from all in-sync replicas, the idempotent producer
// (franz-go's default, kept on: a retried produce is written once and in
// order, with up to 5 requests in flight per broker), the Partitioner,
// and no linger: every caller here waits for the acks of what it sent
// (Publish, a PublishAsync call, an outbox relay round), so franz-go's
// default 10 ms linger only added 10 ms to each call (the relay with 64
// keys went from 5 600 to 56 000 events/s against kfake without it;
// docs/benchmarks.md). Records produced while a request is in flight
// still go out together in the next one. Callers append TLS, SASL or
// logging options after them.
func ClientOpts(seeds []string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(Partitioner()),
		kgo.ProducerLinger(0),
	}
}

// PublisherOption configures a Publisher.
type PublisherOption func(*Publisher)

// WithInject sets a function that writes the trace context of ctx into a
// message's headers (pkg/telemetry's propagator), as stream.WithInject.
func WithInject(inject func(ctx context.Context, headers map[string]string)) PublisherOption {
	return func(p *Publisher) { p.inject = inject }
}

// WithAckTimeout bounds how long PublishAsync waits for the brokers'
// acknowledgements of one call. Default 5s.
func WithAckTimeout(d time.Duration) PublisherOption {
	return func(p *Publisher) {
		if d > 0 {
			p.ackTimeout = d
		}
	}
}

// Publisher publishes keyed messages to one topic, with the Message and
// Ack types of pkg/stream. It is safe for concurrent use. The client must
// have been made with ClientOpts (or at least with the Partitioner):
// NewPublisher cannot check a client's partitioner.
//
// Differences from stream.Publisher: Kafka has no publish de-duplication
// window across producers, so Ack.Duplicate is always false and a
// re-publish of the same ID (a relay that crashed before marking its outbox
// row) is stored again; consumers drop it by event ID (pkg/inbox). Within
// one client, the idempotent producer makes its own retries exactly-once
// and ordered. Ack.Sequence is the record's offset in its partition, not a
// topic-wide sequence.
type Publisher struct {
	cl         *kgo.Client
	topic      string
	inject     func(context.Context, map[string]string)
	ackTimeout time.Duration
}

// NewPublisher returns a publisher to topic over cl. The partition count is
// the topic's own (from the cluster's metadata), so it cannot be wrong as
// stream.NewPublisher's argument can; EnsureTopic keeps it fixed.
func NewPublisher(cl *kgo.Client, topic string, opts ...PublisherOption) (*Publisher, error) {
	if cl == nil {
		return nil, fmt.Errorf("%w: publisher: nil client", stream.ErrInvalid)
	}
	if err := validName("topic", topic); err != nil {
		return nil, err
	}
	p := &Publisher{cl: cl, topic: topic, ackTimeout: 5 * time.Second}
	for _, o := range opts {
		o(p)
	}
	return p, nil
}

func (p *Publisher) record(ctx context.Context, m stream.Message) (*kgo.Record, error) {
	if m.ID == "" {
		return nil, fmt.Errorf("%w: publish to %s: message without ID (de-duplication needs one)", stream.ErrInvalid, p.topic)
	}
	if m.Key == "" {
		return nil, fmt.Errorf("%w: publish %s to %s: message without key (the key picks the partition)", stream.ErrInvalid, m.ID, p.topic)
	}
	headers := maps.Clone(m.Headers)
	if headers == nil {
		headers = map[string]string{}
	}
	if p.inject != nil {
		p.inject(ctx, headers)
	}
	headers[stream.HeaderEventID] = m.ID
	headers[stream.HeaderKey] = m.Key
	r := &kgo.Record{Topic: p.topic, Key: []byte(m.Key), Value: m.Payload}
	for k, v := range headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	return r, nil
}

// Publish sends m and waits until every in-sync replica has it. A nil error
// means the message is in the topic. On an error it may or may not be
// stored; publishing it again is safe (consumers de-duplicate by ID).
func (p *Publisher) Publish(ctx context.Context, m stream.Message) (stream.Ack, error) {
	r, err := p.record(ctx, m)
	if err != nil {
		return stream.Ack{}, err
	}
	if err := p.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return stream.Ack{Partition: int(r.Partition)}, fmt.Errorf("publish %s to %s: %w", m.ID, p.topic, err)
	}
	return stream.Ack{Partition: int(r.Partition), Sequence: uint64(r.Offset)}, nil
}

// PublishAsync sends every message without waiting between them, then waits
// for all acknowledgements (at most the ack timeout in total) and returns
// one Result per message, in the order of msgs, like
// stream.Publisher.PublishAsync. Messages of one key are stored in slice
// order when all succeed (the idempotent producer keeps a partition's
// batches in order across retries); after a failure, later messages of the
// same key in the same call may still have been stored, so a caller that
// needs strict per-key order publishes a key's next message only after the
// previous one's Result (the outbox relay's rounds).
func (p *Publisher) PublishAsync(ctx context.Context, msgs []stream.Message) []stream.Result {
	results := make([]stream.Result, len(msgs))
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		pending = make(map[int]bool, len(msgs))
	)
	for i, m := range msgs {
		r, err := p.record(ctx, m)
		if err != nil {
			results[i].Err = err
			continue
		}
		mu.Lock() // callbacks of earlier records run meanwhile
		pending[i] = true
		mu.Unlock()
		wg.Add(1)
		p.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if !pending[i] {
				return // the caller stopped waiting
			}
			delete(pending, i)
			results[i].Ack.Partition = int(r.Partition)
			if err != nil {
				results[i].Err = fmt.Errorf("publish %s to %s: %w", msgs[i].ID, p.topic, err)
				return
			}
			results[i].Ack.Sequence = uint64(r.Offset)
		})
	}
	p.wait(ctx, &wg)
	mu.Lock()
	defer mu.Unlock()
	for i := range pending {
		results[i].Err = fmt.Errorf("publish %s to %s: no acknowledgement within %s: %w", msgs[i].ID, p.topic, p.ackTimeout, context.DeadlineExceeded)
		delete(pending, i)
	}
	return results
}

// wait waits for wg, the ack timeout or ctx, whichever comes first.
func (p *Publisher) wait(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	timer := time.NewTimer(p.ackTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
	case <-ctx.Done():
	}
}
