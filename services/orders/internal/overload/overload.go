// Package overload sheds checkouts while the payment pipeline is behind
// (../shared/guidance 004, "Backpressure"; ADR 0028): accepting an order
// that payments will not reach for minutes only grows the backlog and the
// customer's wait, so POST /v1/orders answers 503 with Retry-After until
// the pipeline has caught up, and nothing else changes.
//
// The signal is a backlog age, sampled in the background every Interval
// (never on the request path); the largest of the signals counts:
//
//   - PendingOrders: how long orders have been waiting for their payment
//     result, from orders' own table, passing over a few stragglers. It is
//     end to end: a charge queue or a provider that has fallen behind shows
//     here, without a call to payments.
//   - GroupBacklog (PaymentPipeline): the oldest message a consumer group
//     has not finished, from JetStream's consumer info (stream.GroupLag):
//     payments' group on ORDERS (order.placed not yet taken) and orders' own
//     group on PAYMENTS (results not yet applied). It names the stage.
//
// Hysteresis: shedding starts when the age is above Threshold and stops
// only when it is below RecoverBelow (default half the threshold), so the
// service does not flap at the edge. A signal that cannot be read (NATS
// down, a group not created yet) counts as no backlog: the shedder fails
// open, and the stream lag alerts say why.
//
// Metrics: orders_checkout_shed_total (checkouts answered 503),
// orders_checkout_shedding (1 while shedding) and
// orders_payment_backlog_age_seconds (the last sample).
package overload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/natsauth"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/orders/internal/orderstream"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// Signal returns the current backlog age.
type Signal func(ctx context.Context) (time.Duration, error)

// GroupBacklog is the age of the oldest message of streamName that group
// has not finished, over all partitions. A group whose consumers do not
// exist yet (its service never started) has no backlog.
func GroupBacklog(js jetstream.JetStream, streamName, group string) Signal {
	return func(ctx context.Context) (time.Duration, error) {
		lags, err := stream.GroupLag(ctx, js, streamName, group, nil)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		var oldest time.Duration
		for _, l := range lags {
			oldest = max(oldest, l.OldestUnacked)
		}
		return oldest, nil
	}
}

// Config configures a Shedder.
type Config struct {
	// Threshold: shed while the backlog age is above it. Required (> 0).
	Threshold time.Duration
	// RecoverBelow: stop shedding once the age is below it. Default
	// Threshold/2; must not exceed Threshold.
	RecoverBelow time.Duration
	// Interval between samples. Default 1s.
	Interval time.Duration
	// RetryAfter is the least Retry-After of a shed checkout; up to as
	// much again is added at random so that shed clients do not come back
	// together. Default 5s.
	RetryAfter time.Duration
	// Registerer receives the metrics; nil: none.
	Registerer prometheus.Registerer
	// Logger logs when shedding starts and stops; nil: none.
	Logger *slog.Logger
}

// Shedder decides, from the sampled signals, whether checkouts are shed.
type Shedder struct {
	cfg      Config
	signals  []Signal
	log      *slog.Logger
	shedding atomic.Bool
	shed     prometheus.Counter
	gauge    prometheus.Gauge
	age      prometheus.Gauge
}

// New returns a shedder of the signals; Run samples them.
func New(cfg Config, signals ...Signal) (*Shedder, error) {
	if cfg.Threshold <= 0 {
		return nil, errors.New("overload: the threshold must be positive")
	}
	if cfg.RecoverBelow <= 0 {
		cfg.RecoverBelow = cfg.Threshold / 2
	}
	if cfg.RecoverBelow > cfg.Threshold {
		return nil, fmt.Errorf("overload: recover below %s is above the threshold %s", cfg.RecoverBelow, cfg.Threshold)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 5 * time.Second
	}
	s := &Shedder{cfg: cfg, signals: signals, log: cfg.Logger,
		shed: prometheus.NewCounter(prometheus.CounterOpts{Name: "orders_checkout_shed_total",
			Help: "Checkouts answered 503 overloaded because the payment pipeline was behind."}),
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "orders_checkout_shedding",
			Help: "1 while checkouts are shed (payment backlog above the threshold, until it is below the recovery level)."}),
		age: prometheus.NewGauge(prometheus.GaugeOpts{Name: "orders_payment_backlog_age_seconds",
			Help: "Last sampled age of the oldest unfinished message of the payment pipeline's consumer groups."}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.shed, s.gauge, s.age} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("overload metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Run samples the signals every Interval until ctx ends.
func (s *Shedder) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	failing := false
	for {
		age, err := s.sample(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			s.log.WarnContext(ctx, "payment backlog unreadable; not shedding until it is", "err", err)
		case err == nil && failing:
			s.log.InfoContext(ctx, "payment backlog readable again", "age", age.String())
		}
		failing = err != nil
		s.observe(ctx, age)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sample returns the largest age of the signals; an unreadable one counts
// as none (fail open), and its error is returned.
func (s *Shedder) sample(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, max(s.cfg.Interval, time.Second))
	defer cancel()
	var (
		oldest time.Duration
		errs   []error
	)
	for _, sig := range s.signals {
		age, err := sig(ctx)
		errs = append(errs, err)
		oldest = max(oldest, age)
	}
	return oldest, errors.Join(errs...)
}

// observe applies the hysteresis to one sample.
func (s *Shedder) observe(ctx context.Context, age time.Duration) {
	s.age.Set(age.Seconds())
	was := s.shedding.Load()
	now := was
	switch {
	case !was && age > s.cfg.Threshold:
		now = true
		s.log.WarnContext(ctx, "payment pipeline behind: shedding checkouts", "backlog_age", age.String(), "threshold", s.cfg.Threshold.String())
	case was && age < s.cfg.RecoverBelow:
		now = false
		s.log.InfoContext(ctx, "payment pipeline caught up: accepting checkouts", "backlog_age", age.String(), "recover_below", s.cfg.RecoverBelow.String())
	}
	s.shedding.Store(now)
	if now {
		s.gauge.Set(1)
	} else {
		s.gauge.Set(0)
	}
}

// Shedding reports whether checkouts are being shed.
func (s *Shedder) Shedding() bool { return s.shedding.Load() }

// Middleware answers every request 503 problem+json (type …/overloaded)
// with Retry-After while shedding, before next reads anything (the
// request's Idempotency-Key is not consumed), and passes it on otherwise.
// Mount it on the checkout route only.
func (s *Shedder) Middleware(next http.Handler) http.Handler { return s.Except(nil)(next) }

// Except is Middleware that, while shedding, still lets through the
// requests admit accepts (nil: none), e.g. the retry of a checkout that
// was accepted before: its answer is stored and replaying it costs one
// read, and shedding it would turn an accepted order into an error for the
// client.
func (s *Shedder) Except(admit func(*http.Request) bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler { return s.guard(admit, next) }
}

func (s *Shedder) guard(admit func(*http.Request) bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.shedding.Load() || (admit != nil && admit(r)) {
			next.ServeHTTP(w, r)
			return
		}
		s.shed.Inc()
		p := httpkit.NewProblem(http.StatusServiceUnavailable, "overloaded",
			"payments are behind; checkouts are paused for a moment: retry after the Retry-After delay with the same Idempotency-Key")
		p.RetryAfter = s.cfg.RetryAfter + rand.N(s.cfg.RetryAfter+1) //nolint:gosec // G404: jitter, not security
		httpkit.WriteProblem(w, p)
	})
}

// PendingOrdersSkip is how many of the oldest orders pending payment
// PendingOrders passes over: a few stragglers (a charge retrying after a
// 429, an order the stuck-order repair has not reached) do not shed.
const PendingOrdersSkip = 10

// PendingOrders is the age of the oldest order still pending payment in
// orders' own table, passing over the skip oldest: the end-to-end signal.
// It sees a backlog anywhere between checkout and the payment result —
// the charge queue and the provider included, which no stream lag shows
// (payments takes order.placed into its queue at once) — without asking
// payments. It reads the partial index orders_pending_payment (updated_at,
// which a pending order keeps from its creation).
func PendingOrders(db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, skip int) Signal {
	return func(ctx context.Context) (time.Duration, error) {
		var secs float64
		err := db.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM now() - (
			SELECT updated_at FROM orders WHERE status = 'pending_payment' ORDER BY updated_at OFFSET $1 LIMIT 1)), 0)::float8`, skip).Scan(&secs)
		if err != nil {
			return 0, fmt.Errorf("overload: pending orders: %w", err)
		}
		return max(time.Duration(secs*float64(time.Second)), 0), nil
	}
}

// PaymentsGroup is payments' consumer group on ORDERS (payments'
// paymentstream.Group, which orders cannot import).
const PaymentsGroup = "payments"

// PaymentPipeline returns the signals orders sheds on: payments' group on
// ORDERS (order.placed not yet taken into a payment attempt) and orders'
// own group on PAYMENTS (payment results not yet applied to their orders).
func PaymentPipeline(js jetstream.JetStream) []Signal {
	return []Signal{
		GroupBacklog(js, ordersapi.Stream, PaymentsGroup),
		GroupBacklog(js, paymentsapi.Stream, orderstream.Group),
	}
}

// Dial connects to NATS for sampling only: it returns at once even while
// the server is down and reconnects forever in the background, and it is
// not a readiness dependency of the API (an unreadable signal sheds
// nothing). It connects as cfg's user, which must be allowed to read the groups'
// consumer info (natsauth: orders watches payments' group). Close the
// connection when done.
func Dial(cfg natsauth.Config, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := cfg.Connect(name, nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, nil, fmt.Errorf("overload: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("overload: JetStream: %w", err)
	}
	return nc, js, nil
}
