// Package streamtest holds the expectations every engine of the stream
// contract (package stream's doc) must meet, written once and run by each
// engine's tests: pkg/stream against NATS JetStream, pkg/stream/kafka
// against kfake (ADR 0044). An engine's test builds an Engine (a fresh
// stream with the given partitions, a way to publish, run a group and read
// dead letters) and calls the functions here.
package streamtest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// Engine is one engine's test setup on a fresh stream of its own.
type Engine struct {
	// Publish publishes msgs in order and fails t on an error.
	Publish func(t *testing.T, msgs ...stream.Message)
	// Start runs one instance of group with h, a retry budget of
	// maxDeliver and short backoffs, until stop is called or the test ends.
	// stop returns once the instance has stopped.
	Start func(t *testing.T, group string, maxDeliver int, h stream.Handler) (stop func())
	// DeadLetters returns the headers of group's dead letters by event ID,
	// once there are n of them.
	DeadLetters func(t *testing.T, group string, n int) map[string]map[string]string
}

// Run runs every expectation of this package as a parallel subtest, each
// on a fresh Engine from newEngine (with 8 partitions).
func Run(t *testing.T, newEngine func(t *testing.T, partitions int) Engine) {
	for name, expect := range map[string]func(*testing.T, Engine){
		"PerKeyOrderAcrossInstances":           PerKeyOrderAcrossInstances,
		"PermanentGoesToDLQOnce":               PermanentGoesToDLQOnce,
		"ExhaustedBudgetGoesToDLQ":             ExhaustedBudgetGoesToDLQ,
		"InfrastructureErrorsDoNotSpendBudget": InfrastructureErrorsDoNotSpendBudget,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			expect(t, newEngine(t, 8))
		})
	}
}

// Versions returns versions from..to of each key, interleaved across keys,
// with ID "<key>-v<version>" and the version as payload.
func Versions(keys []string, from, to int) []stream.Message {
	var msgs []stream.Message
	for v := from; v <= to; v++ {
		for _, key := range keys {
			msgs = append(msgs, stream.Message{ID: fmt.Sprintf("%s-v%d", key, v), Key: key, Payload: []byte(strconv.Itoa(v))})
		}
	}
	return msgs
}

// Keys returns n keys "order-0" ...
func Keys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("order-%d", i)
	}
	return keys
}

// OrderCheck is an idempotent per-key store of versions (the payload of
// Versions' messages): the next version of a key is applied, one already
// applied is a duplicate (allowed: at-least-once), anything else breaks
// per-key order.
type OrderCheck struct {
	mu         sync.Mutex
	last       map[string]int
	applied    int
	duplicates int
	violations []string
}

// NewOrderCheck returns an empty store.
func NewOrderCheck() *OrderCheck { return &OrderCheck{last: map[string]int{}} }

// Apply applies d's version to its key.
func (o *OrderCheck) Apply(d stream.Delivery) {
	v, _ := strconv.Atoi(string(d.Payload))
	o.mu.Lock()
	defer o.mu.Unlock()
	switch last := o.last[d.Key]; {
	case v == last+1:
		o.last[d.Key] = v
		o.applied++
	case v <= last:
		o.duplicates++
	default:
		o.violations = append(o.violations, fmt.Sprintf("%s: version %d after %d", d.Key, v, last))
	}
}

// Done reports nil once every key has all n versions applied, and any
// order violation as an error.
func (o *OrderCheck) Done(keys []string, n int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.violations) > 0 {
		return fmt.Errorf("per-key order broken: %v", o.violations)
	}
	for _, key := range keys {
		if o.last[key] != n {
			return fmt.Errorf("key %s at version %d of %d (applied %d in all)", key, o.last[key], n, o.applied)
		}
	}
	return nil
}

// Counts returns how many versions were applied and how many deliveries
// were duplicates.
func (o *OrderCheck) Counts() (applied, duplicates int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.applied, o.duplicates
}

// PerKeyOrderAcrossInstances: two instances of one group, some handler
// calls failing once, one instance stopped in the middle; every key's
// versions reach the effect in order, and all of them.
func PerKeyOrderAcrossInstances(t *testing.T, e Engine) {
	const perKey = 30
	keys := Keys(20)
	check := NewOrderCheck()
	var calls atomic.Int64
	var failed sync.Map
	h := func(_ context.Context, d stream.Delivery) error {
		if n := calls.Add(1); n%7 == 0 {
			if _, again := failed.LoadOrStore(d.ID, true); !again {
				return errors.New("fails once")
			}
		}
		check.Apply(d)
		return nil
	}
	stopA := e.Start(t, "g", 5, h)
	e.Start(t, "g", 5, h)
	e.Publish(t, Versions(keys, 1, perKey/2)...)
	testinfra.Eventually(t, 30*time.Second, func() error {
		if c := calls.Load(); c < int64(len(keys)*perKey/4) {
			return fmt.Errorf("%d handler calls", c)
		}
		return nil
	})
	stopA()
	e.Publish(t, Versions(keys, perKey/2+1, perKey)...)
	testinfra.Eventually(t, 60*time.Second, func() error { return check.Done(keys, perKey) })
}

// PermanentGoesToDLQOnce: a Permanent error dead-letters the message after
// one call, with the reason headers, and the key's next message is handled.
func PermanentGoesToDLQOnce(t *testing.T, e Engine) {
	var poisonCalls, nextCalls atomic.Int64
	e.Start(t, "g", 5, func(_ context.Context, d stream.Delivery) error {
		if d.ID == "poison" {
			poisonCalls.Add(1)
			return stream.Permanent(errors.New("cannot decode"))
		}
		nextCalls.Add(1)
		return nil
	})
	e.Publish(t, stream.Message{ID: "poison", Key: "k"}, stream.Message{ID: "next", Key: "k"})
	testinfra.Eventually(t, 30*time.Second, func() error {
		if nextCalls.Load() == 0 {
			return errors.New("next not handled")
		}
		return nil
	})
	if n := poisonCalls.Load(); n != 1 {
		t.Errorf("poison handled %d times, want 1", n)
	}
	h := e.DeadLetters(t, "g", 1)["poison"]
	for name, want := range map[string]string{stream.HeaderDLQGroup: "g", stream.HeaderDLQErrorClass: "permanent",
		stream.HeaderDLQAttempts: "1", stream.HeaderDLQError: "permanent: cannot decode", stream.HeaderKey: "k"} {
		if h[name] != want {
			t.Errorf("dead letter header %s = %q, want %q", name, h[name], want)
		}
	}
}

// ExhaustedBudgetGoesToDLQ: an ordinary error is retried until MaxDeliver
// calls (NumDelivered 1..N), then dead-lettered as "exhausted".
func ExhaustedBudgetGoesToDLQ(t *testing.T, e Engine) {
	var mu sync.Mutex
	var attempts []int
	done := make(chan struct{})
	e.Start(t, "g", 3, func(_ context.Context, d stream.Delivery) error {
		if d.ID == "after" {
			close(done)
			return nil
		}
		mu.Lock()
		attempts = append(attempts, d.NumDelivered)
		mu.Unlock()
		return errors.New("downstream refused")
	})
	e.Publish(t, stream.Message{ID: "bad", Key: "k"}, stream.Message{ID: "after", Key: "k"})
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the message after the failing one was never handled")
	}
	mu.Lock()
	got := fmt.Sprint(attempts)
	mu.Unlock()
	if got != "[1 2 3]" {
		t.Errorf("NumDelivered of the calls %s, want [1 2 3]", got)
	}
	h := e.DeadLetters(t, "g", 1)["bad"]
	if h[stream.HeaderDLQErrorClass] != "exhausted" || h[stream.HeaderDLQAttempts] != "3" {
		t.Errorf("dead letter headers %v", h)
	}
}

// InfrastructureErrorsDoNotSpendBudget: a refused connection, many more
// times than the budget, keeps the message at NumDelivered 1 and holds its
// key's next message back; once the dependency is back both are handled
// and nothing is dead-lettered.
func InfrastructureErrorsDoNotSpendBudget(t *testing.T, e Engine) {
	var down atomic.Bool
	down.Store(true)
	var firstCalls, secondCalls, spent atomic.Int64
	e.Start(t, "g", 2, func(_ context.Context, d stream.Delivery) error {
		if d.NumDelivered != 1 {
			spent.Add(1)
		}
		if d.ID == "second" {
			secondCalls.Add(1)
			return nil
		}
		firstCalls.Add(1)
		if down.Load() {
			return fmt.Errorf("connect to database: %w", syscall.ECONNREFUSED)
		}
		return nil
	})
	e.Publish(t, stream.Message{ID: "first", Key: "k"}, stream.Message{ID: "second", Key: "k"})
	testinfra.Eventually(t, 30*time.Second, func() error {
		if n := firstCalls.Load(); n < 6 {
			return fmt.Errorf("first called %d times", n)
		}
		return nil
	})
	if secondCalls.Load() != 0 {
		t.Fatal("second handled while first waits on its dependency")
	}
	down.Store(false)
	testinfra.Eventually(t, 30*time.Second, func() error {
		if secondCalls.Load() == 0 {
			return errors.New("second not handled")
		}
		return nil
	})
	if spent.Load() != 0 {
		t.Errorf("%d calls with NumDelivered > 1: infrastructure errors spent budget", spent.Load())
	}
}
