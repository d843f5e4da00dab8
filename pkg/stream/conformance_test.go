package stream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/stream/streamtest"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestConformance runs the stream contract's shared expectations
// (pkg/stream/streamtest) against JetStream; pkg/stream/kafka's
// TestConformance runs the same ones against Kafka (kfake).
func TestConformance(t *testing.T) {
	t.Parallel()
	streamtest.Run(t, jetStreamEngine)
}

func jetStreamEngine(t *testing.T, partitions int) streamtest.Engine {
	nt, name, pub := setupStream(t, partitions)
	return streamtest.Engine{
		Publish: func(t *testing.T, msgs ...stream.Message) {
			t.Helper()
			for i, r := range pub.PublishAsync(context.Background(), msgs) {
				if r.Err != nil {
					t.Fatalf("publish %s: %v", msgs[i].ID, r.Err)
				}
			}
		},
		Start: func(t *testing.T, group string, maxDeliver int, h stream.Handler) func() {
			cfg := testGroup(name, group)
			cfg.MaxDeliver = maxDeliver
			cfg.InfrastructureBackoff = cfg.Backoff
			return start(t, newGroup(t, nt.JS, cfg, h)).stop
		},
		DeadLetters: func(t *testing.T, group string, n int) map[string]map[string]string {
			q, err := stream.NewDLQ(nt.JS, name, nil)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]map[string]string{}
			testinfra.Eventually(t, 20*time.Second, func() error {
				dls, err := q.List(context.Background(), group, 100)
				if err != nil {
					return err
				}
				if len(dls) < n {
					return fmt.Errorf("%d dead letters, want %d", len(dls), n)
				}
				for _, dl := range dls {
					out[dl.EventID] = dl.Headers
				}
				return nil
			})
			return out
		},
	}
}
