package notificationsvc

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
)

// Outcomes of a failed attempt, as notifications_emails_failed_total
// labels them.
const (
	outcomeRetry      = "retry"
	outcomeDeadLetter = "dead_letter"
)

// metrics are the service's Prometheus counters; a nil *metrics counts
// nothing.
type metrics struct {
	created *prometheus.CounterVec
	sent    *prometheus.CounterVec
	failed  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		created: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "notifications_created_total",
			Help: "Notifications recorded (one per order and kind; replays and redeliveries are not counted), by kind."}, []string{"kind"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "notifications_emails_sent_total",
			Help: "E-mails the SMTP server accepted, by kind. Above notifications_created_total only when the at-least-once SMTP hop resent one (same Message-ID)."}, []string{"kind"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "notifications_emails_failed_total",
			Help: "Failed e-mail attempts, by kind and outcome: retry (backoff) or dead_letter (given up, notification failed)."}, []string{"kind", "outcome"}),
	}
	for _, c := range []prometheus.Collector{m.created, m.sent, m.failed} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("notifications metrics: %w", err)
		}
	}
	for _, k := range notificationsapi.Kinds() { // export zeros, so rates work from the first scrape
		m.created.WithLabelValues(k)
		m.sent.WithLabelValues(k)
		m.failed.WithLabelValues(k, outcomeRetry)
		m.failed.WithLabelValues(k, outcomeDeadLetter)
	}
	return m, nil
}

func (m *metrics) create(kind string) {
	if m != nil {
		m.created.WithLabelValues(kind).Inc()
	}
}

func (m *metrics) send(kind string) {
	if m != nil {
		m.sent.WithLabelValues(kind).Inc()
	}
}

func (m *metrics) fail(kind, outcome string) {
	if m != nil {
		m.failed.WithLabelValues(kind, outcome).Inc()
	}
}
