// Package backoff computes retry delays: capped exponential backoff with full
// jitter, as described in the AWS Architecture Blog post "Exponential Backoff
// And Jitter". Full jitter spreads retries of many clients that failed at the
// same moment (a broker restart, a database failover) over the whole window,
// so they do not return as a synchronised herd.
//
// The delay for attempt n (starting at 1) is a uniformly random duration in
// [0, min(Max, Initial * Multiplier^(n-1))]. The zero Policy uses the
// defaults (100ms initial, 30s max, multiplier 2).
package backoff

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// Policy is a capped exponential backoff with full jitter.
type Policy struct {
	// Initial is the cap of the first delay. Default 100ms.
	Initial time.Duration
	// Max caps every delay. Default 30s.
	Max time.Duration
	// Multiplier grows the cap per attempt. Default 2; values below 1 are
	// treated as 1 (constant cap).
	Multiplier float64
}

// Ceiling is the largest delay attempt n can get (the jitter window).
func (p Policy) Ceiling(attempt int) time.Duration {
	initial, maxDelay, mult := p.Initial, p.Max, p.Multiplier
	if initial <= 0 {
		initial = 100 * time.Millisecond
	}
	if maxDelay <= 0 {
		maxDelay = 30 * time.Second
	}
	if mult == 0 {
		mult = 2
	}
	mult = max(mult, 1)
	if attempt < 1 {
		attempt = 1
	}
	c := float64(initial) * math.Pow(mult, float64(attempt-1))
	if c > float64(maxDelay) || math.IsInf(c, 0) || math.IsNaN(c) {
		return maxDelay
	}
	return time.Duration(c)
}

// Delay returns a random delay in [0, Ceiling(attempt)].
func (p Policy) Delay(attempt int) time.Duration {
	c := p.Ceiling(attempt)
	// Jitter is not a security decision; a fast non-crypto source is right.
	return time.Duration(rand.Int64N(int64(c) + 1)) //nolint:gosec // G404: jitter, not security
}

// Sleep waits Delay(attempt), or until ctx ends; it returns ctx.Err() then.
func (p Policy) Sleep(ctx context.Context, attempt int) error {
	t := time.NewTimer(p.Delay(attempt))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
