package drill

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/chaos/target"
)

// sampled are the processes whose /metrics the sampler reads: the outbox
// relays, catalog's api (cache) and one process per job queue owner.
var sampled = []string{"orders-relay", "payments-relay", "catalog-worker", "catalog", "payments", "notifications", "orders", "notifications-worker"}

// Sampler records, while a drill runs, the first, last and highest value
// of the signals that show a fault biting and healing:
//
//	outbox backlog STREAM           outbox_backlog_rows
//	consumer pending STREAM/group   NATS /jsz: not delivered + not acked
//	jobs visible|in_flight QUEUE    jobqueue_*_messages
//	catalog cache fail_open         cache_requests_total{result="fail_open"} (a counter)
//	catalog cache breaker_open      cache_breaker_open
//	jobs delayed QUEUE              jobqueue_delayed_messages (retries waiting for their backoff)
//	orders catalog breaker          catalog_client_breaker_state of orders (2: open)
//	orders shedding                 orders_checkout_shedding (1: checkouts shed)
//	orders payment backlog age      orders_payment_backlog_age_seconds
//	breaker NAME                    breaker_state{name} (psp, smtp; 2: open)
//
// A process that does not answer (killed by the drill) is skipped. Every
// sample is also kept, in order, as a time series for the report
// (Series).
type Sampler struct {
	sys   *target.System
	start time.Time

	mu                sync.Mutex
	first, last, peak map[string]float64
	series            []Point
}

// Point is one sample: the values read At after the sampler was made.
// A signal whose process did not answer is absent from Values.
type Point struct {
	At     time.Duration
	Values map[string]float64
}

// NewSampler returns a sampler of sys; its series counts from now.
func NewSampler(sys *target.System) *Sampler {
	return &Sampler{sys: sys, start: time.Now(), first: map[string]float64{}, last: map[string]float64{}, peak: map[string]float64{}}
}

// Run samples every interval until ctx ends.
func (s *Sampler) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.Sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample takes one sample now.
func (s *Sampler) Sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	vals := map[string]float64{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range sampled {
		base, ok := s.sys.Metrics[name]
		if !ok {
			continue
		}
		wg.Go(func() {
			samples, err := target.Scrape(ctx, s.sys.Client(), base)
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, x := range samples {
				switch x.Name {
				case "outbox_backlog_rows":
					k := "outbox backlog " + x.Label("stream")
					vals[k] = max(vals[k], x.Value)
				case "jobqueue_visible_messages", "jobqueue_in_flight_messages":
					if q := x.Label("queue"); !strings.HasSuffix(q, "-dlq") {
						k := "jobs " + strings.TrimSuffix(strings.TrimPrefix(x.Name, "jobqueue_"), "_messages") + " " + q
						vals[k] = max(vals[k], x.Value)
					}
				case "cache_requests_total":
					if name == "catalog" && x.Label("result") == "fail_open" {
						vals["catalog cache fail_open"] += x.Value
					}
				case "jobqueue_delayed_messages":
					if q := x.Label("queue"); !strings.HasSuffix(q, "-dlq") {
						vals["jobs delayed "+q] = max(vals["jobs delayed "+q], x.Value)
					}
				case "catalog_client_breaker_state":
					if name == "orders" {
						vals["orders catalog breaker"] = max(vals["orders catalog breaker"], x.Value)
					}
				case "orders_checkout_shedding":
					vals["orders shedding"] = max(vals["orders shedding"], x.Value)
				case "orders_payment_backlog_age_seconds":
					vals["orders payment backlog age"] = max(vals["orders payment backlog age"], x.Value)
				case "breaker_state":
					k := "breaker " + x.Label("name")
					vals[k] = max(vals[k], x.Value)
				case "cache_breaker_open":
					if name == "catalog" {
						vals["catalog cache breaker_open"] = max(vals["catalog cache breaker_open"], x.Value)
					}
				}
			}
		})
	}
	wg.Go(func() {
		js, err := s.sys.JetStream(ctx)
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for k, v := range js.Pending {
			vals["consumer pending "+k] = float64(v)
		}
	})
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.series = append(s.series, Point{At: time.Since(s.start), Values: vals})
	for k, v := range vals {
		if _, ok := s.first[k]; !ok {
			s.first[k] = v
		}
		s.last[k] = v
		s.peak[k] = max(s.peak[k], v)
	}
}

// Peak returns the highest value of key seen (0 when never seen).
func (s *Sampler) Peak(key string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak[key]
}

// Growth returns last − first of key: how much a counter rose.
func (s *Sampler) Growth(key string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[key] - s.first[key]
}

// Series returns every sample taken, oldest first. The points' maps are
// shared: callers must not change them.
func (s *Sampler) Series() []Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.series)
}

// Peaks returns a copy of every peak.
func (s *Sampler) Peaks() map[string]float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.peak)
}
