package httpkit_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

// TestLimitInFlight holds Max requests inside the handler and checks that
// the next one is refused with 503 and Retry-After without reaching the
// handler, and that a slot frees when a request ends.
func TestLimitInFlight(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	const limit = 3
	entered, release := make(chan struct{}), make(chan struct{})
	var calls int
	var mu sync.Mutex
	h := httpkit.LimitInFlight(httpkit.InFlightLimit{Max: limit, Registerer: reg, Name: "test"})(
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			mu.Lock()
			calls++
			mu.Unlock()
			entered <- struct{}{}
			<-release
			w.WriteHeader(http.StatusNoContent)
		}))
	var wg sync.WaitGroup
	codes := make(chan int, limit)
	for range limit {
		wg.Go(func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			codes <- rec.Code
		})
		<-entered
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" ||
		rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("request over the limit: %d %v", rec.Code, rec.Header())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	metrics := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		if m.GetGauge() != nil {
			metrics[mf.GetName()] = m.GetGauge().GetValue()
		} else {
			metrics[mf.GetName()] = m.GetCounter().GetValue()
		}
	}
	if metrics["http_inflight_requests"] != limit || metrics["http_inflight_rejected_total"] != 1 {
		t.Fatalf("metrics: %v", metrics)
	}
	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusNoContent {
			t.Fatalf("admitted request answered %d", c)
		}
	}
	rec = httptest.NewRecorder()
	go func() { <-entered }()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusNoContent || calls != limit+1 {
		t.Fatalf("after the slots freed: %d, %d calls", rec.Code, calls)
	}
}
