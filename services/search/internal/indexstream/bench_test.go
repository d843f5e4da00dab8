package indexstream_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/search/internal/indexpg"
	"github.com/shopfloor/shopfloor/services/search/internal/indexstream"
	"github.com/shopfloor/shopfloor/services/search/internal/searchtest"
	"github.com/shopfloor/shopfloor/services/search/migrations"
)

// BenchmarkApply measures how fast a projector applies events to the
// index (one transaction per event: versioned upsert, texts, position),
// without the broker: the ceiling of a consumer group's rate. "serial" is
// one partition's rate (a group handles a partition one event at a time);
// "8 partitions" runs eight such loops at once, as a group on an
// 8-partition stream does.
//
//	go test -run '^$' -bench BenchmarkApply ./services/search/internal/indexstream
func BenchmarkApply(b *testing.B) {
	for _, kind := range []string{"orders", "products"} {
		for _, workers := range []int{1, 8} {
			name := kind + "/serial"
			if workers > 1 {
				name = kind + "/8 partitions"
			}
			b.Run(name, func(b *testing.B) {
				db := testinfra.Postgres(b, migrations.FS)
				rng := rand.New(rand.NewPCG(1, 2))
				var hist [][]searchtest.Event
				var err error
				proj := indexpg.LiveOrders
				if kind == "orders" {
					hist, err = searchtest.Orders(rng, b.N/2+1)
				} else {
					proj = indexpg.LiveProducts
					hist, err = searchtest.Products(rng, b.N/2+1, 3)
				}
				if err != nil {
					b.Fatal(err)
				}
				// Keys are spread over the workers as over partitions, so
				// each key's events stay in order.
				parts := make([][]stream.Delivery, workers)
				for i, ev := range searchtest.Interleave(rng, hist)[:b.N] {
					w := stream.Partition(ev.Key, workers)
					parts[w] = append(parts[w], stream.Delivery{ID: ev.ID, Key: ev.Key, Partition: w, Sequence: uint64(i + 1), NumDelivered: 1, Payload: ev.Payload})
				}
				// The service's default pool size (DATABASE_MAX_CONNS).
				pool, err := pgdb.Open(context.Background(), pgdb.Config{URL: db.URL, MaxConns: 8})
				if err != nil {
					b.Fatal(err)
				}
				defer pool.Close()
				p := &indexstream.Projector{Pool: pool, Projection: proj, Stream: "BENCH", Log: slog.New(slog.DiscardHandler)}
				b.ResetTimer()
				var wg sync.WaitGroup
				for _, part := range parts {
					wg.Go(func() {
						for _, d := range part {
							if err := p.Handle(context.Background(), d); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
