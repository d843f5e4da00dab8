package outbox_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestEndToEndPerKeyOrder: writers commit events through the outbox, the
// relay publishes them to a partitioned stream, and two instances of a
// consumer group apply them; one instance dies mid-stream. Every event
// reaches the effect exactly once (de-duplicated by event id) and each
// key's versions arrive strictly increasing.
func TestEndToEndPerKeyOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nt := testinfra.NATS(t)
	name := nt.Name("ORD")
	if err := stream.EnsureStream(ctx, nt.JS, stream.StreamConfig{Name: name, Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	b := &bundle{db: testinfra.Postgres(t, migrations), js: nt.JS, stream: name, ob: outbox.New(name)}
	runRelay(t, newRelay(t, b, b.sink(), fast))

	var (
		mu      sync.Mutex
		applied = map[string]bool{}  // event id
		last    = map[string]int64{} // key → last version applied
		errs    []string
	)
	handler := func(_ context.Context, d stream.Delivery) error {
		ev, err := events.Unmarshal(d.Payload)
		if err != nil {
			return stream.Permanent(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if applied[ev.ID] {
			return nil // the inbox's job in a service
		}
		if ev.AggregateVersion != last[ev.Subject]+1 {
			errs = append(errs, fmt.Sprintf("key %s: v%d after v%d", ev.Subject, ev.AggregateVersion, last[ev.Subject]))
		}
		applied[ev.ID], last[ev.Subject] = true, ev.AggregateVersion
		return nil
	}
	quietLog := slog.New(slog.NewTextHandler(io.Discard, nil))
	group := func() *stream.Group {
		g, err := stream.NewGroup(nt.JS, stream.GroupConfig{Stream: name, Name: "e2e", AckWait: time.Second, FetchWait: 200 * time.Millisecond}, handler, quietLog)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	run := func(g *stream.Group) (cancel func()) {
		gctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = g.Run(gctx) }()
		var once sync.Once
		cancel = func() { once.Do(func() { stop(); <-done }) }
		t.Cleanup(cancel)
		return cancel
	}
	killA := run(group())
	run(group())

	const writers, perWriter, keys = 4, 30, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for i := range perWriter {
				b.emit(t, "order-"+strconv.Itoa(rng.IntN(keys)), nil)
				if w == 0 && i == perWriter/2 {
					killA() // one instance dies mid-stream
				}
			}
		})
	}
	wg.Wait()
	testinfra.Eventually(t, 60*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if n := len(applied); n != writers*perWriter {
			return fmt.Errorf("%d of %d events applied", n, writers*perWriter)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for _, e := range errs {
		t.Error(e)
	}
}
