package jobqueue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/breaker"
)

// Handler processes one message. Returning nil deletes it; returning an
// error makes it visible again after a backoff (or the RetryAfter of a
// *RetryError); returning a *PermanentError moves it to the dead-letter
// queue. A handler that wants the deletion in its own transaction calls
// DeleteMessage(ctx, tx, m.ReceiptHandle) itself and returns ErrHandled.
type Handler func(ctx context.Context, m Message) error

// ErrHandled tells the worker the handler already deleted (or moved) the
// message.
var ErrHandled = errors.New("jobqueue: handled by the handler")

// RetryError asks for a retry after a given delay (a provider's Retry-After).
type RetryError struct {
	After time.Duration
	Err   error
}

func (e *RetryError) Error() string { return fmt.Sprintf("retry after %s: %v", e.After, e.Err) }
func (e *RetryError) Unwrap() error { return e.Err }

// PermanentError is a failure retrying cannot fix.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	Queue string
	// Concurrency is the number of messages processed at once. Default 4.
	Concurrency int
	// VisibilityTimeout per receive; 0 uses the queue's. The heartbeat
	// extends it every third of its length while the handler runs.
	VisibilityTimeout time.Duration
	// Backoff between attempts: capped exponential with full jitter, by
	// receive count. Default 1s growing to 5m.
	Backoff backoff.Policy
	// ReceiveBackoff spaces the receives while they fail (the database is
	// down or unreachable): the n-th failure in a row waits
	// ReceiveBackoff.Delay(n); a receive that succeeds starts again at 1.
	// The zero Policy uses pkg/backoff's defaults (100ms, doubling, at
	// most 30s, full jitter), as pkg/stream's InfrastructureBackoff: the
	// workers of every instance neither hammer a database that is coming
	// back nor wait more than 30s once it is back.
	ReceiveBackoff backoff.Policy
	// ShutdownGrace is how long in-flight handlers may run after the worker
	// is asked to stop; then they are cancelled and their messages
	// released. Default 10s.
	ShutdownGrace time.Duration
	// Extract, if set, returns ctx with the trace context the sender put
	// in the message's attributes (telemetry.Extract; the sender injects
	// it with telemetry.Inject into SendInput.Attributes), so the job
	// continues the trace of the request that enqueued it.
	Extract func(ctx context.Context, attributes map[string]string) context.Context
	// Tracer, if set, starts a consumer span "process <queue>" around each
	// handler call; an error other than ErrHandled marks it.
	Tracer trace.Tracer
	// Gate, if set, is asked before every receive: while it holds the
	// worker back (a circuit breaker open in front of the dependency the
	// jobs call, BreakerGate) the worker receives nothing, so no job spends
	// a receive on a call that cannot succeed and nothing is
	// dead-lettered; the jobs wait in the queue.
	Gate Gate
}

// Gate holds a worker's receives back while what its jobs need is down.
type Gate interface {
	// Admit blocks until the worker may receive, or ctx ends. Another
	// error is logged and asked again after the worker's backoff.
	Admit(ctx context.Context) (Permit, error)
}

// Permit is a Gate's leave for one receive.
type Permit struct {
	// Limit bounds the messages of this receive (0: only the worker's
	// bounds). A limited permit long-polls at most probeWait, so a turn
	// that finds no job passes to another worker soon.
	Limit int
	// Revoked, if set, ends when the gate closes again: a long poll in
	// progress stops, and the worker asks the gate again.
	Revoked context.Context
	// Done, if set, is called once the messages received under the permit
	// are settled (at once when none was received).
	Done func()
}

// probeWait is the longest long poll of a limited permit.
const probeWait = 2 * time.Second

// BreakerGate is a Gate that admits while b is closed, one message at a
// time to one worker while it is half-open (the probe: its outcome, which
// the handler reports to b, closes or reopens it), and nothing while it
// is open. The workers of every queue whose jobs call one dependency
// share its breaker.
func BreakerGate(b *breaker.Breaker) Gate { return breakerGate{b} }

type breakerGate struct{ b *breaker.Breaker }

func (g breakerGate) Admit(ctx context.Context) (Permit, error) {
	t, err := g.b.Wait(ctx)
	if err != nil {
		return Permit{}, err
	}
	p := Permit{Revoked: t.Revoked}
	if t.Probe {
		p.Limit, p.Done = 1, t.Release
	}
	return p, nil
}

// Worker receives from one queue and runs a Handler with bounded
// concurrency, a visibility heartbeat and retries.
//
// The deletes after successful handlers are grouped: handlers that return
// while a delete is in flight have their messages deleted together by the
// next statement (DeleteMessageBatch, up to 10), so a busy worker commits
// about once per batch instead of once per job; a lone delete goes out at
// once. A handler's slot is freed when the handler has returned and its
// delete is queued, so the next receive overlaps the delete; at most
// Concurrency deletes wait at a time (a Worker holds at most 2×Concurrency
// messages: running, or done and being deleted).
type Worker struct {
	c   *Client
	cfg WorkerConfig
	h   Handler
}

// NewWorker returns a worker; Run starts it.
func (c *Client) NewWorker(cfg WorkerConfig, h Handler) *Worker {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Backoff == (backoff.Policy{}) {
		cfg.Backoff = backoff.Policy{Initial: time.Second, Max: 5 * time.Minute, Multiplier: 2}
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	return &Worker{c: c, cfg: cfg, h: h}
}

// Run processes messages until ctx ends, then lets in-flight handlers finish
// within ShutdownGrace and returns nil.
//
// Each round takes a slot, asks the gate (admit), receives as many
// messages as slots are free (receive) and runs a handler per message
// (dispatch); the deleter deletes the messages whose handler succeeded.
func (w *Worker) Run(ctx context.Context) error {
	hctx, stopHandlers := w.handlerContext(ctx)
	defer stopHandlers()
	deletes, stopDeleter := w.startDeleter(ctx)
	defer stopDeleter()

	slots := make(chan struct{}, w.cfg.Concurrency)
	// deleting bounds the messages whose handler succeeded and whose
	// delete is pending: their slots are free for new messages already.
	deleting := make(chan struct{}, w.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	down := receiveOutage{w: w}
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		permit, err := w.admit(ctx)
		if err != nil {
			<-slots
			if !w.backOff(ctx, "gate refused", err) {
				return nil
			}
			continue
		}
		settled := permit.Done
		if settled == nil {
			settled = func() {}
		}
		msgs, revoked, err := w.receive(ctx, w.cfg.Concurrency-len(slots)+1, permit)
		if err == nil {
			down.end(ctx)
		}
		if err != nil || len(msgs) == 0 {
			<-slots
			settled()
			if !w.afterNoMessages(ctx, permit, revoked, err, &down) {
				return nil
			}
			continue
		}
		// One slot is held; take one more per extra message (free says
		// they are available).
		for range len(msgs) - 1 {
			slots <- struct{}{}
		}
		w.dispatch(hctx, &wg, msgs, slots, deletes, deleting, settled)
	}
	return nil
}

// handlerContext returns the context handlers run on: it outlives ctx by
// ShutdownGrace. stop releases it.
func (w *Worker) handlerContext(ctx context.Context) (hctx context.Context, stop func()) {
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(w.cfg.ShutdownGrace, hcancel)
		context.AfterFunc(hctx, func() { t.Stop() })
	})
	return hctx, func() {
		stopGrace()
		hcancel()
	}
}

// startDeleter starts the deleter, which outlives every handler: stop
// (called after the handlers returned) ends it and waits for it.
func (w *Worker) startDeleter(ctx context.Context) (deletes chan<- deleteReq, stop func()) {
	ch := make(chan deleteReq)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.deleter(context.WithoutCancel(ctx), ch)
	}()
	return ch, func() {
		close(ch)
		<-done
	}
}

// backOff logs why the round failed and sleeps the backoff's first delay;
// it reports whether ctx is still alive.
func (w *Worker) backOff(ctx context.Context, what string, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	w.c.log.WarnContext(ctx, what, "queue", w.cfg.Queue, "err", err)
	return w.cfg.Backoff.Sleep(ctx, 1) == nil
}

// receive asks for up to free messages (at most MaxReceiveBatch, at most
// the permit's limit, waiting probeWait for a probe), on a context the
// gate's revocation cancels. revoked reports whether the permit had been
// revoked when the receive returned (read before receive cancels its own
// context, which would make every receive look revoked).
func (w *Worker) receive(ctx context.Context, free int, permit Permit) (msgs []Message, revoked bool, err error) {
	in := ReceiveInput{MaxMessages: min(free, MaxReceiveBatch), VisibilityTimeout: w.cfg.VisibilityTimeout, WaitTime: MaxWaitTime}
	if permit.Limit > 0 {
		in.MaxMessages, in.WaitTime = min(in.MaxMessages, permit.Limit), probeWait
	}
	rctx, cancel := context.WithCancel(ctx)
	stopRevoke := func() bool { return false }
	if permit.Revoked != nil {
		stopRevoke = context.AfterFunc(permit.Revoked, cancel)
	}
	msgs, err = w.c.Receive(rctx, w.cfg.Queue, in)
	revoked = permit.Revoked != nil && permit.Revoked.Err() != nil
	stopRevoke()
	cancel()
	return msgs, revoked, err
}

// afterNoMessages decides what follows a receive that failed or found
// nothing; it reports whether to go on (false: ctx ended). A receive the
// gate revoked asks the gate again at once; any other failure waits its
// turn in the outage's backoff.
func (w *Worker) afterNoMessages(ctx context.Context, permit Permit, revoked bool, err error, down *receiveOutage) bool {
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		if revoked {
			return true // revoked by the gate: ask it again
		}
		return down.fail(ctx, err)
	}
	if permit.Limit > 0 && sleepCtx(ctx, probeWait) != nil {
		// A probe that found this queue empty yields the probe for one
		// probe wait: another queue behind the same breaker (payments'
		// charges and refunds share the provider's) takes it instead of
		// waiting while this worker takes it back at once, which kept the
		// provider's breaker half-open for minutes with charges waiting.
		return false
	}
	return true
}

// outageLogEvery is how often a worker that keeps failing to receive
// warns again.
const outageLogEvery = time.Minute

// receiveOutage is a worker's run of failed receives (the database down
// or unreachable). It spaces the receives with ReceiveBackoff and logs
// the start (a warning), a reminder every outageLogEvery, and the end (an
// info line with how long it lasted): one warning per outage, not one per
// receive.
type receiveOutage struct {
	w        *Worker
	since    time.Time // zero: receives succeed
	logged   time.Time
	failures int
}

// fail records a failed receive and waits the backoff of the failures in
// a row; it reports whether ctx is still alive.
func (o *receiveOutage) fail(ctx context.Context, err error) bool {
	now := time.Now()
	o.failures++
	log, q := o.w.c.log, o.w.cfg.Queue
	switch {
	case o.since.IsZero():
		o.since, o.logged = now, now
		log.WarnContext(ctx, "receive failed; backing off until receives succeed", "queue", q, "err", err)
	case now.Sub(o.logged) >= outageLogEvery:
		o.logged = now
		log.WarnContext(ctx, "receives still failing", "queue", q, "failures", o.failures, "since", o.since, "err", err)
	default:
		log.DebugContext(ctx, "receive failed", "queue", q, "failures", o.failures, "err", err)
	}
	return o.w.cfg.ReceiveBackoff.Sleep(ctx, o.failures) == nil
}

// end ends the outage, if there is one, after a receive that succeeded.
func (o *receiveOutage) end(ctx context.Context) {
	if o.since.IsZero() {
		return
	}
	o.w.c.log.InfoContext(ctx, "receives resumed", "queue", o.w.cfg.Queue, "failures", o.failures, "down_for", time.Since(o.since).Round(time.Millisecond))
	o.since, o.logged, o.failures = time.Time{}, time.Time{}, 0
}

// dispatch runs a handler per message (process), each holding one of
// slots; settled runs when the last of them has returned.
func (w *Worker) dispatch(hctx context.Context, wg *sync.WaitGroup, msgs []Message, slots chan struct{}, deletes chan<- deleteReq, deleting chan struct{}, settled func()) {
	var left atomic.Int32
	left.Store(int32(len(msgs)))
	for _, m := range msgs {
		wg.Go(func() {
			var once sync.Once
			release := func() { once.Do(func() { <-slots }) }
			defer release()
			w.process(hctx, m, deletes, deleting, release)
			if left.Add(-1) == 0 {
				settled()
			}
		})
	}
}

// admit asks the gate, if any, for leave to receive.
func (w *Worker) admit(ctx context.Context) (Permit, error) {
	if w.cfg.Gate == nil {
		return Permit{}, nil
	}
	return w.cfg.Gate.Admit(ctx)
}

// process runs the handler on m and settles the message. release frees m's
// slot: after a successful handler as soon as a deleting token is held (the
// delete runs while the slot takes a new message), else when settled.
func (w *Worker) process(ctx context.Context, m Message, deletes chan<- deleteReq, deleting chan struct{}, release func()) {
	vis := w.cfg.VisibilityTimeout
	if vis <= 0 {
		vis = 30 * time.Second
	}
	hbCtx, hbCancel := context.WithCancel(ctx)
	var hb sync.WaitGroup
	hb.Go(func() { w.heartbeat(hbCtx, m, vis) })
	hctx := ctx
	if w.cfg.Extract != nil {
		hctx = w.cfg.Extract(hctx, m.Attributes)
	}
	var span trace.Span
	if w.cfg.Tracer != nil {
		hctx, span = w.cfg.Tracer.Start(hctx, "process "+m.Queue, trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "postgresql"), attribute.String("messaging.destination.name", m.Queue),
				attribute.Int64("messaging.message.id", m.ID), attribute.Int("messaging.receive_count", m.ReceiveCount)))
	}
	err := w.h(hctx, m)
	if span != nil {
		if err != nil && !errors.Is(err, ErrHandled) {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
	hbCancel()
	hb.Wait()

	var retry *RetryError
	var perm *PermanentError
	switch {
	case err == nil:
		deleting <- struct{}{}
		defer func() { <-deleting }()
		release()
		done := make(chan error, 1)
		deletes <- deleteReq{handle: m.ReceiptHandle, done: done}
		if derr := <-done; derr != nil {
			w.c.log.WarnContext(ctx, "delete after success", "queue", m.Queue, "id", m.ID, "err", derr)
		}
	case errors.Is(err, ErrHandled):
	case ctx.Err() != nil:
		// Shutting down past the grace period: release the message now
		// rather than leaving it invisible until its timeout.
		if cerr := w.c.ChangeMessageVisibility(context.WithoutCancel(ctx), m.ReceiptHandle, 0); cerr != nil && !errors.Is(cerr, ErrStaleReceipt) {
			w.c.log.WarnContext(ctx, "release on shutdown", "queue", m.Queue, "id", m.ID, "err", cerr)
		}
	case errors.As(err, &perm):
		if derr := w.c.MoveToDeadLetter(context.WithoutCancel(ctx), w.c.pool, m.ReceiptHandle, truncate(perm.Error(), 500)); derr != nil {
			w.c.log.WarnContext(ctx, "dead-letter after permanent failure", "queue", m.Queue, "id", m.ID, "err", derr)
		}
	default:
		delay := w.cfg.Backoff.Delay(m.ReceiveCount)
		if errors.As(err, &retry) && retry.After > 0 {
			// The provider's Retry-After, plus up to 10% jitter so a storm
			// of 429s does not come back at the same instant.
			delay = retry.After + backoff.Policy{Initial: retry.After / 10, Max: retry.After / 10}.Delay(1)
		}
		w.c.log.InfoContext(ctx, "job failed, will retry", "queue", m.Queue, "id", m.ID, "receive_count", m.ReceiveCount, "retry_in", delay.String(), "err", err)
		if cerr := w.c.ChangeMessageVisibility(context.WithoutCancel(ctx), m.ReceiptHandle, delay); cerr != nil && !errors.Is(cerr, ErrStaleReceipt) {
			w.c.log.WarnContext(ctx, "schedule retry", "queue", m.Queue, "id", m.ID, "err", cerr)
		}
	}
}

// deleteReq asks the deleter to delete one delivery; the result goes to
// done (buffered).
type deleteReq struct {
	handle string
	done   chan error
}

// deleter deletes the deliveries of successful handlers until reqs is
// closed. It takes one request, adds those already waiting (up to 10) and
// deletes them in one statement: DeleteMessage for one, DeleteMessageBatch
// for more. Requests that arrive meanwhile wait for the next round, so the
// batches grow with the load and no delete waits for a timer.
func (w *Worker) deleter(ctx context.Context, reqs <-chan deleteReq) {
	batch := make([]deleteReq, 0, MaxReceiveBatch)
	handles := make([]string, 0, MaxReceiveBatch)
	for first := range reqs {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < MaxReceiveBatch {
			select {
			case r, ok := <-reqs:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		if len(batch) == 1 {
			first.done <- w.c.DeleteMessage(ctx, w.c.pool, first.handle)
			continue
		}
		handles = handles[:0]
		for _, r := range batch {
			handles = append(handles, r.handle)
		}
		errs, err := w.c.DeleteMessageBatch(ctx, w.c.pool, handles)
		for i, r := range batch {
			if err != nil {
				r.done <- err
			} else {
				r.done <- errs[i]
			}
		}
	}
}

// heartbeat extends the visibility of a long job every third of vis.
func (w *Worker) heartbeat(ctx context.Context, m Message, vis time.Duration) {
	t := time.NewTicker(vis / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := w.c.ChangeMessageVisibility(ctx, m.ReceiptHandle, vis); err != nil {
				if ctx.Err() == nil {
					w.c.log.WarnContext(ctx, "heartbeat", "queue", m.Queue, "id", m.ID, "err", err)
				}
				return
			}
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// sleepCtx waits d or until ctx ends (its error).
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
