package pspsim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// clock is the fixed time every test simulator stamps.
var clock = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type bundle struct {
	sim *pspsim.Sim
	srv *httptest.Server
}

// setup serves a new simulator with cfg (Now defaults to clock) on its own
// test server.
func setup(t testing.TB, cfg pspsim.Config) *bundle {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return clock }
	}
	sim, err := pspsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	return &bundle{sim: sim, srv: srv}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

// request is one HTTP request to the simulator; a body that is not a
// string or []byte is marshalled to JSON.
type request struct {
	method, path string
	key          string // Idempotency-Key; empty: none
	body         any
	header       map[string]string
}

func (b *bundle) newRequest(t testing.TB, ctx context.Context, r request) *http.Request {
	t.Helper()
	var rd io.Reader
	switch v := r.body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	case []byte:
		rd = bytes.NewReader(v)
	default:
		js, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, b.srv.URL+r.path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.key != "" {
		req.Header.Set("Idempotency-Key", r.key)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	return req
}

// try sends r and returns the response or the transport error.
func (b *bundle) try(t testing.TB, ctx context.Context, r request) (resp, error) {
	t.Helper()
	res, err := b.srv.Client().Do(b.newRequest(t, ctx, r))
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return resp{}, err
	}
	return resp{status: res.StatusCode, header: res.Header, body: data}, nil
}

// concurrently sends the requests so that they are processed at the same
// moment: each body is held back until the headers of every request are on
// the wire (so every handler has started and waits for its body), then all
// bodies are released together. It returns the responses in order.
func (b *bundle) concurrently(t *testing.T, reqs []request) []resp {
	t.Helper()
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release) // also when the test fails before releasing
	var wrote atomic.Int64
	httpReqs := make([]*http.Request, len(reqs))
	bodies := make([][]byte, len(reqs))
	pipes := make([]*io.PipeWriter, len(reqs))
	for i, r := range reqs {
		js, err := json.Marshal(r.body)
		if err != nil {
			t.Fatal(err)
		}
		bodies[i] = js
		pr, pw := io.Pipe()
		pipes[i] = pw
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{WroteHeaders: func() { wrote.Add(1) }})
		hr, err := http.NewRequestWithContext(ctx, r.method, b.srv.URL+r.path, pr)
		if err != nil {
			t.Fatal(err)
		}
		hr.Header.Set("Content-Type", "application/json")
		hr.Header.Set("Idempotency-Key", r.key)
		httpReqs[i] = hr
	}
	results := make([]resp, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Go(func() {
			<-gate
			_, _ = pipes[i].Write(bodies[i])
			_ = pipes[i].Close()
		})
		wg.Go(func() {
			res, err := b.srv.Client().Do(httpReqs[i])
			if err != nil {
				errs[i] = err
				return
			}
			defer res.Body.Close()
			data, err := io.ReadAll(res.Body)
			results[i], errs[i] = resp{status: res.StatusCode, header: res.Header, body: data}, err
		})
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if n := wrote.Load(); n < int64(len(reqs)) {
			return fmt.Errorf("%d of %d requests sent", n, len(reqs))
		}
		return nil
	})
	release()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return results
}

// do sends r and fails the test on a transport error.
func (b *bundle) do(t testing.TB, r request) resp {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := b.try(t, ctx, r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	return res
}

// charge is a valid charge body.
type charge struct {
	AmountMinor   int64  `json:"amount_minor"`
	Currency      string `json:"currency"`
	PaymentMethod string `json:"payment_method"`
	Reference     string `json:"reference"`
}

func visa(ref string) charge {
	return charge{AmountMinor: 4999, Currency: "EUR", PaymentMethod: pspsim.TokenVisa, Reference: ref}
}

func (b *bundle) postCharge(t testing.TB, key string, c charge) resp {
	t.Helper()
	return b.do(t, request{method: http.MethodPost, path: "/charges", key: key, body: c})
}

func decodeCharge(t testing.TB, r resp) pspsim.Charge {
	t.Helper()
	var c pspsim.Charge
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatalf("decode charge %s: %v", r.body, err)
	}
	return c
}

func decodeRefund(t testing.TB, r resp) pspsim.Refund {
	t.Helper()
	var rf pspsim.Refund
	if err := json.Unmarshal(r.body, &rf); err != nil {
		t.Fatalf("decode refund %s: %v", r.body, err)
	}
	return rf
}

// problem checks that r is a problem with status and class and returns it.
func problem(t testing.TB, r resp, status int, class string) httpkit.Problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != httpkit.ContentTypeProblem {
		t.Fatalf("Content-Type %q, want %q", ct, httpkit.ContentTypeProblem)
	}
	var p httpkit.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("decode problem %s: %v", r.body, err)
	}
	if p.Class() != class {
		t.Fatalf("problem class %q, want %q; body %s", p.Class(), class, r.body)
	}
	return p
}

// requests returns the count of route/outcome.
func requests(s pspsim.Stats, route, outcome string) int {
	return s.Requests[route][outcome]
}
