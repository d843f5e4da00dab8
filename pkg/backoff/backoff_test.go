package backoff_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/backoff"
)

func TestCeilingDoublesFromInitialUpToMax(t *testing.T) {
	t.Parallel()
	p := backoff.Policy{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{0, 100 * time.Millisecond},
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second},
		{1000, time.Second},
	}
	for _, tt := range tests {
		if got := p.Ceiling(tt.attempt); got != tt.want {
			t.Errorf("Ceiling(%d) = %v, want %v", tt.attempt, got, tt.want)
		}
	}
	if got := (backoff.Policy{}).Ceiling(100); got != 30*time.Second {
		t.Errorf("zero policy cap = %v, want 30s", got)
	}
}

func TestDelayStaysInWindowAndSpreads(t *testing.T) {
	t.Parallel()
	p := backoff.Policy{Initial: time.Second, Max: time.Second}
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := p.Delay(3)
		if d < 0 || d > time.Second {
			t.Fatalf("Delay = %v, outside [0, 1s]", d)
		}
		seen[d/(100*time.Millisecond)] = true
	}
	// Full jitter: 1000 draws land in (nearly) every tenth of the window.
	if len(seen) < 9 {
		t.Fatalf("delays fell in only %d of 10 buckets: not jittered", len(seen))
	}
}

func TestSleepStopsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := backoff.Policy{Initial: time.Hour, Max: time.Hour}
	if err := p.Sleep(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep = %v, want context.Canceled", err)
	}
}
