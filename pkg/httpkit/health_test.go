package httpkit_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

func TestReadyzIsReadyOnlyWhenEveryCheckPasses(t *testing.T) {
	t.Parallel()
	ok := func(context.Context) error { return nil }
	tests := []struct {
		name       string
		checks     map[string]func(context.Context) error
		wantStatus int
		wantBody   string               // exact JSON when ready
		wantFailed []httpkit.FieldError // when not ready
	}{
		{name: "no checks", wantStatus: 200, wantBody: `{"status":"ready","checks":{}}`},
		{name: "all ok", checks: map[string]func(context.Context) error{"postgres": ok, "nats": ok}, wantStatus: 200,
			wantBody: `{"status":"ready","checks":{"nats":"ok","postgres":"ok"}}`},
		{name: "one failing", checks: map[string]func(context.Context) error{
			"postgres": func(context.Context) error { return errors.New("dial tcp 10.0.0.5:5432: connection refused") },
			"nats":     ok,
		}, wantStatus: 503, wantFailed: []httpkit.FieldError{{Field: "postgres", Message: "dial tcp 10.0.0.5:5432: connection refused"}}},
		{name: "two failing, sorted", checks: map[string]func(context.Context) error{
			"redis":    func(context.Context) error { return errors.New("NOAUTH") },
			"postgres": func(context.Context) error { return errors.New("too many clients") },
		}, wantStatus: 503, wantFailed: []httpkit.FieldError{{Field: "postgres", Message: "too many clients"}, {Field: "redis", Message: "NOAUTH"}}},
		{name: "panicking check", checks: map[string]func(context.Context) error{
			"cache": func(context.Context) error { panic("nil map") },
		}, wantStatus: 503, wantFailed: []httpkit.FieldError{{Field: "cache", Message: "check panicked: nil map"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := httpkit.NewHealth()
			for name, c := range tt.checks {
				h.AddCheck(name, c)
			}
			ts := newServer(t, httpkit.NewMux(h, nil))
			resp := do(t, ts, http.MethodGet, "/readyz", "", nil)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.wantStatus, resp.Body)
			}
			if tt.wantStatus == http.StatusOK {
				if got := strings.TrimSpace(string(resp.Body)); got != tt.wantBody {
					t.Fatalf("body %s, want %s", got, tt.wantBody)
				}
				return
			}
			p := parseProblem(t, resp.Header, resp.Body)
			if p.Class() != "not-ready" {
				t.Fatalf("class %q", p.Class())
			}
			if len(p.Errors) != len(tt.wantFailed) {
				t.Fatalf("errors %+v, want %+v", p.Errors, tt.wantFailed)
			}
			for i, want := range tt.wantFailed {
				if p.Errors[i] != want {
					t.Errorf("errors[%d] = %+v, want %+v", i, p.Errors[i], want)
				}
				if !strings.Contains(p.Detail, want.Field) {
					t.Errorf("detail %q does not name %q", p.Detail, want.Field)
				}
			}
		})
	}
}

// Each check waits for the other to start: run one after the other, they
// would both time out.
func TestReadyzRunsChecksConcurrently(t *testing.T) {
	t.Parallel()
	aStarted, bStarted := make(chan struct{}), make(chan struct{})
	wait := func(mine, other chan struct{}) func(context.Context) error {
		return func(ctx context.Context) error {
			close(mine)
			select {
			case <-other:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	h := httpkit.NewHealth()
	h.AddCheck("a", wait(aStarted, bStarted))
	h.AddCheck("b", wait(bStarted, aStarted))
	resp := do(t, newServer(t, h.Readyz()), http.MethodGet, "/", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d; body %s", resp.StatusCode, resp.Body)
	}
}

// A check that ignores its context is reported as failing after
// CheckTimeout; the answer does not wait for it.
func TestReadyzCheckTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h := httpkit.NewHealth()
	h.AddCheck("stuck", func(context.Context) error {
		<-release
		return nil
	})
	h.AddCheck("fine", func(context.Context) error { return nil })
	ts := newServer(t, h.Readyz())
	resp := do(t, ts, http.MethodGet, "/", "", nil)
	close(release)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d; body %s", resp.StatusCode, resp.Body)
	}
	p := parseProblem(t, resp.Header, resp.Body)
	if len(p.Errors) != 1 || p.Errors[0].Field != "stuck" || !strings.Contains(p.Errors[0].Message, "deadline exceeded") {
		t.Fatalf("errors %+v", p.Errors)
	}
}

func TestSetDrainingMakesReadyzAnswer503(t *testing.T) {
	t.Parallel()
	h := httpkit.NewHealth()
	h.AddCheck("postgres", func(context.Context) error { return nil })
	ts := newServer(t, httpkit.NewMux(h, nil))

	if resp := do(t, ts, http.MethodGet, "/readyz", "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("before draining: status %d; body %s", resp.StatusCode, resp.Body)
	}
	h.SetDraining()
	if !h.Draining() {
		t.Fatal("Draining() = false after SetDraining")
	}
	resp := do(t, ts, http.MethodGet, "/readyz", "", nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("draining: status %d; body %s", resp.StatusCode, resp.Body)
	}
	if p := parseProblem(t, resp.Header, resp.Body); p.Class() != "not-ready" || !strings.Contains(p.Detail, "shutting down") {
		t.Fatalf("problem %+v", p)
	}
	// Liveness is unaffected: the process still runs.
	resp = do(t, ts, http.MethodGet, "/healthz", "", nil)
	var body map[string]string
	if err := json.Unmarshal(resp.Body, &body); err != nil || resp.StatusCode != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("healthz while draining: %d %s (%v)", resp.StatusCode, resp.Body, err)
	}
}

func TestAddCheckReplacesAndPanics(t *testing.T) {
	t.Parallel()
	h := httpkit.NewHealth()
	h.AddCheck("db", func(context.Context) error { return errors.New("down") })
	h.AddCheck("db", func(context.Context) error { return nil })
	resp := do(t, newServer(t, h.Readyz()), http.MethodGet, "/", "", nil)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(resp.Body)) != `{"status":"ready","checks":{"db":"ok"}}` {
		t.Fatalf("replaced check: %d %s", resp.StatusCode, resp.Body)
	}

	tests := []struct {
		name  string
		check string
		fn    func(context.Context) error
	}{
		{"empty name", "", func(context.Context) error { return nil }},
		{"nil check", "db", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			httpkit.NewHealth().AddCheck(tt.check, tt.fn)
		})
	}
}
