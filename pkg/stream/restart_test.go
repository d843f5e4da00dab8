package stream_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestGroupSurvivesBrokerRestart: a running group keeps consuming after
// the broker stops and starts again (its durable consumers and the stream
// are on disk); nothing published before or after is lost.
func TestGroupSurvivesBrokerRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testinfra.NewNATSServer(t, testinfra.NATSServerOptions{SyncAlways: true})
	_, js := srv.Connect()
	if err := stream.EnsureStream(ctx, js, stream.StreamConfig{Name: "ORDERS", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	pub, err := stream.NewPublisher(js, "ORDERS", 2, stream.WithAckTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	g := newGroup(t, js, testGroup("ORDERS", "billing"), func(_ context.Context, d stream.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		seen[d.ID] = true
		return nil
	})
	start(t, g)
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			id := "e" + strconv.Itoa(i)
			// Publishing right after the restart may fail until the client
			// has reconnected: retry, as the outbox relay does.
			testinfra.Eventually(t, 20*time.Second, func() error {
				_, err := pub.Publish(ctx, stream.Message{ID: id, Key: "k" + strconv.Itoa(i%4), Payload: []byte(id)})
				return err
			})
		}
	}
	waitSeen := func(n int) {
		testinfra.Eventually(t, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != n {
				return fmt.Errorf("%d of %d events handled", len(seen), n)
			}
			return nil
		})
	}
	publish(0, 10)
	waitSeen(10)
	srv.Stop()
	srv.Start()
	publish(10, 20)
	waitSeen(20)
}
