package kafkastream_test

import (
	"context"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/stream/streamtest"
)

// TestConformance runs the stream contract's shared expectations
// (pkg/stream/streamtest) against the Kafka engine on kfake; pkg/stream's
// TestConformance runs the same ones against JetStream.
func TestConformance(t *testing.T) {
	t.Parallel()
	streamtest.Run(t, kafkaEngine)
}

func kafkaEngine(t *testing.T, partitions int) streamtest.Engine {
	k := setup(t, partitions)
	return streamtest.Engine{
		Publish: func(t *testing.T, msgs ...stream.Message) {
			t.Helper()
			for i, r := range k.pub.PublishAsync(context.Background(), msgs) {
				if r.Err != nil {
					t.Fatalf("publish %s: %v", msgs[i].ID, r.Err)
				}
			}
		},
		Start: func(t *testing.T, group string, maxDeliver int, h stream.Handler) func() {
			cfg := testGroup(k.topic, group)
			cfg.MaxDeliver = maxDeliver
			cfg.InfrastructureBackoff = cfg.Backoff
			return k.start(t, cfg, h).stop
		},
		DeadLetters: func(t *testing.T, _ string, n int) map[string]map[string]string { return dlqHeaders(t, k, n) },
	}
}
