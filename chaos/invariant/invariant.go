// Package invariant checks, from outside, the invariants of DESIGN.md
// that a set of accepted orders must satisfy once the system has
// converged: it is what a chaos drill prints and what the end-to-end test
// asserts.
//
// Given the orders the system accepted (201), Check waits (polling, up to
// a deadline) until every order is final and every derived view has caught
// up, then returns one Result per invariant:
//
//   - no accepted order is lost: every one exists (a strong read) and
//     reaches a final state (paid, payment_failed or cancelled), the one
//     its card implies (invariant 1);
//   - exactly one successful provider charge per paid order and none kept
//     for a failed one, counted by the provider simulator per order
//     reference (invariant 2);
//   - exactly one e-mail per (order, kind) in the mail catcher, counting
//     every delivery: a resend with the same Message-ID is a second
//     e-mail in the inbox (invariant 3);
//   - search shows every order with its final status and version
//     (invariant 5, projections converge);
//   - every stream consumer lag and every outbox backlog drains to 0 and
//     the job queues empty (from each role's /metrics), and, when a
//     Baseline is given, nothing was dead-lettered meanwhile (invariant 7:
//     healthy messages never end in a DLQ).
//
// What it does not see: per-order event order (invariant 4) is only
// visible in the end state (search holds each order's latest version);
// invariant 6 (cache) is checked by the redis-down drill itself.
//
// A check that can still converge (an order still pending, an e-mail not
// yet sent, a lag above 0) is waited for; one that cannot (a double
// charge, a lost order, a second e-mail) is a violation at once, and the
// wait goes on only for the others. The counts come only from the public
// and admin APIs (read as the operator, target.Operator, whose token may
// name any customer), /metrics and NATS monitoring; no service table is
// read.
package invariant

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/chaos/target"
)

// Order is an order the system accepted, with what it must become.
type Order struct {
	ID         string
	CustomerID string
	Email      string
	// Declined: paid with a declining test card, so it must end
	// payment_failed; otherwise it must end paid.
	Declined bool
}

// Result is the verdict on one invariant.
type Result struct {
	// Invariant names it, with its number in DESIGN.md ("#2 …").
	Invariant string
	Held      bool
	// Evidence gives the counts behind the verdict.
	Evidence string
	// Counts are the numbers behind Evidence where the evaluator has
	// them ("paid": 1140, "charged_once": 1140, …), for the JSON report;
	// nil when the row has none.
	Counts map[string]int `json:",omitempty"`
}

// Report is the outcome of Check.
type Report struct {
	Results []Result
	// Converged is false when the deadline passed with checks still
	// pending (they are reported as violated).
	Converged bool
	// Took is the time from the start of Check to convergence (or to the
	// deadline).
	Took time.Duration
}

// Violated reports whether any invariant did not hold.
func (r Report) Violated() bool { return AnyViolated(r.Results) }

// AnyViolated reports whether any result did not hold.
func AnyViolated(rs []Result) bool {
	for _, x := range rs {
		if !x.Held {
			return true
		}
	}
	return false
}

// Options configure Check.
type Options struct {
	// Deadline bounds the wait for convergence. Default 3m.
	Deadline time.Duration
	// Poll is the pause between observations. Default 2s.
	Poll time.Duration
	// AllowPaymentFailed accepts payment_failed for an order paid with a
	// good card (provider faults: retries exhausted, the job in the
	// DLQ). The charge invariants still hold it to no kept charge.
	AllowPaymentFailed bool
	// Baseline, when set, is the state before the load: dead-letter depths
	// are compared with it.
	Baseline *Baseline
	// Progress, when set, receives a one-line summary of what is still
	// pending, at most every 10s.
	Progress func(string)
}

func (o *Options) defaults() {
	if o.Deadline <= 0 {
		o.Deadline = 3 * time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = 2 * time.Second
	}
}

// Checker observes a running system.
type Checker struct {
	Sys *target.System
}

// Baseline is the dead-letter depth per queue or stream before a drill.
type Baseline struct {
	DLQ map[string]float64
}

// Baseline records the dead-letter depths now.
func (c *Checker) Baseline(ctx context.Context) (Baseline, error) {
	o := &observation{}
	c.observeMetrics(ctx, o)
	if o.js == nil {
		return Baseline{}, fmt.Errorf("baseline: %w", o.jsErr)
	}
	return Baseline{DLQ: deadLetters(o)}, nil
}

// Check waits until the system has converged for orders, or until the
// deadline, and returns the verdicts. It returns an error only when ctx
// ends first.
func (c *Checker) Check(ctx context.Context, orders []Order, opts Options) (Report, error) {
	opts.defaults()
	start := time.Now()
	deadline := start.Add(opts.Deadline)
	var lastProgress time.Time
	for {
		expired := time.Now().After(deadline)
		o := c.observe(ctx, orders, false)
		if ordersDone(orders, o) || expired {
			o = c.observe(ctx, orders, true)
		}
		if err := ctx.Err(); err != nil {
			return Report{}, fmt.Errorf("check: %w", err)
		}
		checks := evaluate(orders, o, opts)
		pending := pendingOf(checks)
		if len(pending) == 0 || expired {
			rep := Report{Converged: len(pending) == 0, Took: time.Since(start)}
			for _, ch := range checks {
				r := ch.Result
				if ch.pending {
					r.Held = false
					r.Evidence = fmt.Sprintf("not within %s: %s", opts.Deadline, r.Evidence)
				}
				rep.Results = append(rep.Results, r)
			}
			return rep, nil
		}
		if opts.Progress != nil && time.Since(lastProgress) >= 10*time.Second {
			lastProgress = time.Now()
			opts.Progress("waiting: " + strings.Join(pending, "; "))
		}
		t := time.NewTimer(opts.Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return Report{}, fmt.Errorf("check: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// check is a Result that may still change.
type check struct {
	Result
	pending bool
}

// pendingOf lists the pending checks for a progress line: the first
// 100 characters of each distinct evidence.
func pendingOf(cs []check) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range cs {
		if !c.pending || seen[c.Evidence] {
			continue
		}
		seen[c.Evidence] = true
		e := c.Evidence
		if r := []rune(e); len(r) > 100 {
			e = string(r[:100]) + "…"
		}
		out = append(out, e)
	}
	return out
}
