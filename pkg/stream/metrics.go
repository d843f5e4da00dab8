package stream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// groupMetrics are the group's Prometheus collectors; a nil *groupMetrics
// records nothing.
type groupMetrics struct {
	lag          *prometheus.GaugeVec
	oldest       *prometheus.GaugeVec
	duration     *prometheus.HistogramVec
	redeliveries *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	discarded    *prometheus.CounterVec
	batchSize    *prometheus.HistogramVec
	waitingParts *prometheus.GaugeVec
	infraRetries *prometheus.CounterVec
	reconfirms   *prometheus.CounterVec
	pinnedParts  *prometheus.GaugeVec
}

func newGroupMetrics(reg prometheus.Registerer) (*groupMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &groupMetrics{
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stream_consumer_lag_messages",
			Help: "Messages of the partition the group has not finished (pending plus unacknowledged), sampled.",
		}, []string{"stream", "group", "partition"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stream_consumer_oldest_unacked_age_seconds",
			Help: "Age of the oldest message of the partition the group has not finished (0 when caught up), sampled.",
		}, []string{"stream", "group", "partition"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stream_handler_duration_seconds",
			Help:    "Handler duration per delivery, by outcome (ack, retry, dead_letter, handed_back, infrastructure_retry).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9), // 1ms .. 65s
		}, []string{"stream", "group", "outcome"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stream_redeliveries_total",
			Help: "Deliveries of a message that had been delivered to the group before (retries, ack-wait expiries, hand-backs).",
		}, []string{"stream", "group"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stream_dead_lettered_total",
			Help: "Messages moved to the dead-letter stream, by class (permanent, exhausted).",
		}, []string{"stream", "group", "class"}),
		discarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stream_discarded_again_total",
			Help: "Messages that failed again after an operator had discarded or redriven their dead letter (a replay re-read them): acknowledged, not dead-lettered twice.",
		}, []string{"stream", "group"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stream_handler_batch_size_messages",
			Help:    "Messages per call of a batch group's handler (1 when a failed batch is handled one message at a time).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9), // 1 .. 256
		}, []string{"stream", "group"}),
		waitingParts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stream_partitions_waiting",
			Help: "Partitions whose head message failed with an infrastructure error and that wait for the dependency (retrying in-process, no delivery budget spent).",
		}, []string{"stream", "group"}),
		infraRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stream_infrastructure_retries_total",
			Help: "Handler calls that failed with an infrastructure error and are retried in-process after a backoff.",
		}, []string{"stream", "group"}),
		reconfirms: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stream_ack_reconfirms_total",
			Help: "Acks sent again because the broker did not confirm them (the consumer's leader died or moved), by outcome (confirmed, gave_up: redelivered after AckWait).",
		}, []string{"stream", "group", "outcome"}),
		pinnedParts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stream_partitions_pinned",
			Help: "Partitions of a batch group this instance holds (the broker pins each partition to one instance; ADR 0045 spreads them).",
		}, []string{"stream", "group"}),
	}
	if err := m.register(reg); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers m's collectors with reg, or takes over the ones a
// group of the same process registered first.
func (m *groupMetrics) register(reg prometheus.Registerer) error {
	var err error
	if m.lag, err = register(reg, m.lag); err != nil {
		return err
	}
	if m.oldest, err = register(reg, m.oldest); err != nil {
		return err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return err
	}
	if m.redeliveries, err = register(reg, m.redeliveries); err != nil {
		return err
	}
	if m.deadLettered, err = register(reg, m.deadLettered); err != nil {
		return err
	}
	if m.discarded, err = register(reg, m.discarded); err != nil {
		return err
	}
	if m.batchSize, err = register(reg, m.batchSize); err != nil {
		return err
	}
	if m.waitingParts, err = register(reg, m.waitingParts); err != nil {
		return err
	}
	if m.infraRetries, err = register(reg, m.infraRetries); err != nil {
		return err
	}
	if m.reconfirms, err = register(reg, m.reconfirms); err != nil {
		return err
	}
	if m.pinnedParts, err = register(reg, m.pinnedParts); err != nil {
		return err
	}
	return nil
}

// register registers c, or returns the collector already registered under
// the same name, so that several groups of one process share a registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("stream metrics: %w", err)
	}
	return c, nil
}

// zero exports the group's counters at zero from the start, so dashboards
// and alerts see a series (and rate() works) before the first redelivery
// or dead letter.
func (m *groupMetrics) zero(cfg GroupConfig) {
	if m == nil {
		return
	}
	m.redeliveries.WithLabelValues(cfg.Stream, cfg.Name)
	m.waitingParts.WithLabelValues(cfg.Stream, cfg.Name)
	m.infraRetries.WithLabelValues(cfg.Stream, cfg.Name)
	for _, class := range []string{classPermanent, classExhausted} {
		m.deadLettered.WithLabelValues(cfg.Stream, cfg.Name, class)
	}
	for _, outcome := range []string{outcomeConfirmed, outcomeGaveUp} {
		m.reconfirms.WithLabelValues(cfg.Stream, cfg.Name, outcome)
	}
}

func (m *groupMetrics) observe(cfg GroupConfig, outcome string, d time.Duration) {
	if m != nil {
		m.duration.WithLabelValues(cfg.Stream, cfg.Name, outcome).Observe(d.Seconds())
	}
}

func (m *groupMetrics) batch(cfg GroupConfig, n int) {
	if m != nil {
		m.batchSize.WithLabelValues(cfg.Stream, cfg.Name).Observe(float64(n))
	}
}

func (m *groupMetrics) redelivered(cfg GroupConfig) {
	if m != nil {
		m.redeliveries.WithLabelValues(cfg.Stream, cfg.Name).Inc()
	}
}

// waiting adds delta to the partitions waiting on a dependency. Instances
// of a group in one process share the series, so it moves by deltas.
func (m *groupMetrics) waiting(cfg GroupConfig, delta float64) {
	if m != nil {
		m.waitingParts.WithLabelValues(cfg.Stream, cfg.Name).Add(delta)
	}
}

func (m *groupMetrics) infraRetry(cfg GroupConfig) {
	if m != nil {
		m.infraRetries.WithLabelValues(cfg.Stream, cfg.Name).Inc()
	}
}

func (m *groupMetrics) reconfirmed(cfg GroupConfig, outcome string) {
	if m != nil {
		m.reconfirms.WithLabelValues(cfg.Stream, cfg.Name, outcome).Inc()
	}
}

func (m *groupMetrics) deadLetter(cfg GroupConfig, class string) {
	if m != nil {
		m.deadLettered.WithLabelValues(cfg.Stream, cfg.Name, class).Inc()
	}
}

func (m *groupMetrics) discardedAgain(cfg GroupConfig) {
	if m != nil {
		m.discarded.WithLabelValues(cfg.Stream, cfg.Name).Inc()
	}
}

// PartitionLag is how far a group is behind on one partition.
type PartitionLag struct {
	Partition int
	// Messages not finished: not yet delivered, or delivered and not
	// acknowledged.
	Messages uint64
	// OldestUnacked is the age of the oldest message not finished; 0 when
	// the group is caught up.
	OldestUnacked time.Duration
}

// Lag reads the group's position on every partition from the broker (one
// consumer info and at most one message read per partition). The
// group's consumers must exist (Run creates them).
func (g *Group) Lag(ctx context.Context) ([]PartitionLag, error) {
	return GroupLag(ctx, g.js, g.cfg.Stream, g.cfg.Name, g.cfg.Now)
}

// GroupLag is Group.Lag for any group of streamName, read from outside
// the group (another service watching a consumer it depends on, e.g. to
// shed load while that consumer is behind). now defaults to time.Now. A
// partition whose consumer does not exist yet fails with an error
// matching jetstream.ErrConsumerNotFound.
func GroupLag(ctx context.Context, js jetstream.JetStream, streamName, group string, now func() time.Time) ([]PartitionLag, error) {
	if now == nil {
		now = time.Now
	}
	n, err := StreamPartitions(ctx, js, streamName)
	if err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, streamName)
	if err != nil {
		return nil, fmt.Errorf("group %s: stream %s: %w", group, streamName, err)
	}
	lags := make([]PartitionLag, 0, n)
	for p := range n {
		c, err := s.Consumer(ctx, ConsumerName(group, p))
		if err != nil {
			return nil, fmt.Errorf("group %s: consumer %s: %w", group, ConsumerName(group, p), err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("group %s: consumer %s info: %w", group, ConsumerName(group, p), err)
		}
		l := PartitionLag{Partition: p, Messages: info.NumPending + uint64(info.NumAckPending)}
		if l.Messages > 0 {
			// The first message of the partition after the ack floor is the
			// oldest one not finished.
			m, err := s.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(Subject(streamName, p)))
			switch {
			case errors.Is(err, jetstream.ErrMsgNotFound):
			case err != nil:
				return nil, fmt.Errorf("group %s: oldest message of partition %d: %w", group, p, err)
			default:
				l.OldestUnacked = max(now().Sub(m.Time), 0)
			}
		}
		lags = append(lags, l)
	}
	return lags, nil
}

func (g *Group) sampleLag(ctx context.Context) {
	t := time.NewTicker(g.cfg.LagInterval)
	defer t.Stop()
	for {
		lags, err := g.Lag(ctx)
		if err != nil && ctx.Err() == nil {
			g.log.WarnContext(ctx, "sample consumer lag", "error", err)
		}
		for _, l := range lags {
			p := strconv.Itoa(l.Partition)
			g.metrics.lag.WithLabelValues(g.cfg.Stream, g.cfg.Name, p).Set(float64(l.Messages))
			g.metrics.oldest.WithLabelValues(g.cfg.Stream, g.cfg.Name, p).Set(l.OldestUnacked.Seconds())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pinned sets how many partitions of the group this instance holds.
func (m *groupMetrics) pinned(cfg GroupConfig, n int64) {
	if m != nil {
		m.pinnedParts.WithLabelValues(cfg.Stream, cfg.Name).Set(float64(n))
	}
}
