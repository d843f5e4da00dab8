// Package breakertest helps tests prove what happens while a circuit
// breaker (pkg/breaker) is open: it counts the breaker's openings and takes
// snapshots during which no half-open probe ran.
package breakertest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/breaker"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// Watch is a breaker whose openings are counted.
type Watch struct {
	*breaker.Breaker
	opened atomic.Int64
}

// New returns a breaker of cfg (its OnStateChange is taken) and its count.
func New(tb testing.TB, cfg breaker.Config) *Watch {
	tb.Helper()
	w := &Watch{}
	cfg.OnStateChange = func(_, to breaker.State) {
		if to == breaker.Open {
			w.opened.Add(1)
		}
	}
	b, err := breaker.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	w.Breaker = b
	return w
}

// Opened is how many times the breaker has opened.
func (w *Watch) Opened() int64 { return w.opened.Load() }

// WaitOpened waits until the breaker has opened at least n times.
func (w *Watch) WaitOpened(tb testing.TB, n int64, within time.Duration) {
	tb.Helper()
	testinfra.Eventually(tb, within, func() error {
		if w.Opened() < n {
			return errors.New("the breaker has not opened often enough yet")
		}
		return nil
	})
}

// Steady calls read (which records what the test counts: calls to the
// dependency, receives) until one call ran while the breaker stayed open
// and did not open again, so no probe ran during it; it returns how many
// times the breaker had opened then. Between two steady snapshots, each
// opening is one failed probe.
func (w *Watch) Steady(tb testing.TB, within time.Duration, read func() error) int64 {
	tb.Helper()
	var opened int64
	testinfra.Eventually(tb, within, func() error {
		opened = w.Opened()
		if w.State() != breaker.Open {
			return errors.New("the breaker is not open")
		}
		if err := read(); err != nil {
			return err
		}
		if w.State() != breaker.Open || w.Opened() != opened {
			return errors.New("a probe ran during the snapshot")
		}
		return nil
	})
	return opened
}

// Run runs run (a worker behind the breaker) until the test ends, then
// cancels it and reports its error.
func Run(tb testing.TB, run func(ctx context.Context) error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("worker: %v", err)
		}
	})
}
