package kafkastream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// Metrics: a parallel set to pkg/stream's, named stream_kafka_* instead
// of stream_* and with the same labels ("stream" holds the topic), so that
// a dashboard shows both engines with one regular expression on the name
// (stream_(kafka_)?consumer_lag_messages) and a process may run both.
//
//	stream_kafka_consumer_lag_messages{stream,group,partition}  end offset minus committed offset, sampled every LagInterval
//	stream_kafka_consumer_oldest_unacked_age_seconds{stream,group,partition}  age of the oldest record not committed (0 when caught up)
//	stream_kafka_handler_duration_seconds{stream,group,outcome} ack, retry, dead_letter, handed_back, infrastructure_retry
//	stream_kafka_redeliveries_total{stream,group}               in-process retries of a failed record
//	stream_kafka_dead_lettered_total{stream,group,class}        permanent, exhausted
//	stream_kafka_partitions_waiting{stream,group}               partitions waiting on a dependency (per instance: sum)
//	stream_kafka_infrastructure_retries_total{stream,group}
//	stream_kafka_handler_batch_size_messages{stream,group}      records per call of a batch group's handler
//
// Every instance of a group reports the same lag: aggregate with max.
type groupMetrics struct {
	lag          *prometheus.GaugeVec
	oldest       *prometheus.GaugeVec
	duration     *prometheus.HistogramVec
	redeliveries *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	waitingParts *prometheus.GaugeVec
	infraRetries *prometheus.CounterVec
	batchSize    *prometheus.HistogramVec
}

func newGroupMetrics(reg prometheus.Registerer) (*groupMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &groupMetrics{
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "stream_kafka_consumer_lag_messages",
			Help: "Records of the partition after the group's committed offset (Kafka engine), sampled."}, []string{"stream", "group", "partition"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "stream_kafka_consumer_oldest_unacked_age_seconds",
			Help: "Age of the partition's oldest record after the group's committed offset (Kafka engine; 0 when caught up), sampled."}, []string{"stream", "group", "partition"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stream_kafka_handler_duration_seconds",
			Help:    "Handler duration per call (Kafka engine), by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}, []string{"stream", "group", "outcome"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stream_kafka_redeliveries_total",
			Help: "In-process retries of a record whose handler failed (Kafka engine)."}, []string{"stream", "group"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stream_kafka_dead_lettered_total",
			Help: "Records copied to the dead-letter topic (Kafka engine), by class."}, []string{"stream", "group", "class"}),
		waitingParts: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "stream_kafka_partitions_waiting",
			Help: "Partitions waiting on a dependency (Kafka engine)."}, []string{"stream", "group"}),
		infraRetries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stream_kafka_infrastructure_retries_total",
			Help: "Handler calls that failed with an infrastructure error (Kafka engine)."}, []string{"stream", "group"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stream_kafka_handler_batch_size_messages",
			Help:    "Records per call of a batch group's handler (Kafka engine; 1 when a failed batch is handled one record at a time).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}}, []string{"stream", "group"}),
	}
	var err error
	if m.lag, err = register(reg, m.lag); err != nil {
		return nil, err
	}
	if m.oldest, err = register(reg, m.oldest); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.redeliveries, err = register(reg, m.redeliveries); err != nil {
		return nil, err
	}
	if m.deadLettered, err = register(reg, m.deadLettered); err != nil {
		return nil, err
	}
	if m.waitingParts, err = register(reg, m.waitingParts); err != nil {
		return nil, err
	}
	if m.infraRetries, err = register(reg, m.infraRetries); err != nil {
		return nil, err
	}
	if m.batchSize, err = register(reg, m.batchSize); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name, so that several groups of one process share a registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("kafka stream metrics: %w", err)
	}
	return c, nil
}

func (m *groupMetrics) zero(cfg GroupConfig) {
	if m == nil {
		return
	}
	m.redeliveries.WithLabelValues(cfg.Topic, cfg.Name)
	m.waitingParts.WithLabelValues(cfg.Topic, cfg.Name)
	m.infraRetries.WithLabelValues(cfg.Topic, cfg.Name)
	for _, class := range []string{classPermanent, classExhausted} {
		m.deadLettered.WithLabelValues(cfg.Topic, cfg.Name, class)
	}
}

func (m *groupMetrics) observe(cfg GroupConfig, outcome string, d time.Duration) {
	if m != nil {
		m.duration.WithLabelValues(cfg.Topic, cfg.Name, outcome).Observe(d.Seconds())
	}
}

func (m *groupMetrics) batch(cfg GroupConfig, n int) {
	if m != nil {
		m.batchSize.WithLabelValues(cfg.Topic, cfg.Name).Observe(float64(n))
	}
}

func (m *groupMetrics) redelivered(cfg GroupConfig) {
	if m != nil {
		m.redeliveries.WithLabelValues(cfg.Topic, cfg.Name).Inc()
	}
}

func (m *groupMetrics) deadLetter(cfg GroupConfig, class string) {
	if m != nil {
		m.deadLettered.WithLabelValues(cfg.Topic, cfg.Name, class).Inc()
	}
}

func (m *groupMetrics) waiting(cfg GroupConfig, delta float64) {
	if m != nil {
		m.waitingParts.WithLabelValues(cfg.Topic, cfg.Name).Add(delta)
	}
}

func (m *groupMetrics) infraRetry(cfg GroupConfig) {
	if m != nil {
		m.infraRetries.WithLabelValues(cfg.Topic, cfg.Name).Inc()
	}
}

// Lag returns, per partition of topic, how many records group has not
// committed yet: the end offset minus the committed offset, or minus the
// log start when the group has committed nothing there. adm is any client
// of the cluster.
func Lag(ctx context.Context, adm *kadm.Client, topic, group string) (map[int]int64, error) {
	pos, err := positions(ctx, adm, topic, group)
	if err != nil {
		return nil, err
	}
	lags := make(map[int]int64, len(pos))
	for p, r := range pos {
		lags[p] = r.end - r.from
	}
	return lags, nil
}

// position is a group's place in one partition: the first offset not
// committed (from) and the end of the log (end).
type position struct{ from, end int64 }

func positions(ctx context.Context, adm *kadm.Client, topic, group string) (map[int]position, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("lag of %s on %s: end offsets: %w", group, topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("lag of %s on %s: start offsets: %w", group, topic, err)
	}
	committed, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err != nil {
		return nil, fmt.Errorf("lag of %s on %s: committed offsets: %w", group, topic, err)
	}
	pos := map[int]position{}
	for _, end := range ends[topic] {
		if end.Err != nil {
			return nil, fmt.Errorf("lag of %s on %s: partition %d: %w", group, topic, end.Partition, end.Err)
		}
		from := int64(0)
		if s, ok := starts.Lookup(topic, end.Partition); ok && s.Err == nil {
			from = s.Offset
		}
		if c, ok := committed.Lookup(topic, end.Partition); ok && c.Err == nil && c.At >= 0 {
			from = max(from, c.At)
		}
		pos[int(end.Partition)] = position{from: min(from, end.Offset), end: end.Offset}
	}
	return pos, nil
}

// GroupLag is stream.GroupLag on Kafka: per partition of topic (in
// partition order), the records group has not committed and the age of the
// oldest of them (its timestamp: the producer's time unless the topic uses
// LogAppendTime), read with cl, any client of the cluster. The ages cost
// one fetch of one record per partition that is behind, from a short-lived
// client of cl's seed brokers (plain: cl's TLS or SASL options are not
// carried over, so a secured cluster reports counts without ages); a partition whose record does not arrive within 2 seconds
// reports its count with age 0. now defaults to time.Now. Committed
// offsets trail the handled records by up to the group's CommitInterval,
// so a caught-up group may show a little lag.
func GroupLag(ctx context.Context, cl *kgo.Client, topic, group string, now func() time.Time) ([]stream.PartitionLag, error) {
	if now == nil {
		now = time.Now
	}
	pos, err := positions(ctx, kadm.NewClient(cl), topic, group)
	if err != nil {
		return nil, err
	}
	lags := make([]stream.PartitionLag, len(pos))
	behind := map[int32]kgo.Offset{}
	for p, r := range pos {
		if p < 0 || p >= len(lags) {
			return nil, fmt.Errorf("lag of %s on %s: partition %d of %d", group, topic, p, len(pos))
		}
		lags[p] = stream.PartitionLag{Partition: p, Messages: uint64(r.end - r.from)}
		if r.end > r.from {
			behind[int32(p)] = kgo.NewOffset().At(r.from)
		}
	}
	if len(behind) == 0 {
		return lags, nil
	}
	oldest, err := firstRecordTimes(ctx, cl, topic, behind)
	if err != nil {
		return nil, fmt.Errorf("lag of %s on %s: oldest records: %w", group, topic, err)
	}
	for p, ts := range oldest {
		lags[p].OldestUnacked = max(now().Sub(ts), 0)
	}
	return lags, nil
}

// firstRecordTimes fetches the record at each partition's offset and
// returns its timestamp, waiting at most 2 seconds in all.
func firstRecordTimes(ctx context.Context, cl *kgo.Client, topic string, at map[int32]kgo.Offset) (map[int]time.Time, error) {
	seeds := cl.OptValue(kgo.SeedBrokers).([]string)
	reader, err := kgo.NewClient(kgo.SeedBrokers(seeds...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: at}),
		kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer reader.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out := map[int]time.Time{}
	for len(out) < len(at) && ctx.Err() == nil {
		fs := reader.PollRecords(ctx, len(at))
		fs.EachRecord(func(r *kgo.Record) {
			if _, seen := out[int(r.Partition)]; !seen {
				out[int(r.Partition)] = r.Timestamp
			}
		})
	}
	return out, nil
}

func (g *Group) sampleLag(ctx context.Context, cl *kgo.Client) {
	t := time.NewTicker(g.cfg.LagInterval)
	defer t.Stop()
	for {
		lags, err := GroupLag(ctx, cl, g.cfg.Topic, g.cfg.Name, g.cfg.Now)
		if err != nil && ctx.Err() == nil {
			g.log.WarnContext(ctx, "sample consumer lag", "error", err)
		}
		for _, l := range lags {
			p := strconv.Itoa(l.Partition)
			g.metrics.lag.WithLabelValues(g.cfg.Topic, g.cfg.Name, p).Set(float64(l.Messages))
			g.metrics.oldest.WithLabelValues(g.cfg.Topic, g.cfg.Name, p).Set(l.OldestUnacked.Seconds())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
