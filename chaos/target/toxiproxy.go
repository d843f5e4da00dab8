package target

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// Toxiproxy is a client of Toxiproxy's HTTP API, which sits between every
// service and every dependency (proxies postgres-<service>, redis, nats, catalog,
// psp, smtp in deploy/local/run.sh and deploy/compose/toxiproxy).
type Toxiproxy struct {
	URL  string
	HTTP *http.Client
}

// ToxiproxyClient returns the client of s's Toxiproxy API.
func (s *System) ToxiproxyClient() *Toxiproxy {
	return &Toxiproxy{URL: s.Toxiproxy, HTTP: s.Client()}
}

// Reachable reports whether Toxiproxy's API answers. Every drill injects
// its faults through it, or needs its links for the checks: a topology
// started with SHOPFLOOR_TOXIPROXY=off (throughput runs, ADR 0045) has
// none, and the drills must not start against it.
func (t *Toxiproxy) Reachable(ctx context.Context) error {
	var ps map[string]Proxy
	if err := GetJSON(ctx, t.HTTP, t.URL+"/proxies", &ps); err != nil {
		return fmt.Errorf("toxiproxy at %s does not answer (%w): the drills inject faults through it; "+
			"start the topology with it (SHOPFLOOR_TOXIPROXY=on, the default)", t.URL, err)
	}
	return nil
}

// Proxy is one proxy as the API shows it.
type Proxy struct {
	Name     string  `json:"name"`
	Listen   string  `json:"listen"`
	Upstream string  `json:"upstream"`
	Enabled  bool    `json:"enabled"`
	Toxics   []Toxic `json:"toxics"`
}

// Toxic is a fault on one direction of a proxy.
type Toxic struct {
	Name string `json:"name"`
	// Type: latency, timeout, bandwidth, slow_close, reset_peer, …
	Type string `json:"type"`
	// Stream: upstream (client → server) or downstream.
	Stream   string         `json:"stream"`
	Toxicity float64        `json:"toxicity"`
	Attrs    map[string]any `json:"attributes"`
}

// SetEnabled enables or disables a proxy. Disabling closes every open
// connection through it and refuses new ones: the link is cut.
func (t *Toxiproxy) SetEnabled(ctx context.Context, proxy string, enabled bool) error {
	err := DoJSON(ctx, t.HTTP, http.MethodPost, t.URL+"/proxies/"+proxy, nil, map[string]bool{"enabled": enabled}, nil)
	if err != nil {
		return fmt.Errorf("toxiproxy: set %s enabled=%t: %w", proxy, enabled, err)
	}
	return nil
}

// Get returns a proxy.
func (t *Toxiproxy) Get(ctx context.Context, proxy string) (Proxy, error) {
	var p Proxy
	if err := GetJSON(ctx, t.HTTP, t.URL+"/proxies/"+proxy, &p); err != nil {
		return Proxy{}, fmt.Errorf("toxiproxy: get %s: %w", proxy, err)
	}
	return p, nil
}

// AddToxic adds a toxic to a proxy.
func (t *Toxiproxy) AddToxic(ctx context.Context, proxy string, x Toxic) error {
	if x.Toxicity == 0 {
		x.Toxicity = 1
	}
	if err := DoJSON(ctx, t.HTTP, http.MethodPost, t.URL+"/proxies/"+proxy+"/toxics", nil, x, nil); err != nil {
		return fmt.Errorf("toxiproxy: add %s to %s: %w", x.Name, proxy, err)
	}
	return nil
}

// RemoveToxic removes a toxic; a toxic that is not there is not an error.
func (t *Toxiproxy) RemoveToxic(ctx context.Context, proxy, name string) error {
	err := DoJSON(ctx, t.HTTP, http.MethodDelete, t.URL+"/proxies/"+proxy+"/toxics/"+name, nil, nil, nil)
	if err != nil && !IsNotFound(err) {
		return fmt.Errorf("toxiproxy: remove %s from %s: %w", name, proxy, err)
	}
	return nil
}

// RemoveToxicCutting removes a toxic like RemoveToxic; when Toxiproxy does
// not answer within 5s (v2.5 can block removing a toxic while one of its
// links is stuck flushing to a peer that went away, e.g. a killed client),
// it cuts the proxy's connections (disable), removes the toxic from the
// idle proxy and enables it again.
func (t *Toxiproxy) RemoveToxicCutting(ctx context.Context, proxy, name string) error {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := t.RemoveToxic(qctx, proxy, name)
	cancel()
	if err == nil {
		return nil
	}
	if derr := t.SetEnabled(ctx, proxy, false); derr != nil {
		return errors.Join(err, derr)
	}
	rerr := t.RemoveToxic(ctx, proxy, name)
	return errors.Join(rerr, t.SetEnabled(ctx, proxy, true))
}

// Latency is a toxic that delays every chunk in one direction.
func Latency(name, stream string, ms int) Toxic {
	return Toxic{Name: name, Type: "latency", Stream: stream, Toxicity: 1, Attrs: map[string]any{"latency": ms, "jitter": 0}}
}

// JitteryLatency is a latency toxic that delays every chunk in one
// direction by latency ± jitter (uniform; Toxiproxy draws per chunk).
func JitteryLatency(name, stream string, latency, jitter time.Duration) Toxic {
	return Toxic{Name: name, Type: "latency", Stream: stream, Toxicity: 1,
		Attrs: map[string]any{"latency": latency.Milliseconds(), "jitter": jitter.Milliseconds()}}
}

// Timeout is a toxic that swallows every byte in one direction and, with
// after 0, never closes the connection: a cut cable or a host that stopped
// answering (the peer waits for its own timeout). Removing it closes the
// connections it held.
func Timeout(name, stream string, after time.Duration) Toxic {
	return Toxic{Name: name, Type: "timeout", Stream: stream, Toxicity: 1, Attrs: map[string]any{"timeout": after.Milliseconds()}}
}

// restartBudget bounds ClearToxics' restart of a wedged Toxiproxy server:
// kill, start, and its API answering without the toxics.
const restartBudget = 90 * time.Second

// ToxiproxyProcess is the name of the Toxiproxy server among the
// processes (deploy/local/ctl.sh and the compose service).
const ToxiproxyProcess = "toxiproxy"

// ClearToxics removes toxics from proxies (proxy name → toxic names), all
// at once, each removal bounded by within (0: 5s); a toxic that is not
// there is not an error.
//
// It works around Shopify/toxiproxy#558 (open for 2.5.0, the version
// pinned here): removing a toxic can block for good. The server holds the
// proxy's toxic collection lock while it interrupts each link's toxic, and
// a latency toxic that is flushing to a link whose peer went away (a
// client that timed out and closed, a killed process) never takes the
// interrupt; every later API call on that proxy and every new connection
// through it (a new link needs the same lock) waits behind it. Disabling
// the proxy does not free it (RemoveToxicCutting only helps when the
// removal was merely slow), only a restart of the server does. So when a
// removal does not answer within `within`, ClearToxics restarts the
// Toxiproxy server through s.Procs (ToxiproxyProcess: SIGKILL, then
// start; it recreates its proxies from its config file, enabled and
// without toxics: every link is reset once, and services reconnect), waits
// for its API, and checks that none of the toxics is left. The restart
// runs within its own budget (restartBudget), even when ctx has ended
// while the removals hung.
// It reports whether it restarted the server.
func (s *System) ClearToxics(ctx context.Context, within time.Duration, toxics map[string][]string) (restarted bool, err error) {
	if within <= 0 {
		within = 5 * time.Second
	}
	tp := s.ToxiproxyClient()
	errs := make(chan error, 64)
	n := 0
	for proxy, names := range toxics {
		for _, name := range names {
			n++
			go func() {
				rctx, cancel := context.WithTimeout(ctx, within)
				defer cancel()
				errs <- tp.RemoveToxic(rctx, proxy, name)
			}()
		}
	}
	var failed []error
	for range n {
		if e := <-errs; e != nil {
			failed = append(failed, e)
		}
	}
	if len(failed) == 0 {
		return false, nil
	}
	if s.Procs == nil {
		return false, fmt.Errorf("toxiproxy: %w (no process control to restart it: Shopify/toxiproxy#558)", errors.Join(failed...))
	}
	// The restart has its own budget, not what the hung removals left
	// of the caller's: a server killed and never started again (or
	// started and never checked) would leave every link down or the
	// toxics in place, which is worse than a heal that overruns.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), restartBudget)
	defer cancel()
	if err := s.Procs.Kill(ctx, ToxiproxyProcess); err != nil {
		return false, errors.Join(append(failed, err)...)
	}
	if err := s.Procs.Start(ctx, ToxiproxyProcess); err != nil {
		return true, errors.Join(append(failed, err)...)
	}
	for {
		left, err := tp.leftOf(ctx, toxics)
		if err == nil && len(left) == 0 {
			return true, nil
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			if err == nil {
				err = fmt.Errorf("toxics still there after the restart: %v", left)
			}
			return true, fmt.Errorf("toxiproxy: restarted after a removal hung (Shopify/toxiproxy#558), not clean within %s: %w", restartBudget, err)
		case <-t.C:
		}
	}
}

// leftOf returns "proxy/toxic" for each of toxics that is still on its
// proxy (a proxy that does not exist yet is an error).
func (t *Toxiproxy) leftOf(ctx context.Context, toxics map[string][]string) ([]string, error) {
	var left []string
	for proxy, names := range toxics {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		p, err := t.Get(qctx, proxy)
		cancel()
		if err != nil {
			return nil, err
		}
		for _, x := range p.Toxics {
			if slices.Contains(names, x.Name) {
				left = append(left, proxy+"/"+x.Name)
			}
		}
	}
	return left, nil
}

// Proxies returns the names of every proxy, sorted.
func (t *Toxiproxy) Proxies(ctx context.Context) ([]string, error) {
	var ps map[string]Proxy
	if err := GetJSON(ctx, t.HTTP, t.URL+"/proxies", &ps); err != nil {
		return nil, fmt.Errorf("toxiproxy: list proxies: %w", err)
	}
	names := make([]string, 0, len(ps))
	for n := range ps {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}
