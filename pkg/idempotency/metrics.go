package idempotency

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes counted by idempotency_requests_total.
const (
	// OutcomeCreated: the key was new (or expired); fn ran and its response
	// was stored with its writes.
	OutcomeCreated = "created"
	// OutcomeReplayed: the stored response was returned; fn did not run.
	OutcomeReplayed = "replayed"
	// OutcomeInFlightConflict: answered 409, the first request still runs.
	OutcomeInFlightConflict = "in_flight_conflict"
	// OutcomeMismatch: answered 422, the key belongs to another request.
	OutcomeMismatch = "mismatch"
	// OutcomeMissingKey: answered 400, no key.
	OutcomeMissingKey = "missing_key"
	// OutcomeInvalidKey: answered 400, a malformed key.
	OutcomeInvalidKey = "invalid_key"
	// OutcomeRolledBack: fn returned an error or panicked (or the wrapped
	// handler answered 4xx/5xx); nothing was stored, the key is free.
	OutcomeRolledBack = "rolled_back"
	// OutcomeError: the database failed; nothing was stored.
	OutcomeError = "error"
)

// metrics counts requests by outcome; a nil *metrics counts nothing.
type metrics struct {
	requests *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "idempotency_requests_total",
		Help: "Requests carrying (or lacking) an Idempotency-Key, by outcome (created, replayed, in_flight_conflict, mismatch, missing_key, invalid_key, rolled_back, error).",
	}, []string{"outcome"})
	if err := reg.Register(c); err != nil {
		// Several Stores of one process (one per route) share the counter.
		var are prometheus.AlreadyRegisteredError
		existing, ok := c, false
		if errors.As(err, &are) {
			existing, ok = are.ExistingCollector.(*prometheus.CounterVec)
		}
		if !ok {
			return nil, fmt.Errorf("idempotency: register metrics: %w", err)
		}
		c = existing
	}
	for _, o := range []string{OutcomeCreated, OutcomeReplayed, OutcomeInFlightConflict, OutcomeMismatch,
		OutcomeMissingKey, OutcomeInvalidKey, OutcomeRolledBack, OutcomeError} {
		c.WithLabelValues(o) // export zeros, so rates work from the first scrape
	}
	return &metrics{requests: c}, nil
}

func (m *metrics) count(outcome string) {
	if m != nil {
		m.requests.WithLabelValues(outcome).Inc()
	}
}
