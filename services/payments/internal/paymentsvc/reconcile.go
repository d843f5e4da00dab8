package paymentsvc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/services/payments/internal/payment"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentpg"
	"github.com/shopfloor/shopfloor/services/payments/internal/psp"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// ReconcileConfig tunes the reconciler. Zero values take the defaults.
type ReconcileConfig struct {
	// Interval between passes. Default 5s.
	Interval time.Duration
	// Grace is how long the reconciler waits after the worker gave a
	// charge up before a lookup that finds no charge counts as "never
	// charged": long enough for a charge still in flight at the provider
	// (the request whose answer timed out) to land. Default 1m.
	Grace time.Duration
	// PendingBound: a payment pending longer than this is looked up even
	// while its job still runs (a queue stuck behind rate limits, or a job
	// lost to its DLQ by crashes); a charge found settles it at once.
	// Default 10m.
	PendingBound time.Duration
	// RetryMax caps the backoff between failed lookups (the provider
	// unreachable). Default 5m. There is no last lookup: an unknown
	// outcome is never settled by guessing.
	RetryMax time.Duration
	// Batch is the most payments one pass claims. Default 50.
	Batch int
	// RefundAlertAfter: refunds open longer than this are counted in
	// refunds_pending_retry. Default 15m.
	RefundAlertAfter time.Duration
}

func (c ReconcileConfig) withDefaults() ReconcileConfig {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Interval, 5*time.Second)
	def(&c.Grace, time.Minute)
	def(&c.PendingBound, 10*time.Minute)
	def(&c.RetryMax, 5*time.Minute)
	def(&c.RefundAlertAfter, 15*time.Minute)
	if c.Batch <= 0 {
		c.Batch = 50
	}
	return c
}

// Reconciler settles payments whose outcome is unknown without a person
// (issue 16; ../shared/guidance 003 on ambiguous outcomes): it looks each
// one up with the provider by its idempotency key (the payment id) and
// records what the provider holds. A charge found settles the payment
// succeeded (or declined) and writes payment.succeeded (payment.failed),
// and orders turns a success it can no longer take into a refund; no
// charge found, once Grace has passed since the worker gave up, settles
// it failed (retries_exhausted), which only now means "nothing was
// charged". A lookup that fails is retried with capped backoff forever,
// and payments_unreconciled shows what waits.
type Reconciler struct {
	s       *Service
	cfg     ReconcileConfig
	retry   backoff.Policy
	settled *prometheus.CounterVec
	waiting prometheus.Gauge
	oldest  prometheus.Gauge
	refunds prometheus.Gauge
}

// NewReconciler returns the service's reconciler; reg (nil: none)
// receives payments_reconciled_total{outcome}, payments_unreconciled,
// payments_unreconciled_oldest_seconds and refunds_pending_retry.
func (s *Service) NewReconciler(cfg ReconcileConfig, reg prometheus.Registerer) (*Reconciler, error) {
	if s.provider == nil {
		return nil, errNoProvider
	}
	cfg = cfg.withDefaults()
	r := &Reconciler{s: s, cfg: cfg, retry: backoff.Policy{Initial: cfg.Interval, Max: cfg.RetryMax, Multiplier: 2},
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "payments_reconciled_total",
			Help: "Reconciler lookups by outcome: succeeded, declined, not_charged (settled failed), in_progress (the job still runs), lookup_failed."},
			[]string{"outcome"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "payments_unreconciled",
			Help: "Payments whose charge was given up without a definite answer and that the reconciler has not settled yet."}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{Name: "payments_unreconciled_oldest_seconds",
			Help: "How long the oldest unreconciled payment has waited (0 when none)."}),
		refunds: prometheus.NewGauge(prometheus.GaugeOpts{Name: "refunds_pending_retry",
			Help: "Refunds neither succeeded nor abandoned that are older than the alert bound (retrying, or failed and waiting for an operator)."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.settled, r.waiting, r.oldest, r.refunds} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("paymentsvc: reconciler metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Run passes every Interval until ctx ends; errors of a pass (the
// database down) are logged and the next pass tries again.
func (r *Reconciler) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.s.log.WarnContext(ctx, "reconciliation pass failed; next pass retries", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Pass claims the payments due for a lookup and looks each one up, then
// refreshes the gauges. It returns how many it settled.
func (r *Reconciler) Pass(ctx context.Context) (settled int, err error) {
	now := r.s.now().UTC()
	lease := 2*r.s.cfg.VisibilityTimeout + r.cfg.Interval
	due, err := paymentpg.ClaimUnsettled(ctx, r.s.pool, now, r.cfg.PendingBound, lease, r.cfg.Batch)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, u := range due {
		ok, err := r.reconcile(ctx, u)
		if ok {
			settled++
		}
		errs = append(errs, err)
	}
	b, err := paymentpg.ReadBacklog(ctx, r.s.pool, r.s.now().UTC(), r.cfg.RefundAlertAfter)
	if err == nil {
		r.waiting.Set(float64(b.Unreconciled))
		r.oldest.Set(b.OldestUnreconciled.Seconds())
		r.refunds.Set(float64(b.RefundsOpen))
	}
	return settled, errors.Join(append(errs, err)...)
}

// reconcile looks up one claimed payment and settles it when the answer is
// definite; otherwise it sets the next lookup.
func (r *Reconciler) reconcile(ctx context.Context, u paymentpg.Unsettled) (settled bool, err error) {
	s, now := r.s, r.s.now().UTC()
	log := s.log.With("payment", u.ID, "order", u.OrderID)
	var ch psp.Charge
	lookupErr := s.recordCall(ctx, u.ID, u.Attempts+1, paymentsapi.OpFindCharge, func() (err error) {
		ch, err = s.provider.FindCharge(ctx, u.ID)
		return err
	})
	givenUp := !u.OutcomeUnknownSince.IsZero()
	next := u.Payment
	next.UpdatedAt = now
	typ := paymentsapi.EventPaymentFailed
	outcome := ""
	switch {
	case lookupErr == nil && ch.Status == psp.StatusSucceeded:
		next.Status, next.ChargeID, next.DeclineCode, next.FailureReason = paymentsapi.StatusSucceeded, ch.ID, "", ""
		typ, outcome = paymentsapi.EventPaymentSucceeded, "succeeded"
	case lookupErr == nil:
		next.Status, next.ChargeID, next.DeclineCode = paymentsapi.StatusFailed, ch.ID, ch.DeclineCode
		outcome = "declined"
	case errors.Is(lookupErr, psp.ErrNotFound) && givenUp && now.Sub(u.OutcomeUnknownSince) >= r.cfg.Grace:
		next.Status, next.FailureReason = paymentsapi.StatusFailed, paymentsapi.ReasonRetriesExhausted
		outcome = "not_charged"
	case errors.Is(lookupErr, psp.ErrNotFound):
		// The job still runs (or the grace has not passed): look again
		// later; the worker may settle it first.
		r.settled.WithLabelValues("in_progress").Inc()
		wait := r.cfg.PendingBound
		if givenUp {
			wait = r.cfg.Grace - now.Sub(u.OutcomeUnknownSince)
		}
		return false, paymentpg.DeferReconcile(ctx, s.pool, u.ID, now.Add(max(wait, r.cfg.Interval)), "")
	default:
		r.settled.WithLabelValues("lookup_failed").Inc()
		delay := r.retry.Delay(u.Attempts + 1)
		log.WarnContext(ctx, "reconciliation lookup failed; retrying", "retry_in", delay, "attempts", u.Attempts+1, "err", lookupErr)
		return false, paymentpg.DeferReconcile(ctx, s.pool, u.ID, now.Add(delay), truncate(lookupErr.Error(), 500))
	}
	err = pgdb.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		changed, err := paymentpg.Complete(ctx, tx, next)
		if err != nil || !changed {
			return err
		}
		settled = true
		return s.emit(ctx, tx, typ, next, versionOutcome)
	})
	if err != nil {
		return false, fmt.Errorf("settle payment %s: %w", u.ID, err)
	}
	if settled {
		r.settled.WithLabelValues(outcome).Inc()
		log.InfoContext(ctx, "payment reconciled with the provider", "outcome", outcome, "charge", next.ChargeID,
			"unknown_for", durationSince(u.OutcomeUnknownSince, now), "lookups", u.Attempts+1)
	}
	return settled, nil
}

func durationSince(t, now time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return now.Sub(t)
}

// AbandonRefund gives up on an open refund for good, as an operator
// decided (actor) for reason: the refund is marked abandoned, its job is
// left to finish as a no-op (HandleRefund skips it), and the decision is
// recorded in the audit log, in one transaction. payment.ErrNotFound for
// an unknown refund; ErrRefundClosed when it succeeded or was abandoned;
// audit.ErrInvalid without an actor or a reason.
func (s *Service) AbandonRefund(ctx context.Context, refundID, actor, reason string) (paymentsapi.OpenRefund, error) {
	r, err := s.abandonRefund(ctx, refundID, actor, reason)
	return paymentsapi.OpenRefund{ID: r.ID, PaymentID: r.PaymentID, OrderID: r.OrderID, AmountMinor: r.AmountMinor,
		Status: r.Status, LastError: r.FailureReason}, err
}

func (s *Service) abandonRefund(ctx context.Context, refundID, actor, reason string) (payment.Refund, error) {
	var r payment.Refund
	if err := (audit.Entry{Actor: actor, Action: "refund.abandon", Reason: reason}).Check(); err != nil {
		return r, err
	}
	err := pgdb.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		var abandoned bool
		var err error
		r, abandoned, err = paymentpg.AbandonRefund(ctx, tx, refundID, reason, s.now().UTC())
		if err != nil {
			return err
		}
		if !abandoned {
			return fmt.Errorf("refund %s is %s: %w", refundID, r.Status, ErrRefundClosed)
		}
		return recordAbandon(ctx, tx, r, actor, reason)
	})
	if err == nil {
		r.Status, r.FailureReason = "abandoned", reason
		s.log.WarnContext(ctx, "refund abandoned by an operator", "refund", r.ID, "payment", r.PaymentID, "order", r.OrderID,
			"actor", actor, "reason", reason)
	}
	return r, err
}

// ErrRefundClosed: the refund succeeded or was abandoned already.
var ErrRefundClosed = errors.New("the refund is not open")

// recordAbandon writes the audit row of an abandoned refund in tx.
func recordAbandon(ctx context.Context, tx pgx.Tx, r payment.Refund, actor, reason string) error {
	return audit.Record(ctx, tx, audit.Entry{Actor: actor, Action: "refund.abandon", Target: "refund " + r.ID, Reason: reason,
		Detail: map[string]any{"payment_id": r.PaymentID, "order_id": r.OrderID, "amount_minor": r.AmountMinor,
			"status_before": r.Status, "last_error": r.FailureReason}})
}

// OpenRefunds lists refunds neither succeeded nor abandoned, oldest first.
func (s *Service) OpenRefunds(ctx context.Context, limit int) ([]paymentsapi.OpenRefund, error) {
	open, err := paymentpg.OpenRefunds(ctx, s.pool, limit)
	out := make([]paymentsapi.OpenRefund, len(open))
	for i, r := range open {
		out[i] = paymentsapi.OpenRefund{ID: r.ID, PaymentID: r.PaymentID, OrderID: r.OrderID, AmountMinor: r.AmountMinor,
			Status: r.Status, LastError: r.FailureReason, Attempts: r.Attempts, CreatedAt: r.CreatedAt}
	}
	return out, err
}

// Audit lists the audit log, newest first (audit.List).
func (s *Service) Audit(ctx context.Context, actionPrefix string, limit int) ([]audit.Entry, error) {
	return audit.List(ctx, s.pool, actionPrefix, limit)
}
