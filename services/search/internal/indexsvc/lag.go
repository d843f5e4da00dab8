package indexsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/search/internal/indexpg"
)

// Lag is how far a live projection's consumer group is behind its stream.
type Lag struct {
	// Seconds is the age of the oldest event not finished (the largest
	// over the partitions); 0 when caught up.
	Seconds float64
	// Messages counts the events not finished, over all partitions.
	Messages uint64
	// SampledAt is when the broker was asked.
	SampledAt time.Time
}

// LagConfig configures a LagSampler. The zero value of every field picks
// the default.
type LagConfig struct {
	// Interval between samples. Default 2s. A sample older than three
	// intervals is reported as unknown.
	Interval time.Duration
	// Registerer receives the gauges; nil: none.
	Registerer prometheus.Registerer
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// LagSampler reads the live groups' lag from the broker and the
// projections' positions from PostgreSQL every interval, keeps the last
// lag for the API, and exports the gauges
// search_projection_lag_seconds{stream},
// search_projection_lag_messages{stream} and
// search_projection_freshness_age_seconds{stream} (the age of the newest
// event the projection has finished: it grows while the stream is idle,
// read it together with the lag). Per-partition lag is exported by the
// consumer groups themselves (stream_consumer_lag_messages).
type LagSampler struct {
	pool    *pgxpool.Pool
	group   string
	sources []Source
	lagOf   LagSource
	cfg     LagConfig
	log     *slog.Logger

	mu   sync.RWMutex
	last map[string]Lag

	lagSeconds, lagMessages, age *prometheus.GaugeVec
}

// LagSource reads a consumer group's lag on each partition of a stream
// from the broker: stream.GroupLag on NATS (JetStreamLag), the
// service.Broker's GroupLag on either engine.
type LagSource func(ctx context.Context, streamName, group string) ([]stream.PartitionLag, error)

// JetStreamLag is the LagSource of a JetStream context.
func JetStreamLag(js jetstream.JetStream) LagSource {
	return func(ctx context.Context, streamName, group string) ([]stream.PartitionLag, error) {
		return stream.GroupLag(ctx, js, streamName, group, nil)
	}
}

// NewLagSampler returns a sampler of group's lag on each source's stream,
// read through lagOf. It only reads: the group's consumers are created by
// the consumer role (until then, the lag is unknown).
func NewLagSampler(lagOf LagSource, pool *pgxpool.Pool, group string, sources []Source, cfg LagConfig, log *slog.Logger) (*LagSampler, error) {
	if lagOf == nil {
		return nil, errors.New("search lag sampler: no lag source")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &LagSampler{pool: pool, group: group, sources: sources, cfg: cfg, log: log, last: map[string]Lag{}, lagOf: lagOf,
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "search_projection_lag_seconds",
			Help: "Age of the oldest event of the stream that search's live projection has not finished (0 when caught up), sampled from the broker.",
		}, []string{"stream"}),
		lagMessages: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "search_projection_lag_messages",
			Help: "Events of the stream that search's live projection has not finished, over all partitions, sampled from the broker.",
		}, []string{"stream"}),
		age: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "search_projection_freshness_age_seconds",
			Help: "Age of the newest event search's live projection has finished (since the broker stored it); grows while the stream is idle.",
		}, []string{"stream"}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.lagSeconds, s.lagMessages, s.age} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("search lag metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Run samples every interval until ctx ends; failures are logged and
// retried at the next tick.
func (s *LagSampler) Run(ctx context.Context) error {
	if err := s.Sample(ctx); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "sample projection lag", "err", err)
	}
	return service.Every(ctx, s.cfg.Interval, s.Sample, s.log)
}

// Sample reads every source's lag and freshness once.
func (s *LagSampler) Sample(ctx context.Context) error {
	var errs []error
	for _, src := range s.sources {
		now := s.cfg.Now()
		if _, event, err := indexpg.Freshness(ctx, s.pool, src.Projection); err != nil {
			errs = append(errs, err)
		} else if event != nil {
			s.age.WithLabelValues(src.Stream).Set(max(now.Sub(*event), 0).Seconds())
		}
		parts, err := s.lagOf(ctx, src.Stream, s.group)
		if err != nil {
			errs = append(errs, fmt.Errorf("lag of group %s on %s: %w", s.group, src.Stream, err))
			continue
		}
		var lag Lag
		lag.SampledAt = now
		for _, p := range parts {
			lag.Messages += p.Messages
			lag.Seconds = max(lag.Seconds, p.OldestUnacked.Seconds())
		}
		s.mu.Lock()
		s.last[src.Stream] = lag
		s.mu.Unlock()
		s.lagSeconds.WithLabelValues(src.Stream).Set(lag.Seconds)
		s.lagMessages.WithLabelValues(src.Stream).Set(float64(lag.Messages))
	}
	return errors.Join(errs...)
}

// Lag returns the last lag sampled for stream, if it is recent (at most
// three intervals old).
func (s *LagSampler) Lag(streamName string) (Lag, bool) {
	s.mu.RLock()
	lag, ok := s.last[streamName]
	s.mu.RUnlock()
	if !ok || s.cfg.Now().Sub(lag.SampledAt) > 3*s.cfg.Interval {
		return Lag{}, false
	}
	return lag, true
}
