package target

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Toxiproxy is a client of Toxiproxy's HTTP API, which sits between every
// service and every dependency (proxies postgres, redis, nats, catalog,
// psp, smtp in deploy/local/run.sh and deploy/compose/toxiproxy).
type Toxiproxy struct {
	URL  string
	HTTP *http.Client
}

// ToxiproxyClient returns the client of s's Toxiproxy API.
func (s *System) ToxiproxyClient() *Toxiproxy {
	return &Toxiproxy{URL: s.Toxiproxy, HTTP: s.Client()}
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
