package breaker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shopfloor/shopfloor/pkg/breaker"
)

func newBreaker(t *testing.T, cfg breaker.Config) *breaker.Breaker {
	t.Helper()
	b, err := breaker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wait runs b.Wait with a deadline, so a broken breaker fails the test
// instead of hanging it.
func wait(t *testing.T, b *breaker.Breaker, within time.Duration) (breaker.Ticket, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return b.Wait(ctx)
}

func TestOpensAfterConsecutiveFailuresOnly(t *testing.T) {
	t.Parallel()
	b := newBreaker(t, breaker.Config{Name: "dep", Failures: 3, CoolDown: time.Hour})
	b.Failure()
	b.Failure()
	b.Success() // a success in between resets the count
	b.Failure()
	b.Failure()
	if s := b.State(); s != breaker.Closed {
		t.Fatalf("after 2 failures in a row: %s", s)
	}
	tk, err := wait(t, b, time.Second)
	if err != nil || tk.Probe {
		t.Fatalf("closed: Wait = %+v, %v", tk, err)
	}
	b.Failure()
	if s := b.State(); s != breaker.Open {
		t.Fatalf("after 3 failures in a row: %s", s)
	}
	if err := b.Allow(); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("Allow while open = %v", err)
	}
	if tk.Revoked.Err() == nil {
		t.Fatal("a ticket taken while closed is not revoked when the breaker opens")
	}
	if _, err := wait(t, b, 50*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait while open = %v, want it to block", err)
	}
}

func TestHalfOpenLetsOneProbeThrough(t *testing.T) {
	t.Parallel()
	var changes []string
	reg := prometheus.NewPedanticRegistry()
	b := newBreaker(t, breaker.Config{Name: "dep", Failures: 1, CoolDown: 200 * time.Millisecond, MaxCoolDown: time.Hour, Registerer: reg,
		OnStateChange: func(from, to breaker.State) { changes = append(changes, from.String()+">"+to.String()) }})
	b.Failure()
	probe, err := wait(t, b, 5*time.Second) // blocks for the cool-down
	if err != nil || !probe.Probe || probe.Revoked.Err() != nil {
		t.Fatalf("after the cool-down: Wait = %+v, %v; want the probe", probe, err)
	}
	if _, err := wait(t, b, 50*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second Wait while the probe runs = %v, want it to block", err)
	}
	if err := b.Allow(); err != nil {
		t.Fatalf("the probe's own call: Allow = %v", err)
	}
	// A probe that needed no call gives its turn back.
	probe.Release()
	again, err := wait(t, b, time.Second)
	if err != nil || !again.Probe {
		t.Fatalf("after Release: %+v, %v", again, err)
	}
	// A failed probe reopens (for twice the cool-down).
	b.Failure()
	if s := b.State(); s != breaker.Open || again.Revoked.Err() == nil {
		t.Fatalf("after a failed probe: %s, revoked %v", s, again.Revoked.Err())
	}
	b.Success() // a straggler's success: the dependency answers
	if s := b.State(); s != breaker.Closed {
		t.Fatalf("after a success: %s", s)
	}
	if got := strings.Join(changes, " "); got != "closed>open open>half-open half-open>open open>closed" {
		t.Fatalf("transitions %s", got)
	}
	exp := `# HELP breaker_state Circuit breaker state: 0 closed, 1 half-open, 2 open.
# TYPE breaker_state gauge
breaker_state{name="dep"} 0
# HELP breaker_transitions_total Circuit breaker state changes, by new state.
# TYPE breaker_transitions_total counter
breaker_transitions_total{name="dep",to="closed"} 1
breaker_transitions_total{name="dep",to="half-open"} 1
breaker_transitions_total{name="dep",to="open"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(exp)); err != nil {
		t.Fatal(err)
	}
}

func TestCoolDownBacksOff(t *testing.T) {
	t.Parallel()
	b := newBreaker(t, breaker.Config{Name: "dep", Failures: 1, CoolDown: 30 * time.Millisecond, MaxCoolDown: 10 * time.Second})
	b.Failure()
	start := time.Now()
	if _, err := wait(t, b, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	b.Failure() // the probe failed: 60ms now, then 120ms
	b2 := time.Now()
	if _, err := wait(t, b, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	b.Failure()
	b3 := time.Now()
	if _, err := wait(t, b, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Lower bounds only: a slow machine waits longer, never shorter.
	if first < 30*time.Millisecond || b3.Sub(b2) < 60*time.Millisecond || time.Since(b3) < 120*time.Millisecond {
		t.Fatalf("cool-downs %s, %s, %s; want at least 30ms, 60ms, 120ms", first, b3.Sub(b2), time.Since(b3))
	}
}

func TestNeedsAName(t *testing.T) {
	t.Parallel()
	if _, err := breaker.New(breaker.Config{}); err == nil {
		t.Fatal("a breaker without a name")
	}
}
