package pspsim

import (
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Charge statuses.
const (
	// StatusSucceeded: the money was taken. Only a succeeded charge can be
	// refunded, and only succeeded charges count as charges of a reference
	// in Stats.SucceededByReference.
	StatusSucceeded = "succeeded"
	// StatusDeclined: the test card refused the charge; DeclineCode says
	// why. Final: asking again with the same key replays the decline.
	StatusDeclined = "declined"
)

// Decline codes, answered for the matching test card tokens.
const (
	// DeclineCardDeclined: the card refused the charge (tok_chargeDeclined).
	DeclineCardDeclined = "card_declined"
	// DeclineInsufficientFunds: not enough money (tok_insufficientFunds).
	DeclineInsufficientFunds = "insufficient_funds"
	// DeclineExpiredCard: the card has expired (tok_expiredCard).
	DeclineExpiredCard = "expired_card"
)

// Test card tokens: the only payment methods the simulator accepts. Any
// other value is answered 400.
// They are public test values, like Stripe's, not credentials.
const (
	// TokenVisa succeeds.
	TokenVisa = "tok_visa"
	// TokenMastercard succeeds.
	TokenMastercard = "tok_mastercard"
	// TokenChargeDeclined is declined with DeclineCardDeclined.
	TokenChargeDeclined = "tok_chargeDeclined" //nolint:gosec // G101: a public test token, not a credential
	// TokenInsufficientFunds is declined with DeclineInsufficientFunds.
	TokenInsufficientFunds = "tok_insufficientFunds"
	// TokenExpiredCard is declined with DeclineExpiredCard.
	TokenExpiredCard = "tok_expiredCard"
)

// tokens maps each test token to its decline code ("" succeeds).
var tokens = map[string]string{
	TokenVisa:              "",
	TokenMastercard:        "",
	TokenChargeDeclined:    DeclineCardDeclined,
	TokenInsufficientFunds: DeclineInsufficientFunds,
	TokenExpiredCard:       DeclineExpiredCard,
}

// Charge is a charge as the simulator stores and answers it. A charge
// never changes after it is created; refunds are separate objects.
type Charge struct {
	// ID is "ch_" followed by 32 hex digits, unique across resets.
	ID string `json:"id"`
	// Status is StatusSucceeded or StatusDeclined.
	Status string `json:"status"`
	// AmountMinor is the amount in minor units (cents).
	AmountMinor int64 `json:"amount_minor"`
	// Currency is the ISO 4217 code, three upper-case letters.
	Currency string `json:"currency"`
	// PaymentMethod is the test token charged (never card data).
	PaymentMethod string `json:"payment_method"`
	// Reference is the caller's reference, typically the order id.
	Reference string `json:"reference"`
	// IdempotencyKey is the key the charge was created with.
	IdempotencyKey string `json:"idempotency_key"`
	// DeclineCode is set when Status is StatusDeclined.
	DeclineCode string `json:"decline_code,omitempty"`
	// CreatedAt is Config.Now at creation, in UTC.
	CreatedAt time.Time `json:"created_at"`
}

// RefundSucceeded is the status of every refund: the simulator's refunds
// succeed when they are accepted.
const RefundSucceeded = "succeeded"

// Refund is a refund of (part of) a succeeded charge.
type Refund struct {
	// ID is "re_" followed by 32 hex digits, unique across resets.
	ID string `json:"id"`
	// ChargeID is the refunded charge.
	ChargeID string `json:"charge_id"`
	// AmountMinor is the refunded amount in minor units, in the charge's
	// currency.
	AmountMinor int64 `json:"amount_minor"`
	// Status is RefundSucceeded.
	Status string `json:"status"`
	// IdempotencyKey is the key the refund was created with.
	IdempotencyKey string `json:"idempotency_key"`
	// CreatedAt is Config.Now at creation, in UTC.
	CreatedAt time.Time `json:"created_at"`
}

// Stats counts what the simulator did since New or the last Reset. It is a
// copy: changing it changes nothing in the simulator. Maps are never nil.
type Stats struct {
	// ChargesCreated counts charge objects created, succeeded and
	// declined; replays create nothing.
	ChargesCreated int `json:"charges_created"`
	// ChargesSucceeded counts the succeeded charges among them.
	ChargesSucceeded int `json:"charges_succeeded"`
	// ChargesDeclined counts the declined charges among them.
	ChargesDeclined int `json:"charges_declined"`
	// ChargesByIdempotencyKey counts charges created per key. Every value
	// is 1 by construction: a second request with a key replays or is
	// refused. It is here so that a test can say so.
	ChargesByIdempotencyKey map[string]int `json:"charges_by_idempotency_key"`
	// SucceededByReference counts succeeded charges per reference (order
	// id). A value above 1 is a double charge of that reference by a
	// client that used two different keys for it; see DoubleCharges.
	SucceededByReference map[string]int `json:"succeeded_by_reference"`
	// DoubleCharges lists, sorted, the references with more than one
	// succeeded charge. Empty (not null in JSON) when there is none.
	DoubleCharges []string `json:"double_charges"`
	// RefundsCreated counts refund objects created.
	RefundsCreated int `json:"refunds_created"`
	// RefundedByCharge is the refunded amount per charge id, in minor
	// units. It never exceeds the charge's amount.
	RefundedByCharge map[string]int64 `json:"refunded_minor_by_charge"`
	// Requests counts requests to the charge and refund routes by route
	// (RouteCreateCharge, ...) and outcome (OutcomeCreated, ...), fault
	// outcomes included. Admin and health routes are not counted.
	Requests map[string]map[string]int `json:"requests"`
}

// Config configures a Sim. The zero value is usable.
type Config struct {
	// Now stamps created_at. Default time.Now.
	Now func() time.Time
	// Logger logs fault changes and resets at Info and each simulated
	// fault at Debug. Default: discard.
	Logger *slog.Logger
	// Registerer receives pspsim_requests_total{route,outcome} and
	// pspsim_charges_total{status}; nil: no metrics. Simulators sharing a
	// Registerer share the counters.
	Registerer prometheus.Registerer
	// Seed seeds the random source that decides which requests a fault
	// rate hits. The same seed and the same sequence of requests give the
	// same faults; rates of exactly 0 and 1 do not depend on it.
	Seed int64
	// Faults are the faults injected from the start (and again after
	// Reset). They must pass Faults.Validate.
	Faults Faults
}

// Sim is a payment service provider simulator. Create it with New and
// serve Handler. Its methods are safe for concurrent use.
type Sim struct {
	now     func() time.Time
	log     *slog.Logger
	m       *metrics
	seed    int64
	initial Faults

	// mu guards everything below. It is held across the check for an
	// idempotency key and the creation of the charge or refund, which is
	// what makes "at most one charge per key" hold under concurrency.
	mu              sync.Mutex
	rng             *rand.Rand
	faults          Faults
	charges         map[string]*storedCharge // by id
	chargesByKey    map[string]*storedCharge
	refundsByKey    map[string]*storedRefund
	refundsByCharge map[string][]*storedRefund
	stats           counts
}

// storedCharge is a charge with the response first given for it, which is
// replayed byte for byte.
type storedCharge struct {
	charge      Charge
	fingerprint string
	status      int
	body        []byte
}

// storedRefund is a refund with the response first given for it.
type storedRefund struct {
	refund      Refund
	fingerprint string
	status      int
	body        []byte
}

// counts are the live counters behind Stats.
type counts struct {
	created, succeeded, declined, refunds int
	byKey                                 map[string]int
	succeededByRef                        map[string]int
	refundedByCharge                      map[string]int64
	requests                              map[string]map[string]int
}

// New returns a simulator with no charges and cfg.Faults injected. It
// fails when cfg.Faults is invalid or the metrics cannot be registered.
func New(cfg Config) (*Sim, error) {
	if err := cfg.Faults.Validate(); err != nil {
		return nil, fmt.Errorf("pspsim: initial faults: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Sim{
		now:     cfg.Now,
		log:     cfg.Logger,
		m:       m,
		seed:    cfg.Seed,
		initial: cfg.Faults,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.resetLocked()
	return s, nil
}

// resetLocked puts the simulator back into the state New returned. s.mu
// must be held (or s not yet shared).
func (s *Sim) resetLocked() {
	// Fault injection is not a security decision; a seeded, reproducible
	// source is the point.
	s.rng = rand.New(rand.NewPCG(uint64(s.seed), 0x70737073696d)) //nolint:gosec // G404: reproducible fault draws, not security
	s.faults = s.initial
	s.charges = map[string]*storedCharge{}
	s.chargesByKey = map[string]*storedCharge{}
	s.refundsByKey = map[string]*storedRefund{}
	s.refundsByCharge = map[string][]*storedRefund{}
	s.stats = counts{
		byKey:            map[string]int{},
		succeededByRef:   map[string]int{},
		refundedByCharge: map[string]int64{},
		requests:         map[string]map[string]int{},
	}
}

// Reset forgets every charge, refund and count and restores the faults
// and random source New started with (Config.Faults, Config.Seed).
// Prometheus counters are not reset: counters only grow. A request in
// flight during Reset may still store its result afterwards.
func (s *Sim) Reset() {
	s.mu.Lock()
	s.resetLocked()
	s.mu.Unlock()
	s.log.Info("pspsim: reset")
}

// Faults returns the faults injected now.
func (s *Sim) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// SetFaults replaces the injected faults (all fields at once) after
// validating them; on error nothing changes. Requests already past a
// fault's point of application are not affected.
func (s *Sim) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
	s.log.Info("pspsim: faults changed", slog.Any("faults", f))
	return nil
}

// Stats returns a copy of the counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Stats{
		ChargesCreated:          s.stats.created,
		ChargesSucceeded:        s.stats.succeeded,
		ChargesDeclined:         s.stats.declined,
		ChargesByIdempotencyKey: maps.Clone(s.stats.byKey),
		SucceededByReference:    maps.Clone(s.stats.succeededByRef),
		DoubleCharges:           s.doubleChargesLocked(),
		RefundsCreated:          s.stats.refunds,
		RefundedByCharge:        maps.Clone(s.stats.refundedByCharge),
		Requests:                make(map[string]map[string]int, len(s.stats.requests)),
	}
	for route, outcomes := range s.stats.requests {
		out.Requests[route] = maps.Clone(outcomes)
	}
	return out
}

// DoubleCharges returns, sorted, the references that have more than one
// succeeded charge: each one is an order a client charged twice (with two
// different idempotency keys). Empty, never nil, when there is none.
func (s *Sim) DoubleCharges() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.doubleChargesLocked()
}

func (s *Sim) doubleChargesLocked() []string {
	refs := []string{}
	for ref, n := range s.stats.succeededByRef {
		if n > 1 {
			refs = append(refs, ref)
		}
	}
	slices.Sort(refs)
	return refs
}

// countLocked records the outcome of one request to route.
func (s *Sim) countLocked(route, outcome string) {
	byOutcome := s.stats.requests[route]
	if byOutcome == nil {
		byOutcome = map[string]int{}
		s.stats.requests[route] = byOutcome
	}
	byOutcome[outcome]++
	s.m.request(route, outcome)
}

// count records the outcome of one request to route.
func (s *Sim) count(route, outcome string) {
	s.mu.Lock()
	s.countLocked(route, outcome)
	s.mu.Unlock()
}

// hitLocked draws whether a fault of the given rate hits this request.
func (s *Sim) hitLocked(rate float64) bool {
	return rate > 0 && s.rng.Float64() < rate
}
