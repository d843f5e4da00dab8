package target_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/chaos/target"
)

// fakeProcs records kills and starts; start calls onStart.
type fakeProcs struct {
	mu      sync.Mutex
	calls   []string
	onStart func()
}

// Kill and Start fail on an ended context, as ctl.sh run through
// exec.CommandContext does.
func (f *fakeProcs) Kill(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "kill "+name)
	return nil
}

func (f *fakeProcs) Start(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	f.calls = append(f.calls, "start "+name)
	f.mu.Unlock()
	f.onStart()
	return nil
}

// hungToxiproxy serves a Toxiproxy API with one proxy, "catalog", whose
// toxic "t" cannot be removed (Shopify/toxiproxy#558) until the returned
// procs "restart" it; after that a removal answers.
func hungToxiproxy(t *testing.T) (*target.System, *fakeProcs, func(toxic bool)) {
	t.Helper()
	var (
		mu      sync.Mutex
		hung    = true
		toxic   = true
		release = make(chan struct{})
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h, x := hung, toxic
		mu.Unlock()
		switch {
		case r.Method == http.MethodDelete && h:
			select { // wedged until the "restart" (or the client gives up)
			case <-release:
			case <-r.Context().Done():
			}
			w.WriteHeader(http.StatusServiceUnavailable)
		case r.Method == http.MethodDelete:
			mu.Lock()
			toxic = false
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/proxies/catalog"):
			toxics := `[]`
			if x {
				toxics = `[{"name":"t","type":"latency","stream":"downstream"}]`
			}
			_, _ = w.Write([]byte(`{"name":"catalog","enabled":true,"toxics":` + toxics + `}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	procs := &fakeProcs{onStart: func() {
		mu.Lock()
		hung, toxic = false, false // a restarted server has no toxics
		mu.Unlock()
		close(release)
	}}
	setToxic := func(v bool) {
		mu.Lock()
		toxic = v
		mu.Unlock()
	}
	return &target.System{Endpoints: target.Endpoints{Toxiproxy: srv.URL}, Procs: procs}, procs, setToxic
}

// TestClearToxicsRestartsAHungServer: a removal that does not answer
// (Shopify/toxiproxy#558) restarts the Toxiproxy server, which comes back
// without the toxic; a removal that answers restarts nothing.
func TestClearToxicsRestartsAHungServer(t *testing.T) {
	t.Parallel()
	sys, procs, setToxic := hungToxiproxy(t)
	restarted, err := sys.ClearToxics(t.Context(), 50*time.Millisecond, map[string][]string{"catalog": {"t"}})
	if err != nil || !restarted {
		t.Fatalf("ClearToxics: restarted %t, err %v; want a restart", restarted, err)
	}
	if got := strings.Join(procs.calls, ", "); got != "kill toxiproxy, start toxiproxy" {
		t.Errorf("process calls %q, want kill then start of toxiproxy", got)
	}
	setToxic(true)
	restarted, err = sys.ClearToxics(t.Context(), time.Second, map[string][]string{"catalog": {"t"}})
	if err != nil || restarted || len(procs.calls) != 2 {
		t.Errorf("a removal that answers: restarted %t, err %v, calls %v; want no restart", restarted, err, procs.calls)
	}
}

// TestClearToxicsRestartOutlivesTheCallersDeadline: when the caller's
// context ends while the removals hang (a heal whose budget went to
// waiting on a wedged server), the restart still runs, within its own
// budget, and leaves no toxic behind.
func TestClearToxicsRestartOutlivesTheCallersDeadline(t *testing.T) {
	t.Parallel()
	sys, procs, _ := hungToxiproxy(t)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	restarted, err := sys.ClearToxics(ctx, time.Minute, map[string][]string{"catalog": {"t"}})
	if err != nil || !restarted {
		t.Fatalf("ClearToxics after the caller's deadline: restarted %t, err %v; want a clean restart", restarted, err)
	}
	if got := strings.Join(procs.calls, ", "); got != "kill toxiproxy, start toxiproxy" {
		t.Errorf("process calls %q, want kill then start of toxiproxy", got)
	}
}

// TestReachableRefusesATopologyWithoutToxiproxy: a topology started with
// SHOPFLOOR_TOXIPROXY=off has no API to inject faults through; the drills
// are refused with the reason, not run against it.
func TestReachableRefusesATopologyWithoutToxiproxy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/proxies" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"nats": {"name": "nats", "enabled": true}}`))
	}))
	up := &target.Toxiproxy{URL: srv.URL, HTTP: srv.Client()}
	if err := up.Reachable(ctx); err != nil {
		t.Fatalf("Reachable with Toxiproxy up: %v", err)
	}
	srv.Close()
	err := up.Reachable(ctx)
	if err == nil || !strings.Contains(err.Error(), "SHOPFLOOR_TOXIPROXY") {
		t.Fatalf("Reachable with nothing listening = %v, want the reason and the setting", err)
	}
}
