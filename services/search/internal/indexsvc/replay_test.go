package indexsvc_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/search/internal/indexpg"
	"github.com/shopfloor/shopfloor/services/search/internal/indexsvc"
	"github.com/shopfloor/shopfloor/services/search/internal/searchtest"
	"github.com/shopfloor/shopfloor/services/search/searchapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func replayer(s *searchtest.Search) *indexsvc.Replayer {
	return indexsvc.NewReplayer(s.Pool, s.NATS.JS, slog.New(slog.DiscardHandler), time.Now)
}

// consumers lists the durable consumers of a stream.
func consumers(t *testing.T, js jetstream.JetStream, name string) []string {
	t.Helper()
	st, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	l := st.ConsumerNames(context.Background())
	var out []string
	for n := range l.Name() {
		out = append(out, n)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRebuildWhileServing: both projections are rebuilt from their
// streams while events keep arriving and the live consumers keep
// applying them; the rebuilds swap in with no difference, the live
// consumers continue on the new tables, and a check afterwards finds
// none either. Nothing of the replays is left behind.
func TestRebuildWhileServing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := searchtest.Start(t, 3)
	rng := rand.New(rand.NewPCG(42, 1))
	products, err := searchtest.Products(rng, 60, 4)
	if err != nil {
		t.Fatal(err)
	}
	orders, err := searchtest.Orders(rng, 150)
	if err != nil {
		t.Fatal(err)
	}
	s.Publish(t, s.Products.Stream, searchtest.Interleave(rng, products))
	s.Publish(t, s.Orders.Stream, searchtest.Interleave(rng, orders))
	s.WaitCaughtUp(t, s.Products)
	s.WaitCaughtUp(t, s.Orders)

	// Traffic during the rebuilds: new orders and product updates.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		trng := rand.New(rand.NewPCG(7, 7))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			more, err := searchtest.Orders(trng, 1)
			if err != nil {
				t.Error(err)
				return
			}
			s.Publish(t, s.Orders.Stream, more[0])
			if i%5 == 0 {
				p, err := searchtest.Products(trng, 1, 2)
				if err != nil {
					t.Error(err)
					return
				}
				s.Publish(t, s.Products.Stream, p[0])
			}
		}
	})
	for _, src := range []indexsvc.Source{s.Orders, s.Products} {
		rep, err := replayer(s).Run(ctx, indexsvc.ReplayConfig{Source: src, Swap: true, Poll: 50 * time.Millisecond})
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("rebuild %s: %v (%+v)", src.Stream, err, rep)
		}
		t.Logf("rebuild %s: %+v", src.Stream, rep)
		if !rep.Swapped || rep.Diff.Differences() != 0 || rep.Events == 0 || rep.Mode != indexsvc.ModeRebuild || rep.Diff.RebuiltDocuments == 0 {
			t.Errorf("rebuild %s: %+v", src.Stream, rep)
		}
	}
	close(stop)
	wg.Wait()

	// The live consumers write to the swapped-in tables.
	oid := searchtest.NewID()
	ev, err := searchtest.Envelope(ordersapi.Source, ordersapi.EventOrderPlaced, oid, 1, ordersapi.OrderPlaced{OrderID: oid, CustomerID: "after-swap",
		CustomerEmail: "late@example.com", Currency: "EUR", TotalMinor: 1, Items: []ordersapi.Line{}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s.Publish(t, s.Orders.Stream, []searchtest.Event{ev})
	s.WaitCaughtUp(t, s.Products)
	s.WaitCaughtUp(t, s.Orders)
	r := searchtest.Decode[searchapi.OrderResults](t, s.Get(t, "/v1/search/orders?customer_id=after-swap"))
	if len(r.Orders) != 1 || r.Orders[0].ID != oid {
		t.Fatalf("order placed after the swap: %+v", r.Orders)
	}

	for _, src := range []indexsvc.Source{s.Products, s.Orders} {
		rep, err := replayer(s).Run(ctx, indexsvc.ReplayConfig{Source: src, Poll: 50 * time.Millisecond})
		if err != nil || rep.Diff.Differences() != 0 || rep.Swapped || rep.Mode != indexsvc.ModeCheck || rep.Diff.LiveDocuments != rep.Diff.RebuiltDocuments {
			t.Errorf("check %s after rebuild: %+v, %v", src.Stream, rep, err)
		}
		left, err := indexpg.Leftovers(ctx, s.DB.Pool, src.Projection)
		if err != nil || len(left) != 0 {
			t.Errorf("%s: tables left: %v %v", src.Stream, left, err)
		}
		for _, c := range consumers(t, s.NATS.JS, src.Stream) {
			if !strings.HasPrefix(c, "search-p") {
				t.Errorf("%s: consumer %s left", src.Stream, c)
			}
		}
	}
}

// TestCheckFindsDifferences: a damaged live projection is reported
// (mismatch, extra), a rebuild refuses to drop documents the stream does
// not have unless allowed, and a rebuild repairs the damage.
func TestCheckFindsDifferences(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := searchtest.Start(t, 2)
	rng := rand.New(rand.NewPCG(3, 3))
	orders, err := searchtest.Orders(rng, 40)
	if err != nil {
		t.Fatal(err)
	}
	s.Publish(t, s.Orders.Stream, searchtest.Interleave(rng, orders))
	s.WaitCaughtUp(t, s.Orders)
	damaged, deleted := orders[0][0].Key, orders[1][0].Key
	if _, err := s.DB.Pool.Exec(ctx, `UPDATE orders SET status = 'cancelled', version = version + 5 WHERE order_id = $1`, damaged); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB.Pool.Exec(ctx, `DELETE FROM orders WHERE order_id = $1`, deleted); err != nil {
		t.Fatal(err)
	}
	rep, err := replayer(s).Run(ctx, indexsvc.ReplayConfig{Source: s.Orders, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d := rep.Diff
	if d.Mismatched != 1 || d.Extra != 1 || d.Missing != 0 || d.Differences() != 2 || d.LiveDocuments != 39 || d.RebuiltDocuments != 40 {
		t.Fatalf("check: %+v", d)
	}
	got := map[string]string{}
	for _, dd := range d.Samples {
		got[dd.ID] = dd.Class
	}
	if got[damaged] != indexpg.DiffMismatch || got[deleted] != indexpg.DiffExtra {
		t.Errorf("samples: %+v", d.Samples)
	}

	// A document the stream knows nothing about: a rebuild would drop it.
	if _, err := s.DB.Pool.Exec(ctx, `INSERT INTO orders SELECT 'ghost', customer_id, customer_email, status, currency, total_minor, items, item_text,
		version, placed_at, updated_at, source_stream, source_partition, 0, event_id, applied_at FROM orders LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	rep, err = replayer(s).Run(ctx, indexsvc.ReplayConfig{Source: s.Orders, Swap: true, Poll: 50 * time.Millisecond})
	if !errors.Is(err, indexsvc.ErrMissing) || rep.Swapped || !strings.Contains(err.Error(), "ghost") {
		t.Fatalf("rebuild losing a document: %+v, %v; want ErrMissing naming it", rep, err)
	}
	rep, err = replayer(s).Run(ctx, indexsvc.ReplayConfig{Source: s.Orders, Swap: true, AllowMissing: true, Poll: 50 * time.Millisecond})
	if err != nil || !rep.Swapped || rep.Diff.Missing != 1 || rep.Diff.Mismatched != 1 || rep.Diff.Extra != 1 {
		t.Fatalf("rebuild with --allow-missing: %+v, %v", rep, err)
	}
	rep, err = replayer(s).Run(ctx, indexsvc.ReplayConfig{Source: s.Orders, Poll: 50 * time.Millisecond})
	if err != nil || rep.Diff.Differences() != 0 || rep.Diff.LiveDocuments != 40 {
		t.Fatalf("check after the repair: %+v, %v", rep, err)
	}
}

// TestReplayCleansUpAndLocks: one replay per projection at a time; a
// replay removes what a dead one left behind.
func TestReplayCleansUpAndLocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := searchtest.Start(t, 2)
	conn, err := s.DB.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended('search.replay.products', 0))`); err != nil {
		t.Fatal(err)
	}
	if _, err := replayer(s).Run(ctx, indexsvc.ReplayConfig{Source: s.Products}); !errors.Is(err, indexsvc.ErrReplayRunning) {
		t.Fatalf("second replay: %v, want ErrReplayRunning", err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended('search.replay.products', 0))`); err != nil {
		t.Fatal(err)
	}

	// A dead replay's tables and consumer group.
	dead := indexpg.LiveProducts.WithSuffix("rdead")
	if err := indexpg.CreateTables(ctx, s.DB.Pool, indexpg.LiveProducts, dead); err != nil {
		t.Fatal(err)
	}
	g, err := stream.NewGroup(s.NATS.JS, stream.GroupConfig{Stream: s.Products.Stream, Name: "search-replay-dead", FetchWait: 100 * time.Millisecond},
		func(context.Context, stream.Delivery) error { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	gctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	testinfra.Eventually(t, 10*time.Second, func() error {
		if n := len(consumers(t, s.NATS.JS, s.Products.Stream)); n < 4 {
			return fmt.Errorf("%d consumers", n)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	rep, err := replayer(s).Run(ctx, indexsvc.ReplayConfig{Source: s.Products, Poll: 50 * time.Millisecond})
	if err != nil || rep.Diff.Differences() != 0 || rep.Events != 0 {
		t.Fatalf("check of an empty stream: %+v, %v", rep, err)
	}
	if left, err := indexpg.Leftovers(ctx, s.DB.Pool, indexpg.LiveProducts); err != nil || len(left) != 0 {
		t.Errorf("tables left: %v %v", left, err)
	}
	for _, c := range consumers(t, s.NATS.JS, s.Products.Stream) {
		if !strings.HasPrefix(c, "search-p") {
			t.Errorf("consumer %s left", c)
		}
	}
}

// TestLagSamplerReadsTheLiveGroupsLagFromTheBroker: the lag of the live groups, from the broker.
func TestLagSamplerReadsTheLiveGroupsLagFromTheBroker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := searchtest.Start(t, 2)
	orders, err := searchtest.Orders(rand.New(rand.NewPCG(1, 2)), 20)
	if err != nil {
		t.Fatal(err)
	}
	s.Publish(t, s.Orders.Stream, searchtest.Interleave(rand.New(rand.NewPCG(1, 3)), orders))
	s.WaitCaughtUp(t, s.Orders)
	testinfra.Eventually(t, 10*time.Second, func() error {
		lag, ok := s.Lags.Lag(s.Orders.Stream)
		if !ok || lag.Messages != 0 || lag.Seconds != 0 {
			return fmt.Errorf("lag %+v known %t", lag, ok)
		}
		return nil
	})
	if _, ok := s.Lags.Lag("NO_SUCH_STREAM"); ok {
		t.Error("lag of an unknown stream is known")
	}

	// A group nobody consumes with: the sampler reports its backlog.
	other, err := indexsvc.NewLagSampler(indexsvc.JetStreamLag(s.NATS.JS), s.DB.Pool, "idle", []indexsvc.Source{s.Orders}, indexsvc.LagConfig{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Sample(ctx); err == nil {
		t.Error("sample of a group without consumers succeeded")
	}
	if _, ok := other.Lag(s.Orders.Stream); ok {
		t.Error("lag known without consumers")
	}
	g, err := stream.NewGroup(s.NATS.JS, stream.GroupConfig{Stream: s.Orders.Stream, Name: "idle", FetchWait: 100 * time.Millisecond},
		func(ctx context.Context, _ stream.Delivery) error { <-ctx.Done(); return ctx.Err() }, nil)
	if err != nil {
		t.Fatal(err)
	}
	gctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	testinfra.Eventually(t, 10*time.Second, func() error {
		if err := other.Sample(ctx); err != nil {
			return err
		}
		lag, ok := other.Lag(s.Orders.Stream)
		if !ok || lag.Messages == 0 || lag.Seconds <= 0 {
			return fmt.Errorf("lag %+v known %t", lag, ok)
		}
		return nil
	})
	mfs, err := s.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"search_projection_lag_seconds": false, "search_projection_freshness_age_seconds": false,
		"stream_consumer_lag_messages": false, "search_projection_events_total": false}
	for _, mf := range mfs {
		if _, ok := want[mf.GetName()]; ok {
			want[mf.GetName()] = true
		}
	}
	for name, seen := range want {
		if !seen {
			t.Errorf("metric %s not exported", name)
		}
	}
}
