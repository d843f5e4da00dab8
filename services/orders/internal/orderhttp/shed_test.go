package orderhttp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/orders/internal/orderhttp"
	"github.com/shopfloor/shopfloor/services/orders/internal/overload"
)

// TestCheckoutShedsWhilePaymentsAreBehind: while payments' consumer group
// on ORDERS (real JetStream) leaves order.placed events unfinished for
// longer than the threshold, a checkout answers 503 overloaded with
// Retry-After and writes nothing (its Idempotency-Key stays unused);
// reads are not shed; once the group has caught up, the same checkout
// answers 201.
func TestCheckoutShedsWhilePaymentsAreBehind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const partitions = 2
	nt := testinfra.NATS(t)
	orders := nt.Name("ORDERS")
	if err := stream.EnsureStream(ctx, nt.JS, stream.StreamConfig{Name: orders, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	// payments' group: its durable consumers exist, and nobody takes the
	// events yet.
	consumers := make([]jetstream.Consumer, partitions)
	for p := range partitions {
		c, err := nt.JS.CreateOrUpdateConsumer(ctx, orders, jetstream.ConsumerConfig{Durable: stream.ConsumerName("payments", p),
			FilterSubject: stream.Subject(orders, p), AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatal(err)
		}
		consumers[p] = c
	}
	reg := prometheus.NewPedanticRegistry()
	shedder, err := overload.New(overload.Config{Threshold: 300 * time.Millisecond, Interval: 20 * time.Millisecond, RetryAfter: 2 * time.Second, Registerer: reg},
		overload.GroupBacklog(nt.JS, orders, "payments"))
	if err != nil {
		t.Fatal(err)
	}
	runShedder(t, shedder)
	b := setup(t, func(c *orderhttp.Config) { c.CheckoutShedder = shedder.Except })

	firstBody := b.order()
	if r := b.do(t, "POST", "/v1/orders", firstBody, key("before")); r.status != http.StatusCreated {
		t.Fatalf("no backlog: POST = %d %s", r.status, r.body)
	}
	for p := range partitions {
		if _, err := nt.JS.Publish(ctx, stream.Subject(orders, p), []byte(`{"type":"order.placed"}`)); err != nil {
			t.Fatal(err)
		}
	}
	testinfra.Eventually(t, 20*time.Second, func() error {
		if !shedder.Shedding() {
			return errors.New("not shedding yet")
		}
		return nil
	})
	before := b.counts(t)
	r := b.do(t, "POST", "/v1/orders", b.order(), key("during"))
	secs, _ := strconv.Atoi(r.header.Get("Retry-After"))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(string(r.body), "/overloaded") || secs < 2 || secs > 4 {
		t.Fatalf("backlog above the threshold: POST = %d %v %s; want 503 overloaded with Retry-After 2–4", r.status, r.header, r.body)
	}
	if after := b.counts(t); after != before {
		t.Fatalf("a shed checkout wrote: orders, lines, outbox, keys %v → %v", before, after)
	}
	// The retry of a checkout accepted before is a replay, never shed.
	if r := b.do(t, "POST", "/v1/orders", firstBody, key("before")); r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay of an accepted checkout while shedding: %d %v %s; want its stored 201", r.status, r.header, r.body)
	}
	if g := b.do(t, "GET", "/v1/orders", nil, nil); g.status != http.StatusOK {
		t.Fatalf("reads are not shed: GET = %d %s", g.status, g.body)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`# HELP orders_checkout_shed_total Checkouts answered 503 overloaded because the payment pipeline was behind.
# TYPE orders_checkout_shed_total counter
orders_checkout_shed_total 1
`), "orders_checkout_shed_total"); err != nil {
		t.Fatal(err)
	}

	// payments catches up.
	for _, c := range consumers {
		batch, err := c.FetchNoWait(10)
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	testinfra.Eventually(t, 20*time.Second, func() error {
		if r := b.do(t, "POST", "/v1/orders", b.order(), key("during")); r.status != http.StatusCreated {
			return fmt.Errorf("caught up: POST = %d %s", r.status, r.body)
		}
		return nil
	})
}

// TestCheckoutShedsWhileOrdersWaitForPayment: the end-to-end signal. Orders
// left pending payment for longer than the threshold (the charge queue is
// behind: no payment result comes) shed checkouts, beyond the stragglers
// the signal passes over; once they are paid, checkouts are accepted again.
func TestCheckoutShedsWhileOrdersWaitForPayment(t *testing.T) {
	t.Parallel()
	const skip = 2
	ctx := context.Background()
	// The shedder reads the test's database, which setup creates: the
	// guard looks it up per request.
	var shedder *overload.Shedder
	b := setup(t, func(c *orderhttp.Config) {
		c.CheckoutShedder = func(admit func(*http.Request) bool) func(http.Handler) http.Handler {
			return func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { shedder.Except(admit)(next).ServeHTTP(w, r) })
			}
		}
	})
	var err error
	shedder, err = overload.New(overload.Config{Threshold: 300 * time.Millisecond, Interval: 20 * time.Millisecond},
		overload.PendingOrders(b.db.Pool, skip))
	if err != nil {
		t.Fatal(err)
	}
	runShedder(t, shedder)
	age := func(d string) {
		t.Helper()
		if _, err := b.db.Pool.Exec(ctx, `UPDATE orders SET updated_at = now() - $1::interval WHERE status = 'pending_payment'`, d); err != nil {
			t.Fatal(err)
		}
	}
	// Only stragglers: as many old pending orders as the signal passes over.
	for i := range skip {
		if r := b.do(t, "POST", "/v1/orders", b.order(), key(fmt.Sprint("straggler-", i))); r.status != http.StatusCreated {
			t.Fatalf("POST = %d %s", r.status, r.body)
		}
	}
	age("1 hour")
	if got, err := overload.PendingOrders(b.db.Pool, skip)(ctx); err != nil || got != 0 {
		t.Fatalf("stragglers only: signal = %s, %v; want 0", got, err)
	}
	// One more order waits as long: the backlog is real.
	r := b.do(t, "POST", "/v1/orders", b.order(), key("one-more"))
	if r.status != http.StatusCreated {
		t.Fatalf("stragglers only: POST = %d %s", r.status, r.body)
	}
	age("1 hour")
	if got, err := overload.PendingOrders(b.db.Pool, skip)(ctx); err != nil || got < 59*time.Minute {
		t.Fatalf("a backlog: signal = %s, %v; want about an hour", got, err)
	}
	testinfra.Eventually(t, 20*time.Second, func() error {
		if !shedder.Shedding() {
			return errors.New("not shedding yet")
		}
		return nil
	})
	before := b.counts(t)
	if r := b.do(t, "POST", "/v1/orders", b.order(), key("shed")); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("orders waiting for payment: POST = %d %v %s; want 503 with Retry-After", r.status, r.header, r.body)
	}
	if after := b.counts(t); after != before {
		t.Fatalf("a shed checkout wrote: %v → %v", before, after)
	}
	// The payment results arrive.
	if _, err := b.db.Pool.Exec(ctx, `UPDATE orders SET status = 'paid' WHERE status = 'pending_payment'`); err != nil {
		t.Fatal(err)
	}
	testinfra.Eventually(t, 20*time.Second, func() error {
		if r := b.do(t, "POST", "/v1/orders", b.order(), key("shed")); r.status != http.StatusCreated {
			return fmt.Errorf("caught up: POST = %d %s", r.status, r.body)
		}
		return nil
	})
}

// runShedder samples until the test ends.
func runShedder(t *testing.T, s *overload.Shedder) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("shedder: %v", err)
		}
	})
}
