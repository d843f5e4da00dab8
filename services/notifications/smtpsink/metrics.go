package smtpsink

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Prometheus counters; a nil *metrics counts nothing.
type metrics struct {
	messages *prometheus.CounterVec
	rejects  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	messages, err := registerCounterVec(reg, prometheus.CounterOpts{
		Name: "smtpsink_messages_total",
		Help: "Messages the SMTP sink accepted, by whether their Message-ID had been received before (duplicate=true).",
	}, "duplicate")
	if err != nil {
		return nil, err
	}
	rejects, err := registerCounterVec(reg, prometheus.CounterOpts{
		Name: "smtpsink_rejected_total",
		Help: "Refusals by the SMTP sink, by reason: down (421), recipient (550 for .invalid), policy (550 in reject mode), auth.",
	}, "reason")
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"false", "true"} {
		messages.WithLabelValues(d)
	}
	for _, r := range []string{"down", "recipient", "policy", "auth"} {
		rejects.WithLabelValues(r)
	}
	return &metrics{messages: messages, rejects: rejects}, nil
}

// registerCounterVec registers a counter vector, or returns the one already
// registered under that name (several sinks on one registry).
func registerCounterVec(reg prometheus.Registerer, opts prometheus.CounterOpts, labels ...string) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(opts, labels)
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("smtpsink: register %s: %w", opts.Name, err)
	}
	return c, nil
}

func (m *metrics) received(duplicate bool) {
	if m != nil {
		m.messages.WithLabelValues(fmt.Sprint(duplicate)).Inc()
	}
}

func (m *metrics) rejected(reason string) {
	if m != nil {
		m.rejects.WithLabelValues(reason).Inc()
	}
}
