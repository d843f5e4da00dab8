// Package breaker is a circuit breaker for a dependency that background
// workers call (a payment provider, an SMTP relay): after Failures
// consecutive dependency failures it opens, and while it is open the
// workers in front of the dependency stop taking work instead of spending
// their jobs' attempts on calls that cannot succeed
// (../shared/guidance 004, "Backpressure"; the job-queue side is
// jobqueue.WorkerConfig.Gate).
//
// States and transitions:
//
//   - Closed: calls go through; Failure counts consecutive failures,
//     Success resets the count. Failures in a row open the breaker.
//   - Open: Allow answers ErrOpen and Wait blocks, for the cool-down
//     (CoolDown, doubled after each failed probe up to MaxCoolDown).
//   - Half-open: after the cool-down, Wait lets exactly one caller
//     through as the probe; the others keep waiting. The probe's outcome
//     decides: Success closes, Failure reopens with a longer cool-down. A
//     probe that reports nothing (its job needed no call) gives its turn
//     back with Ticket.Release.
//
// What counts as a failure is the caller's decision: report a dependency
// failure (5xx, refused connection, timeout, a 429) with Failure, and an
// answer that proves the dependency works — including a decline or a
// rejected request — with Success. A call cut short by the caller's own
// shutdown is neither.
//
// Metrics: breaker_state{name} (0 closed, 1 half-open, 2 open) and
// breaker_transitions_total{name,to}.
package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// State of a breaker; the values are those of the breaker_state gauge.
type State int

// States.
const (
	Closed   State = 0
	HalfOpen State = 1
	Open     State = 2
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	default:
		return "open"
	}
}

// ErrOpen is Allow's answer while the breaker is open.
var ErrOpen = errors.New("breaker: open")

// Config configures a Breaker.
type Config struct {
	// Name labels the metrics and logs ("psp", "smtp"). Required.
	Name string
	// Failures in a row that open the breaker. Default 5.
	Failures int
	// CoolDown is how long the breaker stays open the first time. Default 5s.
	CoolDown time.Duration
	// MaxCoolDown caps the cool-down, which doubles after each failed
	// probe. Default 1m (at least CoolDown).
	MaxCoolDown time.Duration
	// Registerer receives the metrics; nil: none.
	Registerer prometheus.Registerer
	// Logger logs each transition; nil: none.
	Logger *slog.Logger
	// OnStateChange, if set, is called on every transition, under the
	// breaker's lock: it must not call the breaker.
	OnStateChange func(from, to State)
}

// Breaker is safe for concurrent use.
type Breaker struct {
	cfg         Config
	log         *slog.Logger
	gauge       prometheus.Gauge
	transitions *prometheus.CounterVec

	mu        sync.Mutex
	state     State
	failures  int
	coolDown  time.Duration // of the current or next opening
	openUntil time.Time
	probing   bool
	changed   chan struct{} // closed and replaced on every change a waiter cares about
	epoch     context.Context
	endEpoch  context.CancelFunc
}

// New returns a closed breaker.
func New(cfg Config) (*Breaker, error) {
	if cfg.Name == "" {
		return nil, errors.New("breaker: a name is required")
	}
	if cfg.Failures <= 0 {
		cfg.Failures = 5
	}
	if cfg.CoolDown <= 0 {
		cfg.CoolDown = 5 * time.Second
	}
	if cfg.MaxCoolDown < cfg.CoolDown {
		cfg.MaxCoolDown = max(time.Minute, cfg.CoolDown)
	}
	b := &Breaker{cfg: cfg, log: cfg.Logger, coolDown: cfg.CoolDown, changed: make(chan struct{})}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.epoch, b.endEpoch = context.WithCancel(context.Background())
	b.gauge = prometheus.NewGauge(prometheus.GaugeOpts{Name: "breaker_state", Help: "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
		ConstLabels: prometheus.Labels{"name": cfg.Name}})
	b.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "breaker_transitions_total", Help: "Circuit breaker state changes, by new state.",
		ConstLabels: prometheus.Labels{"name": cfg.Name}}, []string{"to"})
	for _, s := range []State{Closed, HalfOpen, Open} {
		b.transitions.WithLabelValues(s.String())
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{b.gauge, b.transitions} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("breaker %s metrics: %w", cfg.Name, err)
			}
		}
	}
	return b, nil
}

// Name is the breaker's name.
func (b *Breaker) Name() string { return b.cfg.Name }

// State returns the current state (an open breaker whose cool-down has
// passed reads as half-open).
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tick(time.Now())
	return b.state
}

// Allow says whether a call may go to the dependency now: nil when closed
// or half-open, ErrOpen while open.
func (b *Breaker) Allow() error {
	if b.State() == Open {
		return ErrOpen
	}
	return nil
}

// Success reports a call that reached a working dependency.
func (b *Breaker) Success() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = 0
	b.probing = false
	if b.state != Closed {
		b.coolDown = b.cfg.CoolDown
		b.set(Closed)
	}
}

// Failure reports a dependency failure.
func (b *Breaker) Failure() {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tick(now)
	b.failures++
	switch {
	case b.state == HalfOpen:
		b.probing = false
		b.coolDown = min(2*b.coolDown, b.cfg.MaxCoolDown)
		b.open(now)
	case b.state == Closed && b.failures >= b.cfg.Failures:
		b.open(now)
	}
}

// Observe reports one call's outcome: Failure when outage(err), Success
// otherwise (a nil error, or an answer about this one request), and
// nothing when ctx has ended (the caller's own shutdown cut the call
// short, which says nothing about the dependency).
func (b *Breaker) Observe(ctx context.Context, err error, outage func(error) bool) {
	switch {
	case ctx.Err() != nil:
	case outage(err):
		b.Failure()
	default:
		b.Success()
	}
}

// Ticket is a caller's turn, from Wait.
type Ticket struct {
	// Probe is set on the one caller let through in half-open.
	Probe bool
	// Revoked ends when the breaker opens: work started under this
	// ticket (a long poll) should stop taking more.
	Revoked context.Context
	b       *Breaker
}

// Release gives back a probe's turn when its work reported no outcome
// (nothing needed the dependency), so another caller may probe. It does
// nothing for a ticket that is not a probe, or whose outcome was
// reported already.
func (t Ticket) Release() {
	if !t.Probe {
		return
	}
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == HalfOpen && b.probing {
		b.probing = false
		b.notify()
	}
}

// Wait blocks while the breaker is open, and in half-open while another
// caller probes. It returns at once when closed. The error is ctx's.
func (b *Breaker) Wait(ctx context.Context) (Ticket, error) {
	for {
		b.mu.Lock()
		now := time.Now()
		b.tick(now)
		changed, wait := b.changed, time.Duration(0)
		switch {
		case b.state == Closed:
			t := Ticket{Revoked: b.epoch, b: b}
			b.mu.Unlock()
			return t, nil
		case b.state == HalfOpen && !b.probing:
			b.probing = true
			t := Ticket{Probe: true, Revoked: b.epoch, b: b}
			b.mu.Unlock()
			return t, nil
		case b.state == Open:
			wait = b.openUntil.Sub(now)
		}
		b.mu.Unlock()
		var timer *time.Timer
		var expired <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			expired = timer.C
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-expired:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return Ticket{}, ctx.Err()
		}
	}
}

// tick moves an open breaker whose cool-down has passed to half-open.
// Callers hold mu.
func (b *Breaker) tick(now time.Time) {
	if b.state == Open && !now.Before(b.openUntil) {
		b.probing = false
		b.set(HalfOpen)
	}
}

func (b *Breaker) open(now time.Time) {
	b.openUntil = now.Add(b.coolDown)
	b.set(Open)
	b.log.Warn("circuit breaker open", "breaker", b.cfg.Name, "failures", b.failures, "cool_down", b.coolDown.String())
}

// set changes the state, wakes the waiters and revokes the tickets when
// the breaker opens. Callers hold mu.
func (b *Breaker) set(s State) {
	if s == b.state {
		return
	}
	if s == Open {
		b.endEpoch()
	} else if b.state == Open {
		b.epoch, b.endEpoch = context.WithCancel(context.Background())
	}
	if s != Open {
		b.log.Info("circuit breaker "+s.String(), "breaker", b.cfg.Name)
	}
	if b.cfg.OnStateChange != nil {
		b.cfg.OnStateChange(b.state, s)
	}
	b.state = s
	b.gauge.Set(float64(s))
	b.transitions.WithLabelValues(s.String()).Inc()
	b.notify()
}

func (b *Breaker) notify() {
	close(b.changed)
	b.changed = make(chan struct{})
}
