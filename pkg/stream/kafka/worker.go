package kafkastream

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// worker handles one assigned partition's records in offset order: one
// at a time, or for a batch group up to MaxBatch ready ones per call.
type worker struct {
	s *session
	p int32

	mu     sync.Mutex
	queue  []*kgo.Record
	paused bool

	wake chan struct{} // a record was queued (capacity 1)
	// stopping ends when stop is called: take no new record, wait no more
	// (backoff, a dependency's recovery).
	stopping   context.Context
	cancelStop context.CancelFunc
	// handlerCtx is the handlers' ctx: it ends HandlerTimeout after stop,
	// so a revoke waits for a running handler at most that long.
	handlerCtx    context.Context
	cancelHandler context.CancelFunc
	stopOnce      sync.Once
	done          chan struct{} // closed when run returns
}

func newWorker(s *session, p int32) *worker {
	w := &worker{s: s, p: p, wake: make(chan struct{}, 1), done: make(chan struct{})}
	w.stopping, w.cancelStop = context.WithCancel(context.Background())
	w.handlerCtx, w.cancelHandler = context.WithCancel(context.Background())
	return w
}

// push queues records and pauses the partition's fetching when the queue
// reaches maxQueued. Pausing and resuming happen under w.mu, so a worker
// that drains the queue meanwhile cannot resume before the pause and leave
// the partition paused for good.
func (w *worker) push(records []*kgo.Record) {
	w.mu.Lock()
	w.queue = append(w.queue, records...)
	if len(w.queue) >= maxQueued && !w.paused {
		w.paused = true
		w.s.cl.PauseFetchPartitions(w.tp())
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) tp() map[string][]int32 { return map[string][]int32{w.s.g.cfg.Topic: {w.p}} }

// take returns the next records, at least one and at most max (what is
// queued: it never waits for more once it has one), or nil once the worker
// is stopping. An empty queue resumes a paused partition.
func (w *worker) take(max int) []*kgo.Record {
	for {
		if w.stopping.Err() != nil {
			return nil
		}
		w.mu.Lock()
		if n := min(len(w.queue), max); n > 0 {
			rs := make([]*kgo.Record, n)
			copy(rs, w.queue)
			clear(w.queue[:n])
			w.queue = w.queue[n:]
			w.mu.Unlock()
			return rs
		}
		if w.paused {
			w.paused = false
			w.s.cl.ResumeFetchPartitions(w.tp())
		}
		w.mu.Unlock()
		select {
		case <-w.stopping.Done():
			return nil
		case <-w.wake:
		}
	}
}

func (w *worker) wasPaused() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.paused
}

// stop asks the worker to stop: it takes no new record, stops waiting
// (backoff, dependency), and its running handler's ctx ends after
// HandlerTimeout at the latest.
func (w *worker) stop() {
	w.stopOnce.Do(func() {
		w.cancelStop()
		time.AfterFunc(w.s.g.cfg.HandlerTimeout, w.cancelHandler)
	})
}

func (w *worker) run() {
	defer close(w.done)
	defer w.cancelHandler()
	defer w.cancelStop()
	for {
		rs := w.take(w.s.g.cfg.MaxBatch)
		if rs == nil {
			return
		}
		if len(rs) > 1 {
			done, stopping := w.handleBatch(rs)
			if stopping {
				return // handed back uncommitted
			}
			if done {
				continue
			}
		}
		for _, r := range rs {
			if !w.handle(r) {
				return // abandoned: nothing after it may be handled
			}
		}
	}
}

// handle runs the handler on r until it is settled: committed after nil,
// dead-lettered and committed after Permanent or an exhausted budget. It
// reports false when it abandoned r uncommitted (the worker is stopping).
func (w *worker) handle(r *kgo.Record) bool {
	g := w.s.g
	d := delivery(r)
	log := g.log.With("partition", r.Partition, "offset", r.Offset, "event_id", d.ID)
	waitCtx := w.stopping
	wait := infraWait{g: g}
	var firstFailure time.Time
	d.NumDelivered = 1
	for {
		start := g.cfg.Now()
		err := g.call(w.handlerCtx, d)
		elapsed := g.cfg.Now().Sub(start)
		if err != nil && firstFailure.IsZero() {
			firstFailure = start
		}
		var class string
		switch {
		case err == nil:
			g.metrics.observe(g.cfg, outcomeAck, elapsed)
		case stream.IsPermanent(err):
			class = classPermanent // also when stopping, as pkg/stream does
		case waitCtx.Err() != nil:
			// Stopping, and the handler did not succeed: hand the record
			// back (uncommitted) to the partition's next owner.
			g.metrics.observe(g.cfg, outcomeHandedBack, elapsed)
			wait.end(log, outcomeHandedBack)
			return false
		case g.infrastructure(err):
			g.metrics.observe(g.cfg, outcomeInfraFailed, elapsed)
			if !wait.retry(waitCtx, log, err) {
				wait.end(log, outcomeHandedBack)
				return false
			}
			continue
		case d.NumDelivered >= g.cfg.MaxDeliver:
			class = classExhausted
		default:
			g.metrics.observe(g.cfg, outcomeRetry, elapsed)
			log.Info("handler failed; retrying", "attempt", d.NumDelivered, "error", err)
			if g.cfg.Backoff.Sleep(waitCtx, d.NumDelivered) != nil {
				return false // stopping: handed back uncommitted
			}
			d.NumDelivered++
			g.metrics.redelivered(g.cfg)
			continue
		}
		wait.end(log, outcomeAck)
		return w.settle(log, r, d, class, err, firstFailure, elapsed)
	}
}

// settle dead-letters r if class is set, then marks its offset for commit.
// It reports false if the worker stopped before the dead letter could be
// stored (the record is then handled again by the partition's next owner).
func (w *worker) settle(log *slog.Logger, r *kgo.Record, d stream.Delivery, class string, cause error, firstFailure time.Time, elapsed time.Duration) bool {
	g := w.s.g
	if class != "" {
		// The dead letter must be stored before r's offset may be
		// committed; a broker that refuses it is waited for like any
		// dependency (the partition holds), until the worker stops.
		for attempt := 1; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
			err := g.deadLetter(ctx, w.s.cl, r, d, class, cause, firstFailure)
			cancel()
			if err == nil {
				break
			}
			log.Error("dead-letter publish failed; retrying, the record stays uncommitted", "class", class, "attempt", attempt, "error", err)
			if g.cfg.InfrastructureBackoff.Sleep(w.stopping, attempt) != nil {
				g.metrics.observe(g.cfg, outcomeHandedBack, elapsed)
				return false
			}
		}
		g.metrics.observe(g.cfg, outcomeDeadLetter, elapsed)
		log.Warn("record dead-lettered", "class", class, "key", d.Key, "error", cause)
	}
	// Only now may r's offset be committed: the commit loop commits the
	// marks every CommitInterval, a revoke or a stop at once.
	w.s.cl.MarkCommitRecords(r)
	return true
}

// settleTimeout bounds dead-lettering and committing one record, also when
// the group is stopping.
const settleTimeout = 5 * time.Second
