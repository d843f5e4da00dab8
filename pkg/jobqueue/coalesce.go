package jobqueue

import (
	"context"
	"sync"
	"time"
)

// maxCoalesced bounds one coalesced statement: at most this many messages
// claimed by one receive, or handles deleted by one delete.
const maxCoalesced = 100

// coalescedTimeout bounds a coalesced statement. It runs for several
// callers, so no single caller's cancellation stops it.
const coalescedTimeout = 30 * time.Second

// combiner sends concurrent calls with the same key as one statement
// ("natural batching", as the AWS SDKs' SQS batch managers do for
// DeleteMessage and ReceiveMessage, without their linger): a call that
// arrives while its key's statement is in flight waits and goes out with
// the others that arrive meanwhile, in the next statement. A lone caller
// runs its statement at once, on its own goroutine; under load each
// statement carries what queued during the previous one, so batches grow
// with the load and no call waits longer than one statement before its own
// is sent.
type combiner[K comparable, In, Out any] struct {
	// weight is what an input adds to a statement (messages asked for,
	// handles); a statement carries inputs up to maxCoalesced.
	weight func(In) int
	// run executes one statement for ins; it returns one Out per input.
	run func(ctx context.Context, key K, ins []In) []Out
	// abandoned, when set, receives the output of a call whose caller
	// left (its context ended) while the statement carrying it ran.
	abandoned func(ctx context.Context, key K, out Out)
	// observe records the calls of each statement.
	observe func(calls int)
	// beforeRun, when set (tests), is called with the number of calls
	// before each statement.
	beforeRun func(calls int)

	mu   sync.Mutex
	keys map[K]*combineQueue[In, Out]
}

type combineQueue[In, Out any] struct {
	pending []*combineCall[In, Out]
	running bool
}

type combineCall[In, Out any] struct {
	in   In
	done chan struct{}
	// Guarded by the combiner's mu.
	out       Out
	finished  bool
	abandoned bool
}

// do runs in with the other calls of key that are waiting, and returns
// its output, or ctx's error if ctx ends first.
func (cb *combiner[K, In, Out]) do(ctx context.Context, key K, in In) (Out, error) {
	call := &combineCall[In, Out]{in: in, done: make(chan struct{})}
	cb.mu.Lock()
	if cb.keys == nil {
		cb.keys = map[K]*combineQueue[In, Out]{}
	}
	q := cb.keys[key]
	if q == nil {
		q = &combineQueue[In, Out]{}
		cb.keys[key] = q
	}
	q.pending = append(q.pending, call)
	lead := !q.running
	q.running = true
	cb.mu.Unlock()
	if lead {
		// The statement runs on the caller's goroutine: a lone caller
		// pays no hand-off.
		cb.runOnce(ctx, key, q)
	}
	select {
	case <-call.done:
		return call.out, nil
	case <-ctx.Done():
	}
	cb.mu.Lock()
	defer cb.mu.Unlock()
	if call.finished {
		return call.out, nil
	}
	call.abandoned = true
	var zero Out
	return zero, ctx.Err()
}

// runOnce sends one statement for the calls waiting on q and hands the
// next one, if calls queued meanwhile, to a new goroutine.
func (cb *combiner[K, In, Out]) runOnce(ctx context.Context, key K, q *combineQueue[In, Out]) {
	cb.mu.Lock()
	var batch []*combineCall[In, Out]
	weight := 0
	for len(q.pending) > 0 {
		call := q.pending[0]
		w := cb.weight(call.in)
		if len(batch) > 0 && weight+w > maxCoalesced {
			break
		}
		q.pending = q.pending[1:]
		if call.abandoned {
			continue
		}
		batch, weight = append(batch, call), weight+w
	}
	cb.mu.Unlock()

	if len(batch) > 0 {
		ins := make([]In, len(batch))
		for i, call := range batch {
			ins[i] = call.in
		}
		cb.observe(len(batch))
		if cb.beforeRun != nil {
			cb.beforeRun(len(batch))
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), coalescedTimeout)
		outs := cb.run(sctx, key, ins)
		cb.mu.Lock()
		var left []Out
		for i, call := range batch {
			if call.abandoned {
				if cb.abandoned != nil {
					left = append(left, outs[i])
				}
				continue
			}
			call.out, call.finished = outs[i], true
			close(call.done)
		}
		cb.mu.Unlock()
		for _, out := range left {
			cb.abandoned(sctx, key, out)
		}
		cancel()
	}

	cb.mu.Lock()
	defer cb.mu.Unlock()
	if len(q.pending) == 0 {
		q.running = false
		return
	}
	go cb.runOnce(context.WithoutCancel(ctx), key, q)
}

// waiting returns the number of calls of key waiting for a statement.
func (cb *combiner[K, In, Out]) waiting(key K) int {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	if q := cb.keys[key]; q != nil {
		return len(q.pending)
	}
	return 0
}

// receiveKey groups receives that one statement can serve.
type receiveKey struct {
	queue      string
	visibility time.Duration
}

type receiveResult struct {
	msgs []Message
	next time.Time
	err  error
}

// receiveCombined claims messages for several receivers of one queue in
// one statement and shares them out in arrival order, each receiver up to
// its MaxMessages. Receivers left with none get the time the next message
// becomes visible, as receiveOnce gives.
func (c *Client) receiveCombined(ctx context.Context, key receiveKey, maxes []int) []receiveResult {
	out := make([]receiveResult, len(maxes))
	total := 0
	for _, n := range maxes {
		total += n
	}
	msgs, err := c.claim(ctx, key.queue, total, key.visibility)
	if err != nil {
		for i := range out {
			out[i].err = err
		}
		return out
	}
	var empty []int
	for i, n := range maxes {
		n = min(n, len(msgs))
		if n == 0 {
			empty = append(empty, i)
			continue
		}
		out[i].msgs, msgs = msgs[:n:n], msgs[n:]
	}
	if len(empty) > 0 {
		next, err := c.nextVisible(ctx, key.queue)
		for _, i := range empty {
			out[i].next, out[i].err = next, err
		}
	}
	return out
}

// releaseAbandoned makes the messages of a receiver that left before its
// statement returned visible again (they keep the receive counted).
func (c *Client) releaseAbandoned(ctx context.Context, _ receiveKey, r receiveResult) {
	for _, m := range r.msgs {
		if err := c.ChangeMessageVisibility(ctx, m.ReceiptHandle, 0); err != nil {
			c.log.WarnContext(ctx, "releasing a message whose receiver left", "queue", m.Queue, "id", m.ID, "error", err)
		}
	}
}

// deleteCombined deletes the handles of several DeleteMessage calls on the
// pool in one statement.
func (c *Client) deleteCombined(ctx context.Context, _ struct{}, handles []string) []error {
	errs, err := c.deleteHandles(ctx, c.pool, handles)
	if err != nil {
		errs = make([]error, len(handles))
		for i := range errs {
			errs[i] = err
		}
	}
	return errs
}

func (c *Client) newCombiners() {
	c.receives = &combiner[receiveKey, int, receiveResult]{
		weight:    func(n int) int { return n },
		run:       c.receiveCombined,
		observe:   func(n int) { c.m.coalesced.WithLabelValues("receive").Observe(float64(n)) },
		abandoned: c.releaseAbandoned,
	}
	c.deletes = &combiner[struct{}, string, error]{
		weight:  func(string) int { return 1 },
		run:     c.deleteCombined,
		observe: func(n int) { c.m.coalesced.WithLabelValues("delete").Observe(float64(n)) },
	}
}
