package jobqueue_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/breaker"
	"github.com/shopfloor/shopfloor/pkg/breaker/breakertest"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestBreakerGateStopsReceivesWhileOpen: a worker behind an open breaker
// receives nothing, so the jobs keep their receive counts; each half-open
// lets exactly one job through as the probe; once the dependency heals the
// probe closes the breaker and the queue drains. Without the gate every
// job would be received again and again while the dependency is down.
func TestBreakerGateStopsReceivesWhileOpen(t *testing.T) {
	t.Parallel()
	const failures = 3
	b := setup(t, jobqueue.Options{}, jobqueue.Queue{Name: "dlq"}, jobqueue.Queue{Name: "q", DeadLetterQueue: "dlq", MaxReceiveCount: 100})
	for i := range 20 {
		b.send(t, "q", jobqueue.SendInput{Body: fmt.Appendf(nil, "job %d", i)})
	}
	brk := breakertest.New(t, breaker.Config{Name: "dep", Failures: failures, CoolDown: 50 * time.Millisecond, MaxCoolDown: 200 * time.Millisecond})
	var healthy atomic.Bool
	var calls atomic.Int64
	// The handler calls the dependency and reports the outcome, as a
	// provider client wrapped for the breaker does.
	w := b.c.NewWorker(jobqueue.WorkerConfig{Queue: "q", Concurrency: 1, Backoff: fastRetry, Gate: jobqueue.BreakerGate(brk.Breaker)},
		func(context.Context, jobqueue.Message) error {
			calls.Add(1)
			if !healthy.Load() {
				brk.Failure()
				return errors.New("dependency: 503")
			}
			brk.Success()
			return nil
		})
	runWorker(t, w)
	brk.WaitOpened(t, 4, 20*time.Second) // the trip and three failed probes
	// While down, a job is received only to trip the breaker (failures in
	// a row) and once per probe (each failed probe reopens it): the calls,
	// the receive counts and the openings agree exactly.
	var c, receives int64
	o := brk.Steady(t, 20*time.Second, func() error {
		c = calls.Load()
		receives = int64(count(t, b, `SELECT coalesce(sum(receive_count), 0) FROM jobqueue_messages`))
		return nil
	})
	if c != failures+o-1 || receives != c {
		t.Fatalf("while down: %d calls, %d receives, opened %d times; want %d calls (the trip, then one per probe) and as many receives",
			c, receives, o, failures+o-1)
	}
	healthy.Store(true)
	testinfra.Eventually(t, 20*time.Second, func() error {
		if n := count(t, b, `SELECT count(*) FROM jobqueue_messages`); n != 0 {
			return fmt.Errorf("%d jobs left", n)
		}
		return nil
	})
	if s := brk.State(); s != breaker.Closed {
		t.Fatalf("breaker %s after the queue drained", s)
	}
}

// TestBreakerGateProbeReachesEveryQueue: two queues behind one breaker
// (payments' charges and refunds share the provider's), one of them empty.
// The half-open probe must reach the queue with work: the worker of the
// empty queue yields the probe after finding nothing instead of taking it
// back at once. The psp-errors drill once saw the breaker stay half-open
// for 5 minutes with 163 charges waiting and none in flight.
func TestBreakerGateProbeReachesEveryQueue(t *testing.T) {
	t.Parallel()
	b := setup(t, jobqueue.Options{}, jobqueue.Queue{Name: "idle"}, jobqueue.Queue{Name: "work"})
	for i := range 5 {
		b.send(t, "work", jobqueue.SendInput{Body: fmt.Appendf(nil, "job %d", i)})
	}
	brk := breakertest.New(t, breaker.Config{Name: "shared", Failures: 1, CoolDown: 50 * time.Millisecond, MaxCoolDown: 50 * time.Millisecond})
	brk.Failure() // open; half-open after the cool-down
	// The idle worker takes the probe first: the work worker starts once
	// it has (a signal from its gate, not a sleep).
	probed := make(chan struct{})
	var once sync.Once
	idleGate := gateFunc(func(ctx context.Context) (jobqueue.Permit, error) {
		p, err := jobqueue.BreakerGate(brk.Breaker).Admit(ctx)
		if err == nil && p.Limit > 0 {
			once.Do(func() { close(probed) })
		}
		return p, err
	})
	idle := b.c.NewWorker(jobqueue.WorkerConfig{Queue: "idle", Concurrency: 2, Backoff: fastRetry, Gate: idleGate},
		func(context.Context, jobqueue.Message) error { return nil })
	work := b.c.NewWorker(jobqueue.WorkerConfig{Queue: "work", Concurrency: 2, Backoff: fastRetry, Gate: jobqueue.BreakerGate(brk.Breaker)},
		func(context.Context, jobqueue.Message) error {
			brk.Success()
			return nil
		})
	runWorker(t, idle)
	select {
	case <-probed:
	case <-time.After(10 * time.Second):
		t.Fatal("the idle worker never took the half-open probe")
	}
	runWorker(t, work)
	testinfra.Eventually(t, 15*time.Second, func() error {
		if n := count(t, b, `SELECT count(*) FROM jobqueue_messages`); n != 0 {
			return fmt.Errorf("%d jobs left, breaker %s", n, brk.State())
		}
		return nil
	})
}

// gateFunc is a jobqueue.Gate.
type gateFunc func(context.Context) (jobqueue.Permit, error)

func (f gateFunc) Admit(ctx context.Context) (jobqueue.Permit, error) { return f(ctx) }
