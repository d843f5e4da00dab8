package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/nats-io/nats.go/jetstream"
)

// BatchHandler handles deliveries of one partition, oldest first (stream
// order): at most GroupConfig.MaxBatch of them, whatever the partition had
// ready, never fewer than one. Return nil when all of them are done (they
// are acknowledged). When a call with several deliveries fails (any error,
// Permanent or not, or a panic), the group hands the same messages to the
// handler again one at a time to find the one that fails; a call with one
// delivery has the contract of Handler (nil, Permanent(err), or an error to
// retry after a backoff). Apply the batch in one transaction and claim its
// event IDs with inbox.ClaimBatch: a message may be handed over again after
// a failure, a crash or a stop.
//
// ctx ends when the handler's time is up (GroupConfig.HandlerTimeout, per
// call) or the group stops.
type BatchHandler func(ctx context.Context, ds []Delivery) error

// MaxBatchLimit is the largest GroupConfig.MaxBatch.
const MaxBatchLimit = 256

// batchPriorityGroup is the priority group every instance of a batch group
// pulls with: the broker pins each partition consumer to one of them.
const batchPriorityGroup = "shopfloor"

// headerPinID is the header in which the broker tells a puller its pin.
const headerPinID = "Nats-Pin-Id"

// batchLinger is how long collecting a batch waits for one more delivery
// of a pull request that is still open: deliveries of messages the
// partition already has arrive back to back, so a batch takes what is
// ready and never waits to fill up.
const batchLinger = time.Millisecond

// errPinLost reports that the broker pinned the partition to another
// instance.
var errPinLost = errors.New("partition pinned to another instance")

// errNoResult is the cause of an "exhausted" dead letter that no handler
// call produced.
var errNoResult = errors.New("delivery budget spent without a handler result (instance stopped or died while handling)")

// NewBatchGroup validates cfg and returns a group that hands its handler up
// to cfg.MaxBatch messages of a partition at once (see the package doc,
// "Batch consumption"); nothing is created on the broker until Run. A nil
// logger discards logs. Every instance of a group must use the same kind of
// group: stop them all to switch between NewGroup and NewBatchGroup.
func NewBatchGroup(js jetstream.JetStream, cfg GroupConfig, handler BatchHandler, logger *slog.Logger) (*Group, error) {
	if js == nil {
		return nil, invalidf("group: nil JetStream")
	}
	if handler == nil {
		return nil, invalidf("group %s: nil batch handler", cfg.Name)
	}
	g, err := newGroup(js, cfg, logger)
	if err != nil {
		return nil, err
	}
	g.batch = handler
	return g, nil
}

// pinnedTTL is how long the broker keeps a partition pinned to an instance
// that has stopped pulling: how long the partitions of a dead instance wait
// before another takes them (a stopping instance unpins at once). A live
// instance pulls at least every FetchWait while it has nothing to do.
func (g *Group) pinnedTTL() time.Duration { return max(g.cfg.AckWait, 2*g.cfg.FetchWait) }

// gatePoll is how often an instance that holds messages it may not handle
// yet (earlier ones are held elsewhere) looks again.
func (g *Group) gatePoll() time.Duration { return min(g.cfg.FetchWait, 250*time.Millisecond) }

// heldMsg is a delivery this instance holds and has not settled.
type heldMsg struct {
	msg jetstream.Msg
	d   Delivery
}

// batchWorker consumes one partition for a batch group.
//
// Safety (per-key order) rests on the gate: the worker hands messages to the
// handler only while it holds every message the broker counts as pending
// for the partition consumer, so every earlier message of the partition is
// settled. Progress rests on pinning: the broker delivers a partition's
// messages to one instance at a time, so one instance ends up holding them
// all. ADR 0017 has the argument with references to nats-server.
type batchWorker struct {
	g   *Group
	p   int
	s   jetstream.Stream
	c   jetstream.Consumer
	log *slog.Logger
	f   failure
	// wait is the partition waiting on a dependency (infrastructure
	// errors), with the held messages heartbeated meanwhile.
	wait infraWait

	mu   sync.Mutex // guards held, which the heartbeat goroutine reads
	held []heldMsg  // by stream sequence, one per sequence

	open     jetstream.MessageBatch // a pull request that may still deliver
	pin      string                 // pin ID of the latest delivery
	pinLost  bool                   // the broker refused that pin since (423)
	checked  bool                   // the gate passed and no delivery went elsewhere since
	nextDseq uint64                 // delivery sequence of the next delivery if none goes elsewhere
	pinned   bool                   // counted in the group's pins (spread.go)
	spreadAt time.Time              // the last look at spreading (spread.go)
}

func (g *Group) runBatchPartition(ctx context.Context, p int, s jetstream.Stream, c jetstream.Consumer) {
	w := &batchWorker{g: g, p: p, s: s, c: c, log: g.log.With("partition", p), wait: infraWait{g: g}}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { w.heartbeats(ctx, done) })
	defer func() {
		close(done)
		wg.Wait()
	}()
	defer w.stop(ctx)

	errs := 0
	for ctx.Err() == nil {
		err := w.fill()
		if w.count() > 0 && w.gate(ctx) {
			w.process(ctx)
		}
		w.spread(ctx)
		switch {
		case err == nil, errors.Is(err, errPinLost):
			errs = 0
			continue
		case ctx.Err() != nil:
			return
		}
		errs++
		w.log.WarnContext(ctx, "fetch failed; retrying", "attempt", errs, "error", err)
		if fetchRetry.Sleep(ctx, errs) != nil {
			return
		}
	}
}

// fill makes the worker hold something to handle: unless it holds messages
// already, it opens a pull request for up to MaxBatch and waits for the
// first delivery (at most until the request ends, FetchWait), then takes
// what follows within batchLinger.
func (w *batchWorker) fill() error {
	if w.count() > 0 {
		return w.drain()
	}
	if w.open == nil {
		if err := w.pull(w.g.cfg.FetchWait); err != nil {
			return err
		}
	}
	return w.collect(0)
}

// pull opens a pull request for what the worker has room for (at least one
// message: redeliveries need no room), expiring after wait.
func (w *batchWorker) pull(wait time.Duration) error {
	n := max(1, w.g.cfg.MaxBatch-w.count())
	b, err := w.c.Fetch(n, jetstream.FetchMaxWait(wait), jetstream.FetchPriorityGroup(batchPriorityGroup))
	if err != nil {
		return err
	}
	w.open = b
	return nil
}

// collect waits for the next delivery of the open pull request (at most
// maxWait if positive, else until the request ends), then takes the
// deliveries that follow within batchLinger of each other, up to MaxBatch.
func (w *batchWorker) collect(maxWait time.Duration) error {
	if w.open == nil {
		return nil
	}
	ch := w.open.Messages()
	var timeout <-chan time.Time
	if maxWait > 0 {
		t := time.NewTimer(maxWait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return w.closeOpen()
		}
		w.receive(m)
	case <-timeout:
		return nil
	}
	linger := time.NewTimer(batchLinger)
	defer linger.Stop()
	for w.count() < w.g.cfg.MaxBatch {
		select {
		case m, ok := <-ch:
			if !ok {
				return w.closeOpen()
			}
			w.receive(m)
			linger.Reset(batchLinger)
		case <-linger.C:
			return nil
		}
	}
	return nil
}

// drain takes the deliveries of the open pull request that have arrived,
// without waiting.
func (w *batchWorker) drain() error {
	for w.open != nil {
		select {
		case m, ok := <-w.open.Messages():
			if !ok {
				return w.closeOpen()
			}
			w.receive(m)
		default:
			return nil
		}
	}
	return nil
}

// closeOpen forgets the finished pull request and returns its error.
func (w *batchWorker) closeOpen() error {
	err := w.open.Error()
	w.open = nil
	if errors.Is(err, jetstream.ErrPinIDMismatch) {
		w.pin, w.pinLost, w.checked = "", true, false
		w.setPinned(false)
		return errPinLost
	}
	return err
}

// receive adds a delivery to what the worker holds.
func (w *batchWorker) receive(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		// Not a JetStream delivery: cannot happen with a pull consumer.
		w.log.Error("delivery without metadata", "error", err)
		return
	}
	// The broker numbers every delivery of the consumer, to any puller. A
	// gap means a delivery went elsewhere (or was lost) since the last
	// one here, so the next batch needs the full gate check.
	if meta.Sequence.Consumer != w.nextDseq {
		w.checked = false
	}
	w.nextDseq = meta.Sequence.Consumer + 1
	if pin := m.Headers().Get(headerPinID); pin != "" {
		w.pin, w.pinLost = pin, false
		w.setPinned(true)
	}
	d := delivery(w.p, m, meta)
	delete(d.Headers, headerPinID) // broker plumbing, different in every delivery
	if d.NumDelivered > 1 {
		w.g.metrics.redelivered(w.g.cfg)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	i, found := slices.BinarySearchFunc(w.held, d.Sequence, func(h heldMsg, seq uint64) int {
		switch {
		case h.d.Sequence < seq:
			return -1
		case h.d.Sequence > seq:
			return 1
		}
		return 0
	})
	if found {
		// A redelivery of a message held here (its AckWait ran out while
		// it waited in a pull request): keep the newer delivery.
		w.held[i] = heldMsg{msg: m, d: d}
		return
	}
	w.held = slices.Insert(w.held, i, heldMsg{msg: m, d: d})
}

func (w *batchWorker) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.held)
}

// first returns a copy of the first n held messages.
func (w *batchWorker) first(n int) []heldMsg {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.held[:min(n, len(w.held))])
}

// dropThrough forgets the held messages up to stream sequence seq: they
// are settled (messages are settled in order).
func (w *batchWorker) dropThrough(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := 0
	for i < len(w.held) && w.held[i].d.Sequence <= seq {
		i++
	}
	w.held = slices.Delete(w.held, 0, i)
}

// gate reports whether the worker may hand what it holds to the handler:
// only when it holds every message the broker counts as pending for the
// partition consumer (NumAckPending), because then every earlier message of
// the partition is settled: new messages are delivered in stream order, and
// a delivered message is pending until it is acknowledged. While earlier
// messages are held elsewhere (an instance that had the pin before, one that
// died, or ones waiting for redelivery) the worker keeps what it holds,
// heartbeats it, and pulls, which brings it redeliveries as they come due.
// It returns false when it handed everything back (the broker pinned the
// partition to another instance meanwhile, or counts fewer pending than are
// held here) or the group is stopping.
//
// The check costs one consumer info request; it is skipped while every
// delivery since the last passed check came here (consecutive delivery
// sequences), which is the steady state of the pin holder.
func (w *batchWorker) gate(ctx context.Context) bool {
	if w.checked {
		return true
	}
	waited := false
	for attempt := 1; ctx.Err() == nil; {
		_ = w.drain() // a lost pin shows in w.pinLost; other errors in the next pull
		n := w.count()
		info, err := w.c.Info(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			w.log.WarnContext(ctx, "consumer info failed; holding the messages", "held", n, "error", err)
			if fetchRetry.Sleep(ctx, attempt) != nil {
				return false
			}
			attempt++
			continue
		}
		attempt = 1
		switch pending := info.NumAckPending; {
		case pending == n:
			w.checked, w.nextDseq = true, info.Delivered.Consumer+1
			if waited {
				w.log.InfoContext(ctx, "earlier messages settled; handling the held ones", "held", n)
			}
			return true
		case pending < n:
			w.log.WarnContext(ctx, "the broker counts fewer pending messages than are held here (settled elsewhere or removed); handing them back",
				"held", n, "pending", pending)
			w.handBack(ctx)
			return false
		case w.pinLost:
			// Whoever has the pin may be waiting for what is held here.
			w.log.InfoContext(ctx, "partition pinned to another instance while earlier messages are held elsewhere; handing back",
				"held", n, "pending", pending)
			w.handBack(ctx)
			return false
		case !waited:
			waited = true
			w.log.InfoContext(ctx, "earlier messages of the partition are held elsewhere or await redelivery; waiting",
				"held", n, "pending", pending)
		}
		if w.open == nil {
			if err := w.pull(w.g.gatePoll()); err != nil {
				w.log.WarnContext(ctx, "fetch failed while waiting; retrying", "error", err)
				if fetchRetry.Sleep(ctx, 1) != nil {
					return false
				}
				continue
			}
		}
		_ = w.collect(w.g.gatePoll())
	}
	return false
}

// process hands the held messages (at most MaxBatch) to the handler and
// settles every one of them, in stream order, unless the group stops: then
// the unsettled ones are handed back.
func (w *batchWorker) process(ctx context.Context) {
	batch := w.first(w.g.cfg.MaxBatch)
	if h := batch[0]; h.d.NumDelivered > w.g.cfg.MaxDeliver {
		// The oldest message came back more often than the budget allows
		// without a result: it was being handled when instances died or
		// stopped (a crash loop). Messages behind it were only held, so the
		// rule applies to the oldest one alone.
		if !w.deadLetter(ctx, h, h.d, classExhausted, errNoResult, w.f.firstFailure(h.d.Sequence, w.g.cfg.Now())) {
			w.handBack(ctx)
			return
		}
		batch = batch[1:]
	}
	// After a crash or a stop, handle one message at a time, so that a
	// message that kills the instance is the only one charged for it.
	careful := slices.ContainsFunc(batch, func(h heldMsg) bool { return h.d.NumDelivered > 1 })
	for len(batch) > 0 {
		if ctx.Err() != nil {
			w.handBack(ctx)
			return
		}
		if !careful && len(batch) > 1 {
			err := w.handleBatch(ctx, batch)
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				w.handBack(ctx)
				return
			}
			if w.g.infrastructure(err) {
				// A dependency failed, not a message: no need to look for
				// the failing one. Wait, then offer the same batch again.
				log := w.log.With("from_seq", batch[0].d.Sequence, "messages", len(batch))
				if !w.wait.retry(ctx, log, err) {
					w.handBack(ctx)
					return
				}
				continue
			}
			w.log.InfoContext(ctx, "batch failed; handling its messages one at a time", "messages", len(batch),
				"from_seq", batch[0].d.Sequence, "error", err)
		}
		// One at a time until the failing message is settled; then the
		// rest is a batch again.
		for len(batch) > 0 {
			failed, ok := w.handleOne(ctx, batch[0])
			if !ok {
				w.handBack(ctx)
				return
			}
			batch = batch[1:]
			if failed && !careful {
				break
			}
		}
	}
}

// handleBatch calls the handler with the whole batch and acknowledges it
// if the handler returns nil.
func (w *batchWorker) handleBatch(ctx context.Context, batch []heldMsg) error {
	ds := make([]Delivery, len(batch))
	for i, h := range batch {
		ds[i] = h.d
	}
	start := w.g.cfg.Now()
	err := w.g.callBatch(ctx, ds)
	// The call's time is shared by its messages, so the histogram's sum
	// stays the handler's time and its count the messages.
	each := w.g.cfg.Now().Sub(start) / time.Duration(len(batch))
	outcome := ""
	switch {
	case err == nil:
		outcome = outcomeAck
		w.ack(ctx, batch)
		w.wait.end(ctx, w.log, outcomeAck)
	case ctx.Err() != nil:
		outcome = outcomeHandedBack
	case w.g.infrastructure(err):
		outcome = outcomeInfraFailed
	}
	if outcome != "" {
		for range batch {
			w.g.metrics.observe(w.g.cfg, outcome, each)
		}
	}
	return err
}

// handleOne calls the handler with one message until it is settled:
// acknowledged, retried in-process with backoff (holding the partition) up
// to MaxDeliver attempts, or dead-lettered. An infrastructure error is
// retried in-process too, after InfrastructureBackoff, as often as it
// takes and without spending an attempt. failed reports whether the
// handler failed at least once; ok is false when the group stopped first.
func (w *batchWorker) handleOne(ctx context.Context, h heldMsg) (failed, ok bool) {
	attempt := h.d.NumDelivered
	// A message held behind a crash loop comes back over budget without
	// having been tried: it gets one try.
	budget := max(w.g.cfg.MaxDeliver, attempt)
	for {
		d := h.d
		d.NumDelivered = attempt
		log := w.log.With("seq", d.Sequence, "event_id", d.ID, "delivery", d.NumDelivered)
		start := w.g.cfg.Now()
		err := w.g.callBatch(ctx, []Delivery{d})
		elapsed := w.g.cfg.Now().Sub(start)
		switch {
		case err == nil:
			w.g.metrics.observe(w.g.cfg, outcomeAck, elapsed)
			w.ack(ctx, []heldMsg{h})
			w.wait.end(ctx, log, outcomeAck)
			return failed, true
		case IsPermanent(err):
			w.g.metrics.observe(w.g.cfg, outcomeDeadLetter, elapsed)
			w.wait.end(ctx, log, outcomeDeadLetter)
			return true, w.deadLetter(ctx, h, d, classPermanent, err, w.f.firstFailure(d.Sequence, start))
		case ctx.Err() != nil:
			w.g.metrics.observe(w.g.cfg, outcomeHandedBack, elapsed)
			return failed, false
		case w.g.infrastructure(err):
			// A dependency failed, not the message: wait for it with the
			// message (and the ones behind it) held, without spending an
			// attempt.
			failed = true
			w.g.metrics.observe(w.g.cfg, outcomeInfraFailed, elapsed)
			if !w.wait.retry(ctx, log, err) {
				return true, false
			}
			continue
		case attempt >= budget:
			w.g.metrics.observe(w.g.cfg, outcomeDeadLetter, elapsed)
			w.wait.end(ctx, log, outcomeDeadLetter)
			return true, w.deadLetter(ctx, h, d, classExhausted, err, w.f.firstFailure(d.Sequence, start))
		}
		// Retry here, not with a delayed nak: with more than one message
		// pending, the broker would deliver later messages of the partition
		// before the redelivery (ADR 0017). The message and the ones behind
		// it stay held and heartbeated meanwhile.
		failed = true
		w.g.metrics.observe(w.g.cfg, outcomeRetry, elapsed)
		w.wait.end(ctx, log, outcomeRetry)
		w.g.metrics.redelivered(w.g.cfg)
		w.f.firstFailure(d.Sequence, start)
		delay := w.g.cfg.Backoff.Delay(attempt)
		log.InfoContext(ctx, "handler failed; retrying in-process", "retry_in", delay, "error", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return true, false
		case <-t.C:
		}
		attempt++
	}
}

// ack acknowledges a batch: every message but the last without waiting,
// the last with a confirmation. The broker handles the acks of one
// connection in order, so the confirmation covers the whole batch. When
// the confirmation fails (the consumer's leader died), the whole batch is
// acknowledged again, with a confirmation each, once another node leads
// (reconfirm), rather than waiting AckWait for its redelivery.
func (w *batchWorker) ack(ctx context.Context, batch []heldMsg) {
	settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	last := len(batch) - 1
	confirmed := true
	for _, h := range batch[:last] {
		if err := h.msg.Ack(); err != nil {
			w.log.WarnContext(settle, "ack failed; sending it again", "seq", h.d.Sequence, "error", err)
			confirmed = false
		}
	}
	if err := batch[last].msg.DoubleAck(settle); err != nil {
		w.log.WarnContext(settle, "ack not confirmed; sending the batch's acks again", "seq", batch[last].d.Sequence, "error", err)
		confirmed = false
	}
	if !confirmed {
		msgs := make([]jetstream.Msg, len(batch))
		for i, h := range batch {
			msgs[i] = h.msg
		}
		w.g.reconfirm(ctx, w.log, msgs)
		// Whether or not that worked, the next batch is checked at the
		// gate: what is still unconfirmed is earlier.
		w.checked = false
	}
	w.dropThrough(batch[last].d.Sequence)
}

// deadLetter stores the message in the dead-letter stream and acknowledges
// it. The partition does not move on before the dead letter is stored: a
// failed publish is retried with backoff. ok is false when the group stopped
// first.
func (w *batchWorker) deadLetter(ctx context.Context, h heldMsg, d Delivery, class string, cause error, firstFailure time.Time) (ok bool) {
	log := w.log.With("seq", d.Sequence, "event_id", d.ID, "delivery", d.NumDelivered)
	for attempt := 1; ; attempt++ {
		settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		acked, err := w.g.storeDeadLetter(settle, log, h.msg, d, class, cause, firstFailure)
		cancel()
		if err == nil {
			if !acked {
				w.checked = false
			}
			w.dropThrough(d.Sequence)
			return true
		}
		log.ErrorContext(ctx, "dead-letter publish failed; the partition waits and tries again", "class", class, "attempt", attempt, "error", err)
		if fetchRetry.Sleep(ctx, attempt) != nil {
			return false
		}
	}
}

// handBack gives every held message back to the broker at once (a nak
// without delay), in stream order: the broker redelivers naked messages in
// the order of the naks, before newer ones. It first lets the open pull
// request run out (at most its expiry), so that what it still delivers is
// handed back too and nothing handed back is delivered to it again.
func (w *batchWorker) handBack(ctx context.Context) {
	for w.open != nil {
		m, ok := <-w.open.Messages()
		if !ok {
			_ = w.closeOpen()
			break
		}
		w.receive(m)
	}
	w.mu.Lock()
	held := w.held
	w.held = nil
	w.mu.Unlock()
	w.checked = false
	w.wait.end(ctx, w.log, outcomeHandedBack)
	if len(held) == 0 {
		return
	}
	settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	for _, h := range held {
		w.g.nak(settle, w.log.With("seq", h.d.Sequence, "event_id", h.d.ID), h.msg, 0)
	}
	w.log.InfoContext(settle, "unsettled messages handed back", "messages", len(held), "from_seq", held[0].d.Sequence)
}

// stop hands back what is held (after the open pull request has run out,
// at most FetchWait) and unpins the partition, so that another instance
// takes it at once.
func (w *batchWorker) stop(ctx context.Context) {
	w.handBack(ctx)
	defer w.setPinned(false)
	if w.pin == "" {
		return
	}
	settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	info, err := w.c.Info(settle)
	if err != nil {
		w.log.WarnContext(settle, "consumer info at stop; the partition stays pinned here until the pin times out", "pinned_ttl", w.g.pinnedTTL(), "error", err)
		return
	}
	for _, pg := range info.PriorityGroups {
		if pg.Group != batchPriorityGroup || pg.PinnedClientID != w.pin {
			continue
		}
		// Should the pin have moved since the info, the instance that has
		// it now loses it: harmless, the gate keeps the order.
		if err := w.s.UnpinConsumer(settle, info.Name, batchPriorityGroup); err != nil {
			w.log.WarnContext(settle, "unpin at stop; the partition stays pinned here until the pin times out", "pinned_ttl", w.g.pinnedTTL(), "error", err)
		}
	}
}

// heartbeats tells the broker every AckWait/3 that the held messages are
// in progress (the one being handled, the ones behind it, the ones waiting
// at the gate), so none is given to another instance while held here.
func (w *batchWorker) heartbeats(ctx context.Context, done <-chan struct{}) {
	t := time.NewTicker(w.g.cfg.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		w.mu.Lock()
		held := slices.Clone(w.held)
		w.mu.Unlock()
		for _, h := range held {
			if err := h.msg.InProgress(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
				w.log.WarnContext(ctx, "progress heartbeat failed", "seq", h.d.Sequence, "error", err)
			}
		}
	}
}

// callBatch runs the batch handler with a timeout, in a consumer span, and
// turns a panic into an error.
func (g *Group) callBatch(ctx context.Context, ds []Delivery) (err error) {
	g.metrics.batch(g.cfg, len(ds))
	hctx, cancel := context.WithTimeout(ctx, g.cfg.HandlerTimeout)
	defer cancel()
	if len(ds) == 1 && g.cfg.Extract != nil {
		hctx = g.cfg.Extract(hctx, ds[0].Headers)
	}
	if g.cfg.Tracer != nil {
		var span trace.Span
		hctx, span = g.cfg.Tracer.Start(hctx, "process "+g.cfg.Stream, g.batchSpanOptions(ctx, ds)...)
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
	return g.handlerResult(ctx, hctx, g.batch(hctx, ds))
}

// batchSpanOptions: a call with one message gets a span that is a child of
// the message's trace context, like a Group's; a call with several gets a
// new trace whose span links to each message's trace context (the
// OpenTelemetry messaging convention for batches).
func (g *Group) batchSpanOptions(ctx context.Context, ds []Delivery) []trace.SpanStartOption {
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.destination.name", ds[0].Subject),
		attribute.String("messaging.consumer.group.name", g.cfg.Name),
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	if len(ds) == 1 {
		attrs = append(attrs, attribute.String("messaging.message.id", ds[0].ID))
		return append(opts, trace.WithAttributes(attrs...))
	}
	attrs = append(attrs, attribute.Int("messaging.batch.message_count", len(ds)))
	opts = append(opts, trace.WithNewRoot(), trace.WithAttributes(attrs...))
	if g.cfg.Extract != nil {
		links := make([]trace.Link, 0, len(ds))
		for _, d := range ds {
			if sc := trace.SpanContextFromContext(g.cfg.Extract(ctx, d.Headers)); sc.IsValid() {
				links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("messaging.message.id", d.ID)}})
			}
		}
		opts = append(opts, trace.WithLinks(links...))
	}
	return opts
}
