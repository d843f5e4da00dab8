package wmstream

import (
	"fmt"
	"maps"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// MetadataPartitionKey is the metadata field that carries a message's key:
// the value that picks its partition, so that all messages with one key are
// consumed in publish order (an order id, a product id). A message without
// it is keyed by its UUID, which spreads messages over the partitions with
// no order between them.
const MetadataPartitionKey = "partition_key"

// PublisherConfig configures a Publisher. The zero value is usable.
type PublisherConfig struct {
	// Stream configures the stream of a topic that does not exist yet,
	// created on the topic's first Publish. Name is ignored (the topic is
	// the name); zero fields take pkg/stream's defaults (8 partitions, 7
	// days, a 2-minute duplicate window, file storage). A stream that
	// exists is used as it is; only Partitions, when set, must match it
	// (else Publish fails with stream.ErrPartitionsChanged).
	Stream stream.StreamConfig
	// Options are passed to each topic's stream.Publisher, e.g.
	// stream.WithAckTimeout. Tracing needs none: pkg/telemetry's
	// PublisherDecorator writes the trace into the metadata, which travels
	// as headers.
	Options []stream.PublisherOption
}

// Publisher is a watermill message.Publisher over pkg/stream's JetStream
// engine (NewPublisher) or its Kafka engine (NewKafkaPublisher). It is safe
// for concurrent use.
type Publisher struct {
	engine backend

	mu     sync.Mutex
	closed bool
	topics map[string]topicPublisher
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a publisher on js. Nothing is created on the broker
// until the first Publish to a topic.
func NewPublisher(js jetstream.JetStream, cfg PublisherConfig) (*Publisher, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: wmstream publisher: nil JetStream", stream.ErrInvalid)
	}
	if err := checkTemplate(cfg.Stream.Partitions); err != nil {
		return nil, err
	}
	return newPublisher(jetStreamBackend{js: js, tmpl: cfg.Stream, options: cfg.Options}), nil
}

func newPublisher(b backend) *Publisher {
	return &Publisher{engine: b, topics: map[string]topicPublisher{}}
}

// Publish sends msgs to the stream (Kafka: topic) named topic, one after
// the other, each acknowledged by the broker before the next is sent, so
// messages of one key are stored in the order given. It returns at the
// first failure: the messages before it are stored, the failing one may or
// may not be, the ones after it are not sent. Publishing the same messages
// again is safe: the UUID is the event ID; on JetStream the broker drops a
// re-publish inside the stream's duplicate window, on Kafka the re-publish
// is stored again and consumers drop it by event ID (pkg/inbox).
//
// Each message becomes a stream.Message: ID = msg.UUID (required), Key =
// metadata MetadataPartitionKey or else msg.UUID, Payload = msg.Payload,
// Headers = msg.Metadata (on JetStream keys and values must be valid NATS
// headers: no ':' or spaces in keys, no line breaks). msg.Context() bounds
// the publish (without a deadline: pkg/stream's JetStream default timeout,
// or KafkaPublisherConfig.Timeout) and reaches the inject option
// (stream.WithInject, kafkastream.WithInject).
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	for _, msg := range msgs {
		sp, err := p.topic(msg, topic)
		if err != nil {
			return err
		}
		key := msg.Metadata.Get(MetadataPartitionKey)
		if key == "" {
			key = msg.UUID
		}
		if _, err := sp.Publish(msg.Context(), stream.Message{
			ID:      msg.UUID,
			Key:     key,
			Payload: msg.Payload,
			Headers: maps.Clone(msg.Metadata),
		}); err != nil {
			return fmt.Errorf("wmstream: %w", err)
		}
	}
	return nil
}

// topic returns the stream publisher of topic, creating the stream on first
// use. A failed creation is not remembered: the next Publish tries again.
func (p *Publisher) topic(msg *message.Message, topic string) (topicPublisher, error) {
	p.mu.Lock()
	closed, sp := p.closed, p.topics[topic]
	p.mu.Unlock()
	switch {
	case closed:
		return nil, fmt.Errorf("publish %s to %s: %w", msg.UUID, topic, ErrClosed)
	case sp != nil:
		return sp, nil
	}
	n, err := p.engine.ensure(msg.Context(), topic)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", msg.UUID, err)
	}
	sp, err = p.engine.publisher(topic, n)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", msg.UUID, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if existing := p.topics[topic]; existing != nil {
		return existing, nil
	}
	p.topics[topic] = sp
	return sp, nil
}

// Close makes later Publish calls fail with ErrClosed. Publish waits for
// every acknowledgement, so nothing is buffered to flush. On JetStream the
// NATS connection belongs to the caller and stays open; on Kafka the
// publisher's own client is closed (a Publish still running fails). Close
// is idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		p.engine.close()
	}
	return nil
}
