// Package lifecycle starts a service's dependencies and roles and stops them
// in order.
//
// Contract:
//   - Connect opens a dependency (database, broker, cache) and retries with
//     capped, jittered backoff until it succeeds or the context ends. Every
//     failure is logged once per attempt and kept in a Dependency, whose
//     Check method plugs into /readyz: while PostgreSQL is down at start, the
//     process stays up, /readyz answers 503 naming the dependency and the
//     last error, and the service becomes ready on its own when the
//     dependency returns. The process never crash-loops silently.
//   - Group runs roles (HTTP server, relay, consumers, workers) concurrently.
//     When the context ends or any role returns an error, roles are stopped
//     one at a time in the reverse order they were added, each given the
//     time to finish what it holds (the HTTP server drains in-flight requests
//     before the relay that publishes their events stops). Add roles in
//     start-up order: dependencies' users first, entry points (HTTP) last.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/pkg/backoff"
)

// Dependency records the state of one external dependency for readiness.
type Dependency struct {
	name string
	mu   sync.Mutex
	err  error
	up   bool
}

// NewDependency returns a dependency that is not ready until MarkUp.
func NewDependency(name string) *Dependency {
	return &Dependency{name: name, err: errors.New("not connected yet")}
}

// Name is the name shown in /readyz.
func (d *Dependency) Name() string { return d.name }

// MarkUp records a successful connection.
func (d *Dependency) MarkUp() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.up, d.err = true, nil
}

// MarkDown records a failure.
func (d *Dependency) MarkDown(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.up, d.err = false, err
}

// Check returns nil once the dependency is up, else the last error. Its
// signature fits httpkit.Health.AddCheck.
func (d *Dependency) Check(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.up {
		return nil
	}
	return d.err
}

// DefaultRetry is the start-up retry policy: 200ms growing to 10s.
var DefaultRetry = backoff.Policy{Initial: 200 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2}

// Connect calls open until it succeeds, sleeping policy.Delay(attempt)
// between attempts, and records each outcome in dep. It returns ctx.Err()
// when the context ends first.
func Connect[T any](ctx context.Context, log *slog.Logger, dep *Dependency, policy backoff.Policy, open func(context.Context) (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := open(ctx)
		if err == nil {
			dep.MarkUp()
			if attempt > 1 {
				log.InfoContext(ctx, "dependency connected", "dependency", dep.name, "attempts", attempt)
			}
			return v, nil
		}
		dep.MarkDown(err)
		delay := policy.Delay(attempt)
		log.WarnContext(ctx, "dependency unavailable, retrying", "dependency", dep.name, "attempt", attempt, "retry_in", delay.String(), "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			var zero T
			return zero, fmt.Errorf("connect %s: %w (last error: %w)", dep.name, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Role is a long-running part of a service. Run blocks until ctx ends (then
// it stops cleanly and returns nil) or it fails.
type Role struct {
	Name string
	Run  func(ctx context.Context) error
}

// Group runs roles and stops them in reverse order.
type Group struct {
	log   *slog.Logger
	roles []Role
}

// NewGroup returns an empty group that logs to log.
func NewGroup(log *slog.Logger) *Group { return &Group{log: log} }

// Add appends a role; roles start in the order added and stop in reverse.
func (g *Group) Add(name string, run func(ctx context.Context) error) {
	g.roles = append(g.roles, Role{Name: name, Run: run})
}

// Run starts every role and blocks until all have returned. It returns the
// first role error (joined with any others), or nil when ctx ended and every
// role stopped cleanly.
func (g *Group) Run(ctx context.Context) error {
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(g.roles))
	cancels := make([]context.CancelFunc, len(g.roles))
	done := make([]chan struct{}, len(g.roles))
	for i, r := range g.roles {
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		cancels[i], done[i] = cancel, make(chan struct{})
		go func() {
			defer close(done[i])
			err := r.Run(rctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("role %s: %w", r.Name, err)
			} else {
				err = nil
			}
			results <- result{i: i, err: err}
		}()
		g.log.InfoContext(ctx, "role started", "role", r.Name)
	}
	var errs []error
	select {
	case <-ctx.Done():
		g.log.InfoContext(ctx, "stopping", "reason", context.Cause(ctx).Error())
	case res := <-results:
		if res.err != nil {
			errs = append(errs, res.err)
			g.log.ErrorContext(ctx, "role failed, stopping the others", "role", g.roles[res.i].Name, "err", res.err)
		} else {
			g.log.InfoContext(ctx, "role returned, stopping the others", "role", g.roles[res.i].Name)
		}
	}
	for i := len(g.roles) - 1; i >= 0; i-- {
		cancels[i]()
		<-done[i]
		g.log.InfoContext(ctx, "role stopped", "role", g.roles[i].Name)
	}
	close(results)
	for res := range results {
		if res.err != nil && !containsErr(errs, res.err) {
			errs = append(errs, res.err)
		}
	}
	return errors.Join(errs...)
}

func containsErr(errs []error, err error) bool {
	for _, e := range errs {
		if e == err { //nolint:errorlint // identity, not matching
			return true
		}
	}
	return false
}
