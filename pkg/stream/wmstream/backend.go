package wmstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// ErrClosed is returned by Publish and Subscribe after Close.
var ErrClosed = errors.New("wmstream: closed")

// backend is what the adapter needs from a stream engine: topics with a
// fixed partition count, a publisher per topic and consumer groups that
// run a stream.Handler. The watermill mapping (publisher.go,
// subscriber.go) is written once over it; jetStreamBackend (below) and
// kafkaBackend (kafka.go) implement it. A Publisher uses ensure and
// publisher, a Subscriber ensure and group.
type backend interface {
	// ensure makes sure topic (and its dead-letter topic) exists and
	// returns its partition count. A missing topic is created from the
	// configured template; an existing one is used as it is, and only the
	// template's partition count, when set, must match it
	// (stream.ErrPartitionsChanged).
	ensure(ctx context.Context, topic string) (int, error)
	// publisher returns a publisher to topic, which has partitions
	// partitions.
	publisher(topic string, partitions int) (topicPublisher, error)
	// group returns the consumer group named name on topic, handling
	// every delivery with h, without contacting the broker. An invalid
	// configuration wraps stream.ErrInvalid.
	group(topic, name string, h stream.Handler, log *slog.Logger) (groupRunner, error)
	// close releases what the backend owns: nothing on JetStream (the
	// connection is the caller's), the client on Kafka.
	close()
}

// topicPublisher is stream.Publisher or kafkastream.Publisher.
type topicPublisher interface {
	Publish(ctx context.Context, m stream.Message) (stream.Ack, error)
}

// groupRunner is stream.Group or kafkastream.Group: Run returns nil after
// ctx ends, or a set-up error.
type groupRunner interface {
	Run(ctx context.Context) error
}

// jetStreamBackend is pkg/stream on NATS JetStream.
type jetStreamBackend struct {
	js      jetstream.JetStream
	tmpl    stream.StreamConfig      // streams created on first use
	options []stream.PublisherOption // publishers
	gtmpl   stream.GroupConfig       // subscribers' template
}

var _ backend = jetStreamBackend{}

// ensure leaves an existing stream as it is, so that a publisher or
// subscriber with default settings never rewrites the limits its owner set
// with EnsureStream.
func (b jetStreamBackend) ensure(ctx context.Context, topic string) (int, error) {
	n, err := stream.StreamPartitions(ctx, b.js, topic)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		cfg := b.tmpl
		cfg.Name = topic
		if err := stream.EnsureStream(ctx, b.js, cfg); err != nil {
			return 0, fmt.Errorf("topic %s: %w", topic, err)
		}
		// Read the count back: tmpl.Partitions may be 0 (the default), and
		// another process may have created the stream first.
		if n, err = stream.StreamPartitions(ctx, b.js, topic); err != nil {
			return 0, fmt.Errorf("topic %s: %w", topic, err)
		}
	case err != nil:
		return 0, fmt.Errorf("topic %s (topics are pkg/stream stream names: letters, digits, '_' and '-'): %w", topic, err)
	}
	return n, checkPartitions(topic, n, b.tmpl.Partitions)
}

func (b jetStreamBackend) publisher(topic string, partitions int) (topicPublisher, error) {
	return stream.NewPublisher(b.js, topic, partitions, b.options...)
}

func (b jetStreamBackend) group(topic, name string, h stream.Handler, log *slog.Logger) (groupRunner, error) {
	cfg := b.gtmpl
	cfg.Stream, cfg.Name, cfg.Partitions = topic, name, b.tmpl.Partitions
	return stream.NewGroup(b.js, cfg, h, log)
}

func (jetStreamBackend) close() {}

// checkPartitions refuses a topic whose partition count n is not the
// configured want (0: any).
func checkPartitions(topic string, n, want int) error {
	if want != 0 && want != n {
		return fmt.Errorf("%w: topic %s has %d partitions, the configuration asks for %d",
			stream.ErrPartitionsChanged, topic, n, want)
	}
	return nil
}

// checkTemplate refuses a template partition count that no engine takes.
func checkTemplate(partitions int) error {
	if partitions < 0 || partitions > stream.MaxPartitions {
		return fmt.Errorf("%w: wmstream: partitions %d outside 0..%d (0: the engine's default)",
			stream.ErrInvalid, partitions, stream.MaxPartitions)
	}
	return nil
}
