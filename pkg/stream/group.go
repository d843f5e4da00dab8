package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/backoff"
)

// DeliverPolicy says where a group that does not exist yet starts reading.
// It applies only when the group's consumers are created: an existing group
// always continues from its acknowledged position, like a Kafka consumer
// group's committed offset.
type DeliverPolicy int

const (
	// DeliverAll starts at the oldest retained message: a new projection or
	// a rebuild replays the whole stream. The default.
	DeliverAll DeliverPolicy = iota
	// DeliverNew starts with messages published after the group is created.
	DeliverNew
	// DeliverByStartSequence starts at GroupConfig.StartSequence.
	DeliverByStartSequence
	// DeliverByStartTime starts at the first message stored at or after
	// GroupConfig.StartTime.
	DeliverByStartTime
)

// Handler handles one delivery. Return nil when the message is done (it is
// acknowledged), Permanent(err) when no retry can help (it goes to the
// dead-letter stream), an infrastructure error (a dependency is down; see
// IsInfrastructure and Infrastructure) to have the partition wait and call
// again with the same delivery, without spending the budget, any other
// error to have it retried after a backoff, up to MaxDeliver deliveries.
// Wrap causes with %w, so that the group can tell them apart.
// ctx ends when the handler's time is up (GroupConfig.HandlerTimeout) or the
// group stops. A handler may be called again for a message it already
// handled (at-least-once delivery): make its effect idempotent.
type Handler func(ctx context.Context, d Delivery) error

// Delivery is one delivery of a message to a group.
type Delivery struct {
	// ID is the event ID (Shopfloor-Event-Id, or Nats-Msg-Id for messages
	// published by other code). It is the same in every delivery and after
	// a redrive: de-duplicate by it.
	ID string
	// Key is the message key (Shopfloor-Key); empty for messages published
	// without pkg/stream.
	Key string
	// Partition the message was read from.
	Partition int
	// Subject the message was stored under.
	Subject string
	// Sequence is the message's stream sequence.
	Sequence uint64
	// NumDelivered counts deliveries of this message to this group,
	// starting at 1. In a batch group it is the attempt number: it also
	// counts the group's in-process retries of the message. Retries after
	// an infrastructure error count in neither.
	NumDelivered int
	// Published is when the broker stored the message.
	Published time.Time
	// Headers of the message (first value of each).
	Headers map[string]string
	// Payload is the message body.
	Payload []byte
}

// GroupConfig describes a consumer group. The zero value of every field but
// Stream and Name picks the default.
type GroupConfig struct {
	// Stream to consume, created with EnsureStream. Required.
	Stream string
	// Name of the group: the consuming service, e.g. "payments". Letters,
	// digits, '_' and '-'. Required. Every instance of the service uses the
	// same name; the durable consumers are "<Name>-p<partition>".
	Name string
	// Partitions of the stream. Default: read from the stream; a value that
	// differs from the stream's is refused (ErrPartitionsChanged).
	Partitions int
	// AckWait is how long a delivered message may stay unacknowledged before
	// the broker gives it to another puller: how quickly the work of a dead
	// instance moves on. Default 30s. A live handler extends it with
	// progress heartbeats, so a slow handler is not delivered twice at once.
	AckWait time.Duration
	// HandlerTimeout bounds one handler call through its ctx. Default
	// AckWait.
	HandlerTimeout time.Duration
	// MaxDeliver is the retry budget: after this many deliveries that ended
	// in an error the message goes to the dead-letter stream as
	// "exhausted". Default 5. Deliveries that ended without a result (the
	// instance died, or a stopping instance handed the message back) count
	// too, so a message that crashes its consumer cannot block a partition
	// forever. A batch group counts its in-process retries as deliveries.
	// Infrastructure errors (see Infrastructure) never count: the
	// partition waits for the dependency instead.
	MaxDeliver int
	// Backoff spaces retries: a failed delivery n is retried after
	// Backoff.Delay(n). The zero Policy uses pkg/backoff's defaults (100ms,
	// doubling, at most 30s).
	Backoff backoff.Policy
	// Infrastructure reports whether a handler error is a failure of a
	// dependency (database, broker, network) rather than of the message.
	// Such a message is not naked into its budget: the group keeps it (with
	// progress heartbeats, so NumDelivered stays), and its partition waits
	// and calls the handler again after InfrastructureBackoff, as long as
	// it takes; a stopping group hands it back at once. Default
	// IsInfrastructure; to extend it, call IsInfrastructure from yours.
	// Permanent errors and calls that ran out of HandlerTimeout are never
	// asked about: give dependency calls their own, shorter timeouts (as
	// pkg/pgdb's connect and statement timeouts do) so that a dependency
	// that hangs shows as one.
	Infrastructure func(error) bool
	// InfrastructureBackoff spaces the calls of a partition waiting on a
	// dependency: the n-th consecutive infrastructure error is retried
	// after InfrastructureBackoff.Delay(n). The zero Policy uses
	// pkg/backoff's defaults (100ms, doubling, at most 30s, full jitter).
	InfrastructureBackoff backoff.Policy
	// Deliver is where a new group starts. Default DeliverAll.
	Deliver DeliverPolicy
	// StartSequence for DeliverByStartSequence.
	StartSequence uint64
	// StartTime for DeliverByStartTime.
	StartTime time.Time
	// FetchWait bounds one pull request. Run returns at most this long
	// after its ctx ends. Default 2s.
	FetchWait time.Duration
	// Extract, if set, returns ctx with the trace context found in a
	// message's headers (pkg/telemetry); the handler gets that ctx.
	Extract func(ctx context.Context, headers map[string]string) context.Context
	// Tracer, if set, starts a consumer span "process <stream>" around each
	// handler call (a child of the extracted trace context), so a trace
	// shows the hop through the stream; a handler error marks it. A batch
	// group's call with several messages gets a new trace linked to each
	// message's (package doc, "Batch consumption").
	Tracer trace.Tracer
	// Registerer receives the group's metrics; nil: no metrics.
	Registerer prometheus.Registerer
	// LagInterval is how often consumer lag is sampled for the metrics.
	// Default 5s.
	LagInterval time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// MaxBatch is how many messages of one partition a batch group
	// (NewBatchGroup) hands to its handler at once, and how many it may
	// hold unacknowledged (the partition consumer's MaxAckPending). Default
	// 1; at most MaxBatchLimit. A group made with NewGroup handles one
	// message at a time and refuses a MaxBatch above 1. See the package
	// doc, "Batch consumption".
	MaxBatch int
}

func (c GroupConfig) withDefaults() GroupConfig {
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = c.AckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 5
	}
	if c.FetchWait == 0 {
		c.FetchWait = 2 * time.Second
	}
	if c.LagInterval == 0 {
		c.LagInterval = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 1
	}
	if c.Infrastructure == nil {
		c.Infrastructure = IsInfrastructure
	}
	return c
}

func (c GroupConfig) validate() error {
	if err := validName("stream", c.Stream); err != nil {
		return err
	}
	if err := validName("group", c.Name); err != nil {
		return err
	}
	switch {
	case c.Partitions < 0 || c.Partitions > MaxPartitions:
		return invalidf("group %s: partitions %d outside 1..%d", c.Name, c.Partitions, MaxPartitions)
	case c.AckWait < time.Second:
		return invalidf("group %s: AckWait %s below 1s", c.Name, c.AckWait)
	case c.HandlerTimeout < 0:
		return invalidf("group %s: negative HandlerTimeout", c.Name)
	case c.MaxDeliver < 1:
		return invalidf("group %s: MaxDeliver %d below 1", c.Name, c.MaxDeliver)
	case c.FetchWait < 100*time.Millisecond:
		return invalidf("group %s: FetchWait %s below 100ms", c.Name, c.FetchWait)
	case c.LagInterval < 100*time.Millisecond:
		return invalidf("group %s: LagInterval %s below 100ms", c.Name, c.LagInterval)
	case c.Deliver < DeliverAll || c.Deliver > DeliverByStartTime:
		return invalidf("group %s: unknown deliver policy %d", c.Name, c.Deliver)
	case c.Deliver == DeliverByStartSequence && c.StartSequence == 0:
		return invalidf("group %s: DeliverByStartSequence needs StartSequence", c.Name)
	case c.Deliver == DeliverByStartTime && c.StartTime.IsZero():
		return invalidf("group %s: DeliverByStartTime needs StartTime", c.Name)
	case c.MaxBatch < 1 || c.MaxBatch > MaxBatchLimit:
		return invalidf("group %s: MaxBatch %d outside 1..%d", c.Name, c.MaxBatch, MaxBatchLimit)
	}
	return nil
}

// Group consumes a stream as one consumer group. Create one per process
// and service; run as many processes as you like.
type Group struct {
	js      jetstream.JetStream
	cfg     GroupConfig
	handler Handler      // NewGroup
	batch   BatchHandler // NewBatchGroup
	log     *slog.Logger
	metrics *groupMetrics
	running atomic.Bool
	// pins counts the partitions this instance holds the pin of (batch
	// groups); spreadLast is when it last handed one over (spread.go).
	pins       atomic.Int64
	spreadLast atomic.Int64
	partitions atomic.Int64 // of the running group's stream
}

// NewGroup validates cfg and returns a group; nothing is created on the
// broker until Run. A nil logger discards logs.
func NewGroup(js jetstream.JetStream, cfg GroupConfig, handler Handler, logger *slog.Logger) (*Group, error) {
	if js == nil {
		return nil, invalidf("group: nil JetStream")
	}
	if handler == nil {
		return nil, invalidf("group %s: nil handler", cfg.Name)
	}
	if cfg.MaxBatch > 1 {
		return nil, invalidf("group %s: NewGroup handles one message at a time; MaxBatch %d needs NewBatchGroup", cfg.Name, cfg.MaxBatch)
	}
	g, err := newGroup(js, cfg, logger)
	if err != nil {
		return nil, err
	}
	g.handler = handler
	return g, nil
}

// newGroup validates cfg and builds what both kinds of group share.
func newGroup(js jetstream.JetStream, cfg GroupConfig, logger *slog.Logger) (*Group, error) {
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
	return &Group{
		js: js, cfg: cfg, metrics: m,
		log: logger.With("stream", cfg.Stream, "group", cfg.Name),
	}, nil
}

// ConsumerName is the durable consumer of group for partition p.
func ConsumerName(group string, p int) string { return group + "-p" + strconv.Itoa(p) }

// Run creates or updates the group's durable consumers (one per partition),
// then handles messages from every partition concurrently until ctx ends.
// It returns nil after ctx ends and every fetched message is settled (at most
// FetchWait plus a settle timeout later), or an error if the set-up fails:
// the stream or its dead-letter stream is missing, or the partition count
// differs. A Group runs once at a time.
func (g *Group) Run(ctx context.Context) error {
	if !g.running.CompareAndSwap(false, true) {
		return fmt.Errorf("group %s: already running", g.cfg.Name)
	}
	defer g.running.Store(false)

	s, consumers, err := g.ensureConsumers(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped during set-up
		}
		return err
	}
	g.partitions.Store(int64(len(consumers)))
	g.log.InfoContext(ctx, "consumer group running", "partitions", len(consumers), "max_batch", g.cfg.MaxBatch)
	var wg sync.WaitGroup
	for p, c := range consumers {
		if g.batch != nil {
			wg.Go(func() { g.runBatchPartition(ctx, p, s, c) })
			continue
		}
		wg.Go(func() { g.runPartition(ctx, p, c) })
	}
	if g.metrics != nil {
		wg.Go(func() { g.sampleLag(ctx) })
	}
	wg.Wait()
	g.log.InfoContext(context.WithoutCancel(ctx), "consumer group stopped")
	return nil
}

func (g *Group) ensureConsumers(ctx context.Context) (jetstream.Stream, []jetstream.Consumer, error) {
	n, err := StreamPartitions(ctx, g.js, g.cfg.Stream)
	if err != nil {
		return nil, nil, fmt.Errorf("group %s: %w", g.cfg.Name, err)
	}
	if g.cfg.Partitions != 0 && g.cfg.Partitions != n {
		return nil, nil, fmt.Errorf("%w: group %s configured for %d partitions, stream %s has %d",
			ErrPartitionsChanged, g.cfg.Name, g.cfg.Partitions, g.cfg.Stream, n)
	}
	if _, err := g.js.Stream(ctx, DLQStream(g.cfg.Stream)); err != nil {
		return nil, nil, fmt.Errorf("group %s: dead-letter stream %s (EnsureStream creates it): %w", g.cfg.Name, DLQStream(g.cfg.Stream), err)
	}
	s, err := g.js.Stream(ctx, g.cfg.Stream)
	if err != nil {
		return nil, nil, fmt.Errorf("group %s: stream %s: %w", g.cfg.Name, g.cfg.Stream, err)
	}
	consumers := make([]jetstream.Consumer, n)
	for p := range n {
		if consumers[p], err = g.ensureConsumer(ctx, s, p); err != nil {
			return nil, nil, err
		}
	}
	return s, consumers, nil
}

func (g *Group) ensureConsumer(ctx context.Context, s jetstream.Stream, p int) (jetstream.Consumer, error) {
	name := ConsumerName(g.cfg.Name, p)
	cc := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   fmt.Sprintf("group %s, partition %d of %s (pkg/stream)", g.cfg.Name, p, g.cfg.Stream),
		FilterSubject: Subject(g.cfg.Stream, p),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       g.cfg.AckWait,
		// The retry budget is kept by the group, which dead-letters the
		// message; a broker-side limit would drop it silently instead.
		MaxDeliver:    -1,
		MaxAckPending: 1,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}
	if g.batch != nil {
		// A batch group holds up to MaxBatch messages of the partition at
		// once; the broker pins the partition to one puller at a time and
		// the gate in batch.go keeps the order across pin changes (ADR 0017).
		cc.MaxAckPending = g.cfg.MaxBatch
		cc.PriorityPolicy = jetstream.PriorityPolicyPinned
		cc.PriorityGroups = []string{batchPriorityGroup}
		cc.PinnedTTL = g.pinnedTTL()
	}
	switch g.cfg.Deliver {
	case DeliverAll:
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
	case DeliverNew:
		cc.DeliverPolicy = jetstream.DeliverNewPolicy
	case DeliverByStartSequence:
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, g.cfg.StartSequence
	case DeliverByStartTime:
		t := g.cfg.StartTime
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	existing, err := s.Consumer(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
	case err != nil:
		return nil, fmt.Errorf("group %s: consumer %s: %w", g.cfg.Name, name, err)
	default:
		// The start position applies to a new group only; an existing one
		// continues where it is (and the broker refuses to change it).
		old := existing.CachedInfo().Config
		if old.DeliverPolicy != cc.DeliverPolicy || old.OptStartSeq != cc.OptStartSeq {
			g.log.InfoContext(ctx, "group exists: its position is kept, the configured start applies to new groups only",
				"consumer", name, "deliver_policy", old.DeliverPolicy.String())
		}
		cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = old.DeliverPolicy, old.OptStartSeq, old.OptStartTime
	}
	c, err := s.CreateOrUpdateConsumer(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("group %s: create or update consumer %s: %w", g.cfg.Name, name, err)
	}
	return c, nil
}

// failure remembers when the message now failing in a partition first
// failed on this instance, for the dead-letter headers.
type failure struct {
	seq   uint64
	first time.Time
}

func (f *failure) firstFailure(seq uint64, now time.Time) time.Time {
	if f.seq != seq {
		f.seq, f.first = seq, now
	}
	return f.first
}

func (g *Group) runPartition(ctx context.Context, p int, c jetstream.Consumer) {
	var f failure
	errs := 0
	for ctx.Err() == nil {
		batch, err := c.Fetch(1, jetstream.FetchMaxWait(g.cfg.FetchWait))
		if err == nil {
			for msg := range batch.Messages() {
				g.handle(ctx, p, msg, &f)
			}
			err = batch.Error()
		}
		if err == nil {
			errs = 0
			continue
		}
		errs++
		g.log.WarnContext(ctx, "fetch failed; retrying", "partition", p, "attempt", errs, "error", err)
		if fetchRetry.Sleep(ctx, errs) != nil {
			return
		}
	}
}

// fetchRetry spaces pull requests after an error (broker down, consumer
// deleted), so a partition loop does not spin.
var fetchRetry = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// settleTimeout bounds acknowledging, handing back or dead-lettering one
// message, also when the group is stopping.
const settleTimeout = 5 * time.Second

func (g *Group) handle(ctx context.Context, p int, msg jetstream.Msg, f *failure) {
	meta, err := msg.Metadata()
	if err != nil {
		// Not a JetStream delivery: cannot happen with a pull consumer.
		g.log.ErrorContext(ctx, "delivery without metadata", "partition", p, "error", err)
		return
	}
	d := delivery(p, msg, meta)
	log := g.log.With("partition", p, "seq", d.Sequence, "event_id", d.ID, "delivery", d.NumDelivered)
	if d.NumDelivered > 1 {
		g.metrics.redelivered(g.cfg)
	}
	if ctx.Err() != nil {
		// Stopping: hand the message back now rather than after AckWait.
		g.nak(ctx, log, msg, 0)
		return
	}
	if d.NumDelivered > g.cfg.MaxDeliver {
		settle, cancel := settleContext(ctx)
		defer cancel()
		g.deadLetter(settle, log, msg, d, classExhausted, errNoResult, f.firstFailure(d.Sequence, g.cfg.Now()))
		return
	}

	// The message stays in progress while the handler runs and while the
	// partition waits on a dependency, so a slow handler or a long outage
	// does not make the broker deliver it again.
	stopHeartbeats := g.heartbeats(ctx, log, msg)
	defer stopHeartbeats()
	wait := infraWait{g: g}
	for {
		start := g.cfg.Now()
		err := g.call(ctx, d)
		elapsed := g.cfg.Now().Sub(start)
		if ctx.Err() == nil && g.infrastructure(err) {
			// A dependency failed, not the message: the partition waits for
			// it with the message in hand, so NumDelivered (the budget)
			// stays and nothing behind it overtakes it.
			g.metrics.observe(g.cfg, outcomeInfraFailed, elapsed)
			if wait.retry(ctx, log, err) {
				continue
			}
			stopHeartbeats()
			g.nak(ctx, log, msg, 0)
			wait.end(ctx, log, outcomeHandedBack)
			return
		}
		stopHeartbeats()
		outcome := g.settle(ctx, log, msg, d, f, err, start, elapsed)
		wait.end(ctx, log, outcome)
		return
	}
}

// settleContext bounds acknowledging, handing back or dead-lettering one
// message, also when the group is stopping.
func settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}

// settle acts on a handler call's result that is not an infrastructure
// error: ack, dead-letter, hand back or nak with backoff. It returns the
// outcome.
func (g *Group) settle(ctx context.Context, log *slog.Logger, msg jetstream.Msg, d Delivery, f *failure, err error, start time.Time, elapsed time.Duration) string {
	settle, cancel := settleContext(ctx)
	defer cancel()
	var outcome string
	switch {
	case err == nil:
		outcome = outcomeAck
		if err := msg.DoubleAck(settle); err != nil {
			// The partition's one slot stays taken until the broker has
			// the ack: send it again once another node leads.
			log.WarnContext(settle, "ack not confirmed; sending it again", "error", err)
			g.reconfirm(ctx, log, []jetstream.Msg{msg})
		}
	case IsPermanent(err):
		outcome = outcomeDeadLetter
		g.deadLetter(settle, log, msg, d, classPermanent, err, f.firstFailure(d.Sequence, start))
	case ctx.Err() != nil:
		// The group is stopping and the handler gave up: another
		// instance takes the message at once.
		outcome = outcomeHandedBack
		g.nak(settle, log, msg, 0)
	case d.NumDelivered >= g.cfg.MaxDeliver:
		outcome = outcomeDeadLetter
		g.deadLetter(settle, log, msg, d, classExhausted, err, f.firstFailure(d.Sequence, start))
	default:
		outcome = outcomeRetry
		f.firstFailure(d.Sequence, start)
		delay := g.cfg.Backoff.Delay(d.NumDelivered)
		log.InfoContext(settle, "handler failed; retrying", "retry_in", delay, "error", err)
		g.nak(settle, log, msg, delay)
	}
	g.metrics.observe(g.cfg, outcome, elapsed)
	return outcome
}

func (g *Group) nak(ctx context.Context, log *slog.Logger, msg jetstream.Msg, delay time.Duration) {
	var err error
	if delay > 0 {
		err = msg.NakWithDelay(delay)
	} else {
		err = msg.Nak()
	}
	if err != nil {
		log.WarnContext(ctx, "nak failed; the message will be delivered again after AckWait", "error", err)
	}
}

// heartbeats tells the broker every AckWait/3 that msg is in progress,
// until the returned function is called (any number of times).
func (g *Group) heartbeats(ctx context.Context, log *slog.Logger, msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(g.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					log.WarnContext(ctx, "progress heartbeat failed", "error", err)
				}
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// call runs the handler with a timeout and turns a panic into an error.
func (g *Group) call(ctx context.Context, d Delivery) (err error) {
	hctx, cancel := context.WithTimeout(ctx, g.cfg.HandlerTimeout)
	defer cancel()
	if g.cfg.Extract != nil {
		hctx = g.cfg.Extract(hctx, d.Headers)
	}
	if g.cfg.Tracer != nil {
		var span trace.Span
		hctx, span = g.cfg.Tracer.Start(hctx, "process "+g.cfg.Stream, trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", d.Subject),
				attribute.String("messaging.consumer.group.name", g.cfg.Name), attribute.String("messaging.message.id", d.ID)))
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return g.handlerResult(ctx, hctx, g.handler(hctx, d))
}

func delivery(p int, msg jetstream.Msg, meta *jetstream.MsgMetadata) Delivery {
	h := headerMap(msg.Headers())
	id := h[HeaderEventID]
	if id == "" {
		id = h[jetstream.MsgIDHeader]
	}
	return Delivery{
		ID:           id,
		Key:          h[HeaderKey],
		Partition:    p,
		Subject:      msg.Subject(),
		Sequence:     meta.Sequence.Stream,
		NumDelivered: int(meta.NumDelivered),
		Published:    meta.Timestamp,
		Headers:      h,
		Payload:      msg.Data(),
	}
}

func headerMap(h nats.Header) map[string]string {
	m := make(map[string]string, len(h))
	for k, vs := range h {
		if len(vs) > 0 {
			m[k] = vs[0]
		}
	}
	return m
}
