package httpkit

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// InFlightLimit is a bounded in-flight request limit: backpressure instead
// of an unbounded queue. Beyond Max concurrent requests, a request waits
// at most Wait for a slot, then is answered 503 "overloaded" with
// Retry-After, without reaching the handler: a client learns at once to
// come back later, and the requests already admitted keep their latency
// (and their database connections) instead of sharing them with a queue
// that grows until every request times out.
//
// Size Max a little above what the handler's scarcest resource can serve
// at once (for a database-bound route, the pool size times a small
// factor): it bounds latency, not throughput.
type InFlightLimit struct {
	// Max concurrent requests (required, > 0).
	Max int
	// Wait is how long a request may wait for a slot (default 0: none).
	Wait time.Duration
	// RetryAfter is the hint sent with the 503 (default 1s).
	RetryAfter time.Duration
	// Registerer, when set, receives http_inflight_requests{limiter} and
	// http_inflight_rejected_total{limiter}.
	Registerer prometheus.Registerer
	// Name labels the metrics (e.g. "orders-api").
	Name string
}

// LimitInFlight returns the middleware for l. It panics on Max <= 0 or a
// metric that cannot be registered: both are wiring mistakes found at
// start.
func LimitInFlight(l InFlightLimit) Middleware {
	if l.Max <= 0 {
		panic("httpkit.LimitInFlight: Max must be positive")
	}
	if l.RetryAfter <= 0 {
		l.RetryAfter = time.Second
	}
	slots := make(chan struct{}, l.Max)
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "http_inflight_requests", Help: "Requests being served under an in-flight limit.",
		ConstLabels: prometheus.Labels{"limiter": l.Name},
	}, func() float64 { return float64(len(slots)) })
	rejected := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "http_inflight_rejected_total", Help: "Requests answered 503 because the in-flight limit was reached.",
		ConstLabels: prometheus.Labels{"limiter": l.Name},
	})
	if l.Registerer != nil {
		l.Registerer.MustRegister(inflight, rejected)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case slots <- struct{}{}:
			default:
				if !waitSlot(r, slots, l.Wait) {
					rejected.Inc()
					p := NewProblem(http.StatusServiceUnavailable, "overloaded",
						"the server is at its limit of concurrent requests; retry after the Retry-After delay")
					p.RetryAfter = l.RetryAfter
					WriteProblem(w, p)
					return
				}
			}
			defer func() { <-slots }()
			next.ServeHTTP(w, r)
		})
	}
}

func waitSlot(r *http.Request, slots chan struct{}, wait time.Duration) bool {
	if wait <= 0 {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-r.Context().Done():
		return false
	}
}
