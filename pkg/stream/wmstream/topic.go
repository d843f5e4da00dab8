package wmstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// ErrClosed is returned by Publish and Subscribe after Close.
var ErrClosed = errors.New("wmstream: closed")

// ensureTopic makes sure the stream of topic exists and returns its
// partition count. A missing stream is created from tmpl (its Name set to
// topic). An existing stream is left as it is, so that a publisher or
// subscriber with default settings never rewrites the limits its owner set
// with EnsureStream; only tmpl.Partitions, when set, must match it.
func ensureTopic(ctx context.Context, js jetstream.JetStream, topic string, tmpl stream.StreamConfig) (int, error) {
	n, err := stream.StreamPartitions(ctx, js, topic)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		cfg := tmpl
		cfg.Name = topic
		if err := stream.EnsureStream(ctx, js, cfg); err != nil {
			return 0, fmt.Errorf("topic %s: %w", topic, err)
		}
		// Read the count back: tmpl.Partitions may be 0 (the default), and
		// another process may have created the stream first.
		if n, err = stream.StreamPartitions(ctx, js, topic); err != nil {
			return 0, fmt.Errorf("topic %s: %w", topic, err)
		}
	case err != nil:
		return 0, fmt.Errorf("topic %s (topics are pkg/stream stream names: letters, digits, '_' and '-'): %w", topic, err)
	}
	if tmpl.Partitions != 0 && tmpl.Partitions != n {
		return 0, fmt.Errorf("%w: topic %s has %d partitions, the configuration asks for %d",
			stream.ErrPartitionsChanged, topic, n, tmpl.Partitions)
	}
	return n, nil
}

func checkTemplate(tmpl stream.StreamConfig) error {
	if tmpl.Partitions < 0 || tmpl.Partitions > stream.MaxPartitions {
		return fmt.Errorf("%w: wmstream: Stream.Partitions %d outside 0..%d (0: pkg/stream's default)",
			stream.ErrInvalid, tmpl.Partitions, stream.MaxPartitions)
	}
	return nil
}
