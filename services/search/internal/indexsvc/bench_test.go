package indexsvc_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/services/search/internal/indexsvc"
	"github.com/shopfloor/shopfloor/services/search/internal/searchtest"
)

// BenchmarkSteadyOrders publishes orders to an 8-partition ORDERS stream
// at a steady rate for 10 seconds while the live group projects them,
// samples the group's lag from the broker every 100ms, and reports the
// rate the projection kept up with, the largest lag seen (messages and
// seconds) and how long it took to drain after the last publish. Figures,
// not assertions: they depend on the machine.
//
//	go test -run '^$' -bench BenchmarkSteadyOrders -benchtime 1x ./services/search/internal/indexsvc
func BenchmarkSteadyOrders(b *testing.B) {
	for _, rate := range []int{200, 500, 1000} {
		b.Run(fmt.Sprintf("%d events/s", rate), func(b *testing.B) {
			for range b.N {
				s := searchtest.StartWith(b, searchtest.Options{Partitions: 8})
				rng := rand.New(rand.NewPCG(uint64(rate), 1))
				const duration = 10 * time.Second
				hist, err := searchtest.Orders(rng, rate*int(duration/time.Second)/2)
				if err != nil {
					b.Fatal(err)
				}
				log := searchtest.Interleave(rng, hist)
				var maxMsgs uint64
				var maxSecs float64
				sample := func() {
					if lag, ok := s.Lags.Lag(s.Orders.Stream); ok {
						maxMsgs, maxSecs = max(maxMsgs, lag.Messages), max(maxSecs, lag.Seconds)
					}
				}
				// Publish in 10ms ticks of rate/100 events.
				perTick := max(rate/100, 1)
				tick := time.NewTicker(10 * time.Millisecond)
				start := time.Now()
				for i := 0; i < len(log); i += perTick {
					<-tick.C
					s.Publish(b, s.Orders.Stream, log[i:min(i+perTick, len(log))])
					if i%(perTick*10) == 0 {
						sample()
					}
				}
				tick.Stop()
				published := time.Since(start)
				drainStart := time.Now()
				for {
					sample()
					lag, ok := s.Lags.Lag(s.Orders.Stream)
					if ok && lag.Messages == 0 && lag.SampledAt.After(drainStart) {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				drain := time.Since(drainStart)
				b.ReportMetric(float64(len(log))/published.Seconds(), "published_events/s")
				b.ReportMetric(float64(len(log))/(published+drain).Seconds(), "projected_events/s")
				b.ReportMetric(float64(maxMsgs), "max_lag_msgs")
				b.ReportMetric(maxSecs, "max_lag_s")
				b.ReportMetric(drain.Seconds(), "drain_s")
			}
		})
	}
}

// BenchmarkRebuild times `search rebuild` of 10,000 products and of
// 100,000 orders (about 180,000 ORDERS events) from 8-partition streams:
// replay with a fresh group into new tables, compare, swap. The live
// projections are left empty (no live consumers), so the figure is the
// replay alone, not a replay competing with live traffic.
//
//	go test -run '^$' -bench BenchmarkRebuild -benchtime 1x -timeout 60m ./services/search/internal/indexsvc
func BenchmarkRebuild(b *testing.B) {
	for _, tc := range []struct {
		name string
		n    int
	}{{"10k products", 10_000}, {"100k orders", 100_000}} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				s := searchtest.StartWith(b, searchtest.Options{Partitions: 8, NoConsumers: true})
				rng := rand.New(rand.NewPCG(uint64(tc.n), 9))
				src := s.Orders
				var hist [][]searchtest.Event
				var err error
				if tc.name == "10k products" {
					src = s.Products
					hist, err = searchtest.Products(rng, tc.n, 1)
				} else {
					hist, err = searchtest.Orders(rng, tc.n)
				}
				if err != nil {
					b.Fatal(err)
				}
				log := searchtest.Interleave(rng, hist)
				s.Publish(b, src.Stream, log)
				b.StartTimer()
				rep, err := replayer(s).Run(context.Background(), indexsvc.ReplayConfig{Source: src, Swap: true, AllowMissing: true, Timeout: time.Hour})
				if err != nil || !rep.Swapped || rep.Diff.RebuiltDocuments != int64(tc.n) {
					b.Fatalf("rebuild: %+v, %v", rep, err)
				}
				b.ReportMetric(rep.TotalSeconds, "s/rebuild")
				b.ReportMetric(float64(rep.Events)/rep.ReplaySeconds, "events/s")
				b.ReportMetric(float64(rep.Events), "events")
			}
		})
	}
}
