package ordersvc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/services/orders/internal/orderpg"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// Payments reads an order's payment (paymentsapi.Client).
type Payments interface {
	OrderPayment(ctx context.Context, orderID string) (paymentsapi.Payment, error)
}

// RepairConfig tunes the Repairer. Zero values take the defaults.
type RepairConfig struct {
	// StuckAfter: an order pending_payment longer than this is stuck.
	// Default 15m: well past a healthy created→paid (seconds) and the
	// payments reconciler's grace and pending bound (1m, 10m), so the
	// repair does not race the normal path.
	StuckAfter time.Duration
	// Interval between passes. Default 30s.
	Interval time.Duration
	// RetryMax caps the backoff between looks at an order that could not
	// be repaired. Default 6h.
	RetryMax time.Duration
	// Batch: most orders one pass claims. Default 50.
	Batch int
}

func (c RepairConfig) withDefaults() RepairConfig {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.StuckAfter, 15*time.Minute)
	def(&c.Interval, 30*time.Second)
	def(&c.RetryMax, 6*time.Hour)
	if c.Batch <= 0 {
		c.Batch = 50
	}
	return c
}

// Repair outcomes (orders_stuck_repaired_total{outcome}).
const (
	RepairPaid        = "paid"          // payments has a succeeded payment: applied
	RepairFailed      = "failed"        // payments has a failed payment: applied
	RepairRepublished = "republished"   // no payment: order.placed published again
	RepairWaiting     = "waiting"       // the payment is pending: payments' reconciler owns it
	RepairUnreachable = "lookup_failed" // payments did not answer
	RepairError       = "error"         // applying payments' state failed (orders' database): retried at the lease
)

// Repairer finds orders stuck in pending_payment and repairs each one from
// the source of truth, payments' state, not from a person (issue 16):
//
//   - payments has a succeeded (or refunded) payment: applied exactly as
//     payment.succeeded would be (paid; or, when it does not match the
//     order, payment_failed and a refund);
//   - a failed payment: applied as payment.failed;
//   - a pending payment: nothing; payments' reconciler settles it, and
//     its event will come; looked at again after StuckAfter;
//   - no payment at all (order.placed dead-lettered or never consumed by
//     payments): order.placed is published again from the outbox, and the
//     order looked at again with backoff.
//
// A repair goes through ApplyPayment, like the PAYMENTS consumer, so the
// event that arrives later (or a redrive) finds the order already changed
// and is recorded as ignored: applied once, whichever comes first.
type Repairer struct {
	s        *Service
	payments Payments
	cfg      RepairConfig
	retry    backoff.Policy
	log      *slog.Logger
	stuck    prometheus.Gauge
	oldest   prometheus.Gauge
	repaired *prometheus.CounterVec
}

// NewRepairer returns the service's repairer; reg (nil: none) receives
// orders_stuck{status}, orders_stuck_oldest_seconds and
// orders_stuck_repaired_total{outcome}.
func (s *Service) NewRepairer(payments Payments, cfg RepairConfig, log *slog.Logger, reg prometheus.Registerer) (*Repairer, error) {
	cfg = cfg.withDefaults()
	stuck := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "orders_stuck",
		Help: "Orders in a status longer than the repair bound (ORDERS_STUCK_AFTER), by status."}, []string{"status"})
	r := &Repairer{s: s, payments: payments, cfg: cfg, log: log.With("component", "stuck-order-repair"),
		retry: backoff.Policy{Initial: cfg.StuckAfter, Max: cfg.RetryMax, Multiplier: 2},
		stuck: stuck.WithLabelValues(ordersapi.StatusPendingPayment),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{Name: "orders_stuck_oldest_seconds",
			Help: "How long the oldest stuck order has been pending_payment (0 when none)."}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "orders_stuck_repaired_total",
			Help: "Looks at stuck orders by outcome: paid, failed, republished, waiting (payment pending), lookup_failed, error."}, []string{"outcome"}),
	}
	for _, o := range []string{RepairPaid, RepairFailed, RepairRepublished, RepairWaiting, RepairUnreachable, RepairError} {
		r.repaired.WithLabelValues(o)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{stuck, r.oldest, r.repaired} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("ordersvc: repair metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Run passes every Interval until ctx ends.
func (r *Repairer) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "stuck-order pass failed; next pass retries", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Pass looks at the stuck orders due and refreshes the gauges; it returns
// how many it repaired (applied a payment's outcome).
func (r *Repairer) Pass(ctx context.Context) (repaired int, err error) {
	now := r.s.now().UTC()
	n, oldest, err := orderpg.CountStuck(ctx, r.s.pool, now, r.cfg.StuckAfter)
	if err != nil {
		return 0, err
	}
	r.stuck.Set(float64(n))
	r.oldest.Set(oldest.Seconds())
	if n == 0 {
		return 0, nil
	}
	due, err := orderpg.ClaimStuck(ctx, r.s.pool, now, r.cfg.StuckAfter, time.Minute+r.cfg.Interval, r.cfg.Batch)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, o := range due {
		outcome, err := r.repair(ctx, o)
		r.repaired.WithLabelValues(outcome).Inc()
		if outcome == RepairPaid || outcome == RepairFailed {
			repaired++
		}
		errs = append(errs, err)
	}
	return repaired, errors.Join(errs...)
}

func (r *Repairer) repair(ctx context.Context, o orderpg.Stuck) (string, error) {
	now := r.s.now().UTC()
	log := r.log.With("order", o.ID, "pending_for", now.Sub(o.PendingSince).Round(time.Second), "attempt", o.Attempts+1)
	p, err := r.payments.OrderPayment(ctx, o.ID)
	switch {
	case errors.Is(err, paymentsapi.ErrNoPayment):
		var n int64
		err := pgdb.InTx(ctx, r.s.pool, func(tx pgx.Tx) error {
			var err error
			if n, err = outbox.RepublishKey(ctx, tx, o.ID, ordersapi.EventOrderPlaced); err != nil {
				return err
			}
			return orderpg.DeferRepair(ctx, tx, o.ID, now.Add(r.retry.Ceiling(o.Attempts+1)), true)
		})
		log.WarnContext(ctx, "stuck order has no payment; order.placed published again", "rows", n, "err", err)
		return RepairRepublished, err
	case err != nil:
		log.WarnContext(ctx, "stuck order: payments did not answer; looking again later", "err", err)
		return RepairUnreachable, orderpg.DeferRepair(ctx, r.s.pool, o.ID, now.Add(r.retry.Ceiling(o.Attempts+1)), true)
	case p.Status == paymentsapi.StatusPending:
		log.InfoContext(ctx, "stuck order's payment is pending; payments' reconciler settles it", "payment", p.ID)
		return RepairWaiting, orderpg.DeferRepair(ctx, r.s.pool, o.ID, now.Add(r.cfg.StuckAfter), false)
	}
	succeeded := p.Status == paymentsapi.StatusSucceeded || p.Status == paymentsapi.StatusRefunded
	typ, outcome := paymentsapi.EventPaymentFailed, RepairFailed
	if succeeded {
		typ, outcome = paymentsapi.EventPaymentSucceeded, RepairPaid
	}
	// The parent of what the repair writes: an envelope that stands for
	// payments' state as read now (its id is the repair's, recorded in
	// order_payment_events like an event's).
	parent := events.Envelope{ID: "repair-" + uuid.Must(uuid.NewV7()).String(), Type: typ, Source: "orders-repair", Subject: o.ID, Time: now}
	var res PaymentOutcome
	err = pgdb.InTx(ctx, r.s.pool, func(tx pgx.Tx) error {
		var err error
		res, err = r.s.ApplyPayment(ctx, tx, parent, PaymentEvent{OrderID: o.ID, PaymentID: p.ID, Succeeded: succeeded,
			AmountMinor: p.AmountMinor, Currency: p.Currency, Reason: cmp.Or(p.DeclineCode, p.FailureReason)})
		return err
	})
	if err != nil {
		return RepairError, fmt.Errorf("repair order %s: %w", o.ID, err)
	}
	log.WarnContext(ctx, "stuck order repaired from payments' state", "payment", p.ID, "payment_status", p.Status, "result", res.Result)
	return outcome, nil
}
