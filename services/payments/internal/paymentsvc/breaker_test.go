package paymentsvc_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/breaker"
	"github.com/shopfloor/shopfloor/pkg/breaker/breakertest"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentsvc"
	"github.com/shopfloor/shopfloor/services/payments/internal/psp"
	"github.com/shopfloor/shopfloor/services/payments/migrations"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

// TestProviderBreakerPausesTheChargeWorker: with the provider failing
// every call, the breaker in front of it opens after its failures in a
// row, and from then on the charge worker receives nothing: no provider
// call and no receive happens except one per half-open probe, so no job
// burns its attempts. When the provider heals, a probe closes the breaker
// and every charge goes through.
func TestProviderBreakerPausesTheChargeWorker(t *testing.T) {
	t.Parallel()
	const failures = 3
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations.FS)
	sim, err := pspsim.New(pspsim.Config{Seed: 7, Faults: pspsim.Faults{ErrorRate: 1}})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/charges") || strings.HasPrefix(r.URL.Path, "/refunds") {
			calls.Add(1)
		}
		sim.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	client, err := psp.New(psp.Config{BaseURL: srv.URL, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	brk := breakertest.New(t, breaker.Config{Name: "psp", Failures: failures, CoolDown: 50 * time.Millisecond, MaxCoolDown: 200 * time.Millisecond})
	jobs, err := jobqueue.New(db.Pool, jobqueue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jobs.Close)
	svc, err := paymentsvc.New(db.Pool, jobs, outbox.New(paymentsapi.Stream), psp.NewGuarded(client, brk.Breaker),
		paymentsvc.Config{MaxReceives: 1000}, slog.New(slog.DiscardHandler), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.CreateQueues(ctx); err != nil {
		t.Fatal(err)
	}
	b := &bundle{db: db, sim: sim, client: client, jobs: jobs, svc: svc}
	for range 10 {
		b.create(t, "tok_visa")
	}
	w := jobs.NewWorker(jobqueue.WorkerConfig{Queue: paymentsvc.ChargeQueue, Concurrency: 1, VisibilityTimeout: 5 * time.Second,
		Backoff: backoff.Policy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 2}, Gate: jobqueue.BreakerGate(brk.Breaker)}, svc.HandleCharge)
	breakertest.Run(t, w.Run)

	// One job at a time: none is between its receive and its call when
	// the breaker opens, so every call while open is a probe's.
	type snap struct{ opened, calls, receives int64 }
	snapshot := func() (s snap) {
		s.opened = brk.Steady(t, 20*time.Second, func() error {
			s.calls = calls.Load()
			return db.Pool.QueryRow(ctx, `SELECT coalesce(sum(receive_count), 0) FROM jobqueue_messages WHERE queue = 'charges'`).Scan(&s.receives)
		})
		return s
	}
	first := snapshot()
	brk.WaitOpened(t, first.opened+3, 20*time.Second)
	last := snapshot()
	probes := last.opened - first.opened
	if last.calls-first.calls != probes || last.receives-first.receives != probes {
		t.Fatalf("while open, %d probes ran but the provider got %d calls and the charge jobs %d receives; want one each per probe",
			probes, last.calls-first.calls, last.receives-first.receives)
	}
	if first.calls != failures+first.opened-1 {
		t.Fatalf("%d provider calls by the time the breaker had opened %d times; want %d failures in a row, then one per probe",
			first.calls, first.opened, failures)
	}

	if err := sim.SetFaults(pspsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	b.settled(t, 20*time.Second)
	var succeeded int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM payments WHERE status = 'succeeded'`).Scan(&succeeded); err != nil || succeeded != 10 {
		t.Fatalf("%d payments succeeded (%v), want all 10", succeeded, err)
	}
	if s := brk.State(); s != breaker.Closed {
		t.Fatalf("breaker %s after the provider healed", s)
	}
}
