package httpkit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CheckTimeout is how long Readyz waits for each readiness check.
const CheckTimeout = 2 * time.Second

// Health answers the liveness (/healthz) and readiness (/readyz) probes.
// Liveness means "the process runs and serves HTTP"; it never depends on
// other systems, so an orchestrator does not restart a healthy process
// because its database is down. Readiness means "send me traffic": every
// check passes and the server is not draining.
//
// The zero value is not usable; call NewHealth. Methods are safe for
// concurrent use.
type Health struct {
	mu       sync.RWMutex
	names    []string
	checks   map[string]func(ctx context.Context) error
	draining atomic.Bool
	timeout  time.Duration
}

// NewHealth returns a Health with no checks: ready until SetDraining.
func NewHealth() *Health {
	return &Health{checks: map[string]func(context.Context) error{}, timeout: CheckTimeout}
}

// AddCheck adds a readiness dependency. check returns nil when the
// dependency is usable; it is given a context that ends after
// CheckTimeout and should return soon after. A check that ignores its
// context is abandoned (reported as timed out) and left to finish in the
// background. Adding a name again replaces the earlier check. An empty
// name or a nil check panics: both are wiring mistakes.
func (h *Health) AddCheck(name string, check func(ctx context.Context) error) {
	if name == "" || check == nil {
		panic("httpkit: Health.AddCheck needs a name and a check")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.checks[name]; !ok {
		h.names = append(h.names, name)
	}
	h.checks[name] = check
}

// SetDraining makes Readyz fail from now on, without running the checks,
// so load balancers stop sending traffic while in-flight requests finish.
// Serve calls it when its context ends. It cannot be undone.
func (h *Health) SetDraining() { h.draining.Store(true) }

// Draining reports whether SetDraining has been called.
func (h *Health) Draining() bool { return h.draining.Load() }

// Livez is the /healthz handler: 200 {"status":"ok"} for as long as the
// process serves HTTP, draining included.
func (h *Health) Livez() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// readyBody is the /readyz answer when ready.
type readyBody struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// Readyz is the /readyz handler of an admin listener. It runs all checks
// concurrently, each with CheckTimeout, and answers 200
// {"status":"ready","checks":{name:"ok"}} when all pass. Otherwise it
// answers 503 application/problem+json with class "not-ready", whose
// detail names the failing checks and whose errors list each one
// ({"field": name, "message": its error}), sorted by name. While draining
// it answers 503 "not-ready" at once.
//
// Check errors are shown verbatim: they name hosts, ports and versions.
// Serve it only where operators reach (NewAdminMux); a public listener
// serves PublicReadyz.
func (h *Health) Readyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.Draining() {
			WriteProblem(w, NewProblem(http.StatusServiceUnavailable, "not-ready", "the server is shutting down"))
			return
		}
		failed := h.run(r.Context())
		if len(failed) == 0 {
			h.mu.RLock()
			checks := make(map[string]string, len(h.names))
			for _, name := range h.names {
				checks[name] = "ok"
			}
			h.mu.RUnlock()
			writeJSON(w, http.StatusOK, readyBody{Status: "ready", Checks: checks})
			return
		}
		names := make([]string, len(failed))
		for i, f := range failed {
			names[i] = f.Field
		}
		p := NewProblem(http.StatusServiceUnavailable, "not-ready", "failing checks: "+strings.Join(names, ", "))
		p.Errors = failed
		WriteProblem(w, p)
	})
}

// PublicReadyz is the /readyz handler of a public listener: the verdict of
// Readyz (the same checks, run the same way, draining included) without
// its reasons. It answers 200 {"status":"ready"}, or 503
// application/problem+json "not-ready" with a fixed detail that names no
// dependency and shows no error, so a load balancer in front of a public
// port can still probe it. The details are on the admin listener's Readyz.
func (h *Health) PublicReadyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.Draining() || len(h.run(r.Context())) > 0 {
			WriteProblem(w, NewProblem(http.StatusServiceUnavailable, "not-ready", "not ready to serve traffic"))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

type checkResult struct {
	name string
	err  error
}

// run runs every check concurrently and returns the failures sorted by
// name.
func (h *Health) run(ctx context.Context) []FieldError {
	h.mu.RLock()
	names := append([]string(nil), h.names...)
	fns := make([]func(context.Context) error, len(names))
	for i, name := range names {
		fns[i] = h.checks[name]
	}
	h.mu.RUnlock()

	// Buffered so that an abandoned check's goroutine can still deliver
	// its result and exit.
	results := make(chan checkResult, len(names))
	for i, name := range names {
		go func() {
			cctx, cancel := context.WithTimeout(ctx, h.timeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- safeCheck(cctx, fns[i]) }()
			select {
			case err := <-done:
				results <- checkResult{name, err}
			case <-cctx.Done():
				results <- checkResult{name, fmt.Errorf("no answer: %w", cctx.Err())}
			}
		}()
	}
	var failed []FieldError
	for range names {
		res := <-results
		if res.err != nil {
			failed = append(failed, FieldError{Field: res.name, Message: res.err.Error()})
		}
	}
	sort.Slice(failed, func(i, j int) bool { return failed[i].Field < failed[j].Field })
	return failed
}

// safeCheck runs check, turning a panic into a failure.
func safeCheck(ctx context.Context, check func(context.Context) error) (err error) {
	defer func() {
		if rec := recover(); rec != nil {
			err = fmt.Errorf("check panicked: %v", rec)
		}
	}()
	return check(ctx)
}

// writeJSON writes v as a JSON body with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteProblem(w, internalProblem())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
