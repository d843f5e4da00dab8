package kafkastream

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/stream"
)

// GroupConfig describes a consumer group. The zero value of every field but
// Topic and Name picks the default. The fields mean what
// stream.GroupConfig's of the same name mean; AckWait and FetchWait have
// no counterpart (see the package doc).
type GroupConfig struct {
	// Topic to consume, created with EnsureTopic (with its "<Topic>_DLQ").
	// Required.
	Topic string
	// Name of the group (the Kafka group.id): the consuming service.
	// Required.
	Name string
	// Partitions of the topic. Default: read from the topic; a value that
	// differs from the topic's is refused (stream.ErrPartitionsChanged).
	Partitions int
	// MaxBatch is how many ready records of one partition a batch group
	// (NewBatchGroup) hands its handler at once: what the partition's
	// worker has queued, never a wait to fill. Default 1; at most
	// stream.MaxBatchLimit. NewGroup refuses a MaxBatch above 1.
	MaxBatch int
	// HandlerTimeout bounds one handler call through its ctx. Default 30s.
	HandlerTimeout time.Duration
	// MaxDeliver is the retry budget: after this many handler calls of one
	// record that ended in an error, the record is dead-lettered as
	// "exhausted". Default 5. Counted in the process: a record that comes
	// back after a crash or a rebalance starts again at 1.
	MaxDeliver int
	// Backoff spaces the retries of a failing record. The zero Policy uses
	// pkg/backoff's defaults.
	Backoff backoff.Policy
	// Infrastructure reports whether a handler error is a dependency's
	// failure: the partition then waits and calls again after
	// InfrastructureBackoff without spending the budget. Default
	// stream.IsInfrastructure.
	Infrastructure func(error) bool
	// InfrastructureBackoff spaces the calls of a partition waiting on a
	// dependency. The zero Policy uses pkg/backoff's defaults.
	InfrastructureBackoff backoff.Policy
	// Deliver is where a group without committed offsets starts: DeliverAll
	// (earliest, the default), DeliverNew (latest), DeliverByStartSequence
	// (StartOffset, in every partition) or DeliverByStartTime (the first
	// record with a timestamp at or after StartTime, in every partition).
	// A group with committed offsets always continues from them.
	Deliver stream.DeliverPolicy
	// StartOffset for DeliverByStartSequence: a Kafka offset, counted per
	// partition from 0 (a JetStream sequence counts the whole stream from
	// 1). An offset below a partition's log start starts there.
	StartOffset int64
	// StartTime for DeliverByStartTime.
	StartTime time.Time
	// SessionTimeout is how long the coordinator waits for a silent member
	// before it gives the member's partitions to others (AckWait's role on
	// NATS). Default 10s; the broker bounds it
	// (group.min.session.timeout.ms, 6s by default).
	SessionTimeout time.Duration
	// RebalanceTimeout bounds a rebalance, including the time a member
	// takes to finish the in-flight records of its revoked partitions.
	// Default 60s; it must exceed HandlerTimeout.
	RebalanceTimeout time.Duration
	// CommitInterval is how often the offsets of handled records are
	// committed (a revoke and a stop commit at once). Default 1s. A
	// member that dies hands the records it handled since its last commit
	// to the next owner again: at most CommitInterval of work is handled
	// twice (the inbox drops it).
	CommitInterval time.Duration
	// Extract, if set, returns ctx with the trace context found in a
	// record's headers; the handler gets that ctx.
	Extract func(ctx context.Context, headers map[string]string) context.Context
	// Tracer, if set, starts a consumer span "process <topic>" around each
	// handler call.
	Tracer trace.Tracer
	// Registerer receives the group's metrics (metrics.go); nil: none.
	Registerer prometheus.Registerer
	// LagInterval is how often lag is sampled for the metrics. Default 5s.
	LagInterval time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// ClientOpts are added to the consumer's client after this package's
	// own (TLS, SASL, a logger). Options that change how the group
	// commits, balances or starts are overridden.
	ClientOpts []kgo.Opt
}

func (c GroupConfig) withDefaults() GroupConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HandlerTimeout, 30*time.Second)
	def(&c.SessionTimeout, 10*time.Second)
	def(&c.RebalanceTimeout, 60*time.Second)
	def(&c.LagInterval, 5*time.Second)
	def(&c.CommitInterval, time.Second)
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 5
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 1
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Infrastructure == nil {
		c.Infrastructure = stream.IsInfrastructure
	}
	return c
}

func (c GroupConfig) validate() error {
	if err := validName("topic", c.Topic); err != nil {
		return err
	}
	if err := validName("group", c.Name); err != nil {
		return err
	}
	var msg string
	switch {
	case c.Partitions < 0 || c.Partitions > stream.MaxPartitions:
		msg = fmt.Sprintf("partitions %d outside 1..%d", c.Partitions, stream.MaxPartitions)
	case c.HandlerTimeout < 0 || c.SessionTimeout < 0 || c.LagInterval < 0 || c.CommitInterval < 0:
		msg = "negative duration"
	case c.RebalanceTimeout <= c.HandlerTimeout:
		msg = fmt.Sprintf("RebalanceTimeout %s must exceed HandlerTimeout %s (a revoke waits for the handler)", c.RebalanceTimeout, c.HandlerTimeout)
	case c.MaxBatch < 1 || c.MaxBatch > stream.MaxBatchLimit:
		msg = fmt.Sprintf("MaxBatch %d outside 1..%d", c.MaxBatch, stream.MaxBatchLimit)
	case c.MaxDeliver < 1:
		msg = fmt.Sprintf("MaxDeliver %d below 1", c.MaxDeliver)
	case c.Deliver < stream.DeliverAll || c.Deliver > stream.DeliverByStartTime:
		msg = fmt.Sprintf("unknown deliver policy %d", c.Deliver)
	case c.Deliver == stream.DeliverByStartSequence && c.StartOffset < 0:
		msg = fmt.Sprintf("negative StartOffset %d", c.StartOffset)
	case c.Deliver == stream.DeliverByStartTime && c.StartTime.IsZero():
		msg = "DeliverByStartTime needs StartTime"
	default:
		return nil
	}
	return fmt.Errorf("%w: group %s: %s", stream.ErrInvalid, c.Name, msg)
}

// startOffset is where a partition without a committed offset starts.
func (c GroupConfig) startOffset() kgo.Offset {
	switch c.Deliver {
	case stream.DeliverNew:
		return kgo.NewOffset().AtEnd()
	case stream.DeliverByStartSequence:
		return kgo.NewOffset().At(c.StartOffset)
	case stream.DeliverByStartTime:
		return kgo.NewOffset().AfterMilli(c.StartTime.UnixMilli())
	default:
		return kgo.NewOffset().AtStart()
	}
}

// Group consumes a topic as one consumer group, with pkg/stream's Handler
// and Delivery. Create one per process and service; run as many processes
// as you like: the group coordinator shares the partitions among them.
type Group struct {
	seeds   []string
	cfg     GroupConfig
	handler stream.Handler
	batch   stream.BatchHandler // NewBatchGroup's; nil for NewGroup
	log     *slog.Logger
	metrics *groupMetrics
	running atomic.Bool
}

// NewGroup validates cfg and returns a group of the cluster at seeds;
// nothing is contacted until Run. A nil logger discards logs.
func NewGroup(seeds []string, cfg GroupConfig, handler stream.Handler, logger *slog.Logger) (*Group, error) {
	if cfg.MaxBatch > 1 {
		return nil, fmt.Errorf("%w: group %s: NewGroup handles one record at a time; MaxBatch %d needs NewBatchGroup", stream.ErrInvalid, cfg.Name, cfg.MaxBatch)
	}
	return newGroup(seeds, cfg, handler, logger)
}

func newGroup(seeds []string, cfg GroupConfig, handler stream.Handler, logger *slog.Logger) (*Group, error) {
	if len(seeds) == 0 {
		return nil, fmt.Errorf("%w: group %s: no seed brokers", stream.ErrInvalid, cfg.Name)
	}
	if handler == nil {
		return nil, fmt.Errorf("%w: group %s: nil handler", stream.ErrInvalid, cfg.Name)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newGroupMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	m.zero(cfg)
	return &Group{seeds: seeds, cfg: cfg, handler: handler, metrics: m,
		log: logger.With("topic", cfg.Topic, "group", cfg.Name)}, nil
}

// Run joins the group and handles the records of the partitions assigned
// to this member until ctx ends. It returns nil after ctx ends, the
// in-flight records are settled or abandoned (at most HandlerTimeout
// later), their offsets are committed and the member has left the group
// (a static member, kgo.InstanceID in ClientOpts, does not leave: its
// partitions move after SessionTimeout); or an error if the set-up
// fails: the topic or its dead-letter topic is missing, or the partition
// count differs. A Group runs once at a time.
func (g *Group) Run(ctx context.Context) error {
	if !g.running.CompareAndSwap(false, true) {
		return fmt.Errorf("group %s: already running", g.cfg.Name)
	}
	defer g.running.Store(false)

	s := newSession(g)
	cl, err := kgo.NewClient(g.clientOpts(s)...)
	if err != nil {
		return fmt.Errorf("group %s: client: %w", g.cfg.Name, err)
	}
	s.cl = cl
	defer cl.CloseAllowingRebalance() // leaves the group; the revoke callback finds no workers
	adm := kadm.NewClient(cl)
	if err := g.checkTopics(ctx, adm); err != nil {
		if ctx.Err() != nil {
			return nil // stopped during set-up
		}
		return err
	}
	g.log.InfoContext(ctx, "consumer group running")
	var wg sync.WaitGroup
	if g.metrics != nil {
		wg.Go(func() { g.sampleLag(ctx, cl) })
	}
	s.poll(ctx)
	s.stopAll("group stopping")
	s.commitMarked()
	wg.Wait()
	g.log.InfoContext(context.WithoutCancel(ctx), "consumer group stopped")
	return nil
}

// clientOpts are the consumer client's options: commits of marked
// records only (a record is marked after its handler), the
// cooperative-sticky balancer, callbacks that start and stop the partition
// workers, and polls that block rebalances until their records are handed
// to the workers (so no record of a revoked partition is in transit).
func (g *Group) clientOpts(s *session) []kgo.Opt {
	opts := append(ClientOpts(g.seeds), g.cfg.ClientOpts...)
	return append(opts,
		kgo.ConsumerGroup(g.cfg.Name),
		kgo.ConsumeTopics(g.cfg.Topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(g.cfg.CommitInterval),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeStartOffset(g.cfg.startOffset()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(g.cfg.SessionTimeout),
		kgo.RebalanceTimeout(g.cfg.RebalanceTimeout),
		kgo.HeartbeatInterval(g.cfg.SessionTimeout/5),
		kgo.OnPartitionsAssigned(s.assigned),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.lost),
	)
}

func (g *Group) checkTopics(ctx context.Context, adm *kadm.Client) error {
	n, err := TopicPartitions(ctx, adm, g.cfg.Topic)
	if err != nil {
		return fmt.Errorf("group %s: %w", g.cfg.Name, err)
	}
	if g.cfg.Partitions != 0 && g.cfg.Partitions != n {
		return fmt.Errorf("%w: group %s configured for %d partitions, topic %s has %d",
			stream.ErrPartitionsChanged, g.cfg.Name, g.cfg.Partitions, g.cfg.Topic, n)
	}
	if _, err := TopicPartitions(ctx, adm, DLQTopic(g.cfg.Topic)); err != nil {
		return fmt.Errorf("group %s: dead-letter topic (EnsureTopic creates it): %w", g.cfg.Name, err)
	}
	return nil
}
