package paymentsvc_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/internal/payment"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentsvc"
	"github.com/shopfloor/shopfloor/services/payments/internal/psp"
	"github.com/shopfloor/shopfloor/services/payments/migrations"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

type bundle struct {
	db     *testinfra.Database
	sim    *pspsim.Sim
	client *psp.Client
	jobs   *jobqueue.Client
	svc    *paymentsvc.Service
	cfg    paymentsvc.Config
}

// setup runs payments' service over its own database against the provider
// simulator (a real HTTP server) with faults f.
func setup(t *testing.T, f pspsim.Faults, cfg paymentsvc.Config) *bundle {
	t.Helper()
	db := testinfra.Postgres(t, migrations.FS)
	sim, err := pspsim.New(pspsim.Config{Seed: 7, Faults: f})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	client, err := psp.New(psp.Config{BaseURL: srv.URL, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := jobqueue.New(db.Pool, jobqueue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jobs.Close)
	log := slog.New(slog.DiscardHandler)
	svc, err := paymentsvc.New(db.Pool, jobs, outbox.New(paymentsapi.Stream), client, cfg, log, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.CreateQueues(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &bundle{db: db, sim: sim, client: client, jobs: jobs, svc: svc, cfg: cfg}
}

// work runs the charge and refund workers until the test ends.
func (b *bundle) work(t *testing.T, concurrency int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	bo := backoff.Policy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2}
	for _, q := range []struct {
		name string
		h    jobqueue.Handler
	}{{paymentsvc.ChargeQueue, b.svc.HandleCharge}, {paymentsvc.RefundQueue, b.svc.HandleRefund}} {
		w := b.jobs.NewWorker(jobqueue.WorkerConfig{Queue: q.name, Concurrency: concurrency, VisibilityTimeout: 5 * time.Second, Backoff: bo}, q.h)
		wg.Go(func() {
			if err := w.Run(ctx); err != nil {
				t.Errorf("worker %s: %v", q.name, err)
			}
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func (b *bundle) create(t *testing.T, method string) payment.Payment {
	t.Helper()
	orderID := uuid.Must(uuid.NewV7()).String()
	var p payment.Payment
	if err := pgdb.InTx(context.Background(), b.db.Pool, func(tx pgx.Tx) error {
		var err error
		p, err = b.svc.Create(context.Background(), tx, "order:"+orderID, paymentsvc.CreateInput{CreatePayment: paymentsapi.CreatePayment{
			OrderID: orderID, AmountMinor: 2500, Currency: "EUR", PaymentMethod: method}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return p
}

// settled waits until no payment is pending and no job is visible or in
// flight, then checks the queues' DLQs are as expected.
func (b *bundle) settled(t *testing.T, within time.Duration) {
	t.Helper()
	ctx := context.Background()
	testinfra.Eventually(t, within, func() error {
		var pending, jobs int
		if err := b.db.Pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM payments WHERE status = 'pending') + (SELECT count(*) FROM refunds WHERE status = 'pending'),
			(SELECT count(*) FROM jobqueue_messages WHERE queue IN ('charges', 'refunds'))`).Scan(&pending, &jobs); err != nil {
			return err
		}
		if pending+jobs > 0 {
			return fmt.Errorf("%d pending payments or refunds, %d jobs left", pending, jobs)
		}
		return nil
	})
}

// eventsOf returns the PAYMENTS event types in the outbox per order.
func (b *bundle) eventsOf(t *testing.T) map[string][]string {
	t.Helper()
	rows, err := b.db.Pool.Query(context.Background(), `SELECT key, event_type FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for rows.Next() {
		var k, typ string
		if err := rows.Scan(&k, &typ); err != nil {
			t.Fatal(err)
		}
		out[k] = append(out[k], typ)
	}
	return out
}

func TestChargesSucceedOrFailWithTheDeclineCode(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Faults{}, paymentsvc.Config{})
	b.work(t, 4)
	ok := b.create(t, "tok_visa")
	declined := b.create(t, "tok_chargeDeclined")
	b.settled(t, 30*time.Second)
	ctx := context.Background()
	got, err := b.svc.Get(ctx, ok.ID, "")
	if err != nil || got.Status != paymentsapi.StatusSucceeded || got.ChargeID == "" {
		t.Fatalf("visa: %+v %v", got, err)
	}
	got, err = b.svc.Get(ctx, declined.ID, "")
	if err != nil || got.Status != paymentsapi.StatusFailed || got.DeclineCode != "card_declined" {
		t.Fatalf("declined: %+v %v", got, err)
	}
	evs := b.eventsOf(t)
	if len(evs[ok.OrderID]) != 1 || evs[ok.OrderID][0] != paymentsapi.EventPaymentSucceeded ||
		len(evs[declined.OrderID]) != 1 || evs[declined.OrderID][0] != paymentsapi.EventPaymentFailed {
		t.Fatalf("events: %v", evs)
	}
	st := b.sim.Stats()
	if st.ChargesCreated != 2 || st.ChargesByIdempotencyKey[ok.ID] != 1 {
		t.Fatalf("provider stats: %+v", st)
	}
	// A second attempt for the same order is refused; nothing is enqueued.
	err = pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
		_, err := b.svc.Create(ctx, tx, "another-key", paymentsvc.CreateInput{CreatePayment: paymentsapi.CreatePayment{OrderID: ok.OrderID, AmountMinor: 1, Currency: "EUR", PaymentMethod: "tok_visa"}})
		return err
	})
	if err == nil {
		t.Fatal("second payment for an order accepted")
	}
}

// TestCrashAfterCharge: the worker charged the provider and died before
// its transaction committed (here: the charge is made with the attempt's
// key, nothing recorded). The job is delivered again; the provider answers
// with the same charge; one charge, one payment.succeeded.
func TestCrashAfterCharge(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Faults{}, paymentsvc.Config{})
	p := b.create(t, "tok_visa")
	first, err := b.client.Charge(context.Background(), p.ID, psp.ChargeRequest{AmountMinor: p.AmountMinor, Currency: p.Currency,
		PaymentMethod: p.PaymentMethod, Reference: p.OrderID})
	if err != nil {
		t.Fatal(err)
	}
	b.work(t, 2)
	b.settled(t, 30*time.Second)
	got, err := b.svc.Get(context.Background(), p.ID, "")
	if err != nil || got.Status != paymentsapi.StatusSucceeded || got.ChargeID != first.ID {
		t.Fatalf("after redelivery: %+v %v (first charge %s)", got, err, first.ID)
	}
	if st := b.sim.Stats(); st.ChargesCreated != 1 || len(st.DoubleCharges) != 0 {
		t.Fatalf("provider: %+v", st)
	}
	if evs := b.eventsOf(t)[p.OrderID]; len(evs) != 1 {
		t.Fatalf("events: %v", evs)
	}
}

// TestFaultStormChargesEveryOrderOnceWithOneOutcome: 1 000 payments while 30% of charges time out after the
// provider charged and 30% are refused with 429. Every attempt ends
// succeeded (or failed), no order is charged twice, nothing is left in
// flight, each payment has exactly one outcome event.
func TestFaultStormChargesEveryOrderOnceWithOneOutcome(t *testing.T) {
	t.Parallel()
	const n = 1000
	b := setup(t, pspsim.Faults{TimeoutAfterChargeRate: 0.3, RateLimitRate: 0.3, RetryAfter: time.Second, Hang: 5 * time.Second},
		paymentsvc.Config{MaxReceives: 20})
	ctx := context.Background()
	start := time.Now()
	// Enqueue in batches, as checkouts would.
	orderIDs := make([]string, 0, n)
	for batch := 0; batch < n; batch += 100 {
		if err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
			for range 100 {
				id := uuid.Must(uuid.NewV7()).String()
				orderIDs = append(orderIDs, id)
				if _, err := b.svc.Create(ctx, tx, "order:"+id, paymentsvc.CreateInput{CreatePayment: paymentsapi.CreatePayment{OrderID: id, AmountMinor: 999, Currency: "EUR", PaymentMethod: "tok_visa"}}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	b.work(t, 32)
	b.settled(t, 5*time.Minute)
	var succeeded, failed int
	if err := b.db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed') FROM payments`).
		Scan(&succeeded, &failed); err != nil {
		t.Fatal(err)
	}
	st := b.sim.Stats()
	t.Logf("%d payments in %s: %d succeeded, %d failed; provider: %d charges, requests %v",
		n, time.Since(start).Round(time.Millisecond), succeeded, failed, st.ChargesCreated, st.Requests)
	if succeeded+failed != n || len(st.DoubleCharges) != 0 || st.ChargesSucceeded != succeeded {
		t.Fatalf("succeeded %d + failed %d != %d, or double charges %v, or provider succeeded %d", succeeded, failed, n, st.DoubleCharges, st.ChargesSucceeded)
	}
	if st.Requests[pspsim.RouteCreateCharge][pspsim.OutcomeFaultRateLimited] == 0 || st.Requests[pspsim.RouteCreateCharge][pspsim.OutcomeFaultTimeout] == 0 {
		t.Fatalf("the faults did not fire: %v", st.Requests)
	}
	evs := b.eventsOf(t)
	for _, id := range orderIDs {
		if len(evs[id]) != 1 {
			t.Fatalf("order %s: events %v, want exactly one outcome", id, evs[id])
		}
	}
	stats, err := b.jobs.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range stats {
		if q.Visible+q.InFlight+q.Delayed != 0 {
			t.Fatalf("queue %s not empty: %+v", q.Queue, q)
		}
	}
}

// TestRefundRequiredRefundsTheChargeOnceAndPublishesIt: order.refund_required for a succeeded payment creates one
// refund (whatever the number of requests), the provider refunds the
// charge once with the refund's key, the payment becomes refunded and
// payment.refunded is written.
func TestRefundRequiredRefundsTheChargeOnceAndPublishesIt(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Faults{}, paymentsvc.Config{})
	b.work(t, 2)
	p := b.create(t, "tok_visa")
	b.settled(t, 30*time.Second)
	ctx := context.Background()
	rr := ordersapi.RefundRequired{OrderID: p.OrderID, PaymentID: p.ID, AmountMinor: p.AmountMinor, Currency: "EUR", Status: "cancelled"}
	var created []bool
	for range 3 {
		if err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
			c, err := b.svc.RequestRefund(ctx, tx, rr)
			created = append(created, c)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if !created[0] || created[1] || created[2] {
		t.Fatalf("refunds created: %v, want only the first", created)
	}
	b.settled(t, 30*time.Second)
	got, _ := b.svc.Get(ctx, p.ID, "")
	st := b.sim.Stats()
	if got.Status != paymentsapi.StatusRefunded || got.RefundedMinor != p.AmountMinor || st.RefundsCreated != 1 || st.RefundedByCharge[got.ChargeID] != p.AmountMinor {
		t.Fatalf("after refund: %+v, provider %+v", got, st)
	}
	if evs := b.eventsOf(t)[p.OrderID]; len(evs) != 2 || evs[1] != paymentsapi.EventPaymentRefunded {
		t.Fatalf("events %v", evs)
	}
	var payload []byte
	if err := b.db.Pool.QueryRow(ctx, `SELECT payload FROM outbox WHERE event_type = 'payment.refunded'`).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	ev, _ := events.Unmarshal(payload)
	if ev.Subject != p.OrderID || ev.AggregateVersion != 3 {
		t.Fatalf("payment.refunded: subject %s version %d", ev.Subject, ev.AggregateVersion)
	}
	// A refund for a payment that never succeeded needs nothing.
	declined := b.create(t, "tok_chargeDeclined")
	b.settled(t, 30*time.Second)
	if err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
		c, err := b.svc.RequestRefund(ctx, tx, ordersapi.RefundRequired{OrderID: declined.OrderID, PaymentID: declined.ID})
		if c {
			t.Error("refund created for a declined payment")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestProviderCallsAreRecorded: every call to the provider is in the
// payment's history with what its answer meant: a charge, a decline, a
// charge whose answer was lost (timeout after charging) and the lookup
// that found it, a 429 with its Retry-After, and a refund.
func TestProviderCallsAreRecorded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, pspsim.Faults{}, paymentsvc.Config{})
	b.work(t, 2)
	calls := func(p payment.Payment) string {
		t.Helper()
		cs, err := b.svc.Calls(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for i, c := range cs {
			s := fmt.Sprintf("%d:%s:%s", c.Attempt, c.Operation, c.Outcome)
			if c.RetryAfterMs != nil {
				s += fmt.Sprintf(":retry_after=%dms", *c.RetryAfterMs)
			}
			if c.At.IsZero() || c.DurationMs < 0 || (i > 0 && c.At.Before(cs[i-1].At)) {
				t.Errorf("call %d of %s: at %v, %d ms", i, p.ID, c.At, c.DurationMs)
			}
			out = append(out, s)
		}
		return strings.Join(out, " ")
	}
	ok, declined := b.create(t, "tok_visa"), b.create(t, "tok_chargeDeclined")
	b.settled(t, 30*time.Second)
	if got := calls(ok); got != "1:charge:charged" {
		t.Errorf("visa: %s", got)
	}
	if got := calls(declined); got != "1:charge:declined" {
		t.Errorf("declined: %s", got)
	}

	if err := b.sim.SetFaults(pspsim.Faults{TimeoutAfterChargeRate: 1, Hang: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	lost := b.create(t, "tok_visa")
	b.settled(t, 30*time.Second)
	if got := calls(lost); got != "1:charge:ambiguous 1:find_charge:found" {
		t.Errorf("timeout after charge: %s", got)
	}

	if err := b.sim.SetFaults(pspsim.Faults{RateLimitRate: 1, RetryAfter: time.Second}); err != nil {
		t.Fatal(err)
	}
	limited := b.create(t, "tok_visa")
	testinfra.Eventually(t, 10*time.Second, func() error {
		if got := calls(limited); !strings.HasPrefix(got, "1:charge:rate_limited:retry_after=1000ms") {
			return fmt.Errorf("calls %q", got)
		}
		return nil
	})
	if err := b.sim.SetFaults(pspsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	b.settled(t, 30*time.Second)
	if got := calls(limited); !strings.HasSuffix(got, "2:charge:charged") {
		t.Errorf("rate limited, then charged: %s", got)
	}

	// The refund of a charged payment.
	if err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
		_, err := b.svc.RequestRefund(ctx, tx, ordersapi.RefundRequired{OrderID: ok.OrderID, PaymentID: ok.ID, AmountMinor: ok.AmountMinor,
			Currency: ok.Currency, Reason: ordersapi.ReasonOrderNotPayable})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	b.settled(t, 30*time.Second)
	if got := calls(ok); got != "1:charge:charged 1:refund:refunded" {
		t.Errorf("refunded: %s", got)
	}
}

// TestMoneyDeadLettersAreKeptThirtyDays: the charge and refund DLQs keep
// a dead letter for jobqueue.DeadLetterRetention (30 days, counted from
// the dead-lettering), not the queues' 4-day default: an unresolved
// refund must not vanish before a person looks at it.
func TestMoneyDeadLettersAreKeptThirtyDays(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Faults{}, paymentsvc.Config{MaxReceives: 3})
	for _, q := range []string{paymentsvc.ChargeDLQ, paymentsvc.RefundDLQ} {
		var days float64
		if err := b.db.Pool.QueryRow(context.Background(), `SELECT extract(epoch FROM retention) / 86400 FROM jobqueue_queues WHERE name = $1`, q).Scan(&days); err != nil {
			t.Fatal(err)
		}
		if days != 30 {
			t.Errorf("%s keeps dead letters %v days, want 30", q, days)
		}
	}
}
