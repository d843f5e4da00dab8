package pspsim

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Prometheus counters; a nil *metrics counts nothing.
type metrics struct {
	requests *prometheus.CounterVec
	charges  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	requests, err := registerCounterVec(reg, prometheus.CounterOpts{
		Name: "pspsim_requests_total",
		Help: "Requests to the PSP simulator's charge and refund routes, by route and outcome (fault outcomes included).",
	}, "route", "outcome")
	if err != nil {
		return nil, err
	}
	charges, err := registerCounterVec(reg, prometheus.CounterOpts{
		Name: "pspsim_charges_total",
		Help: "Charges created by the PSP simulator, by status (succeeded, declined). Replays are not counted.",
	}, "status")
	if err != nil {
		return nil, err
	}
	for _, st := range []string{StatusSucceeded, StatusDeclined} {
		charges.WithLabelValues(st) // export zeros, so rates work from the first scrape
	}
	return &metrics{requests: requests, charges: charges}, nil
}

// registerCounterVec registers a counter vector, or returns the one already
// registered under that name (several simulators on one registry).
func registerCounterVec(reg prometheus.Registerer, opts prometheus.CounterOpts, labels ...string) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(opts, labels)
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("pspsim: register %s: %w", opts.Name, err)
	}
	return c, nil
}

func (m *metrics) request(route, outcome string) {
	if m != nil {
		m.requests.WithLabelValues(route, outcome).Inc()
	}
}

func (m *metrics) charge(status string) {
	if m != nil {
		m.charges.WithLabelValues(status).Inc()
	}
}
