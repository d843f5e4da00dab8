package producthttp_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/httpcache"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productsvc"
)

// Catalog read-path benchmarks; figures in docs/benchmarks.md.
//
//	go test -run '^$' -bench . -benchtime 20000x ./services/catalog/internal/producthttp

var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// hammer GETs url b.N times from 16 goroutines and reports requests/s and
// the p50 and p99 latency.
func hammer(b *testing.B, url string) {
	b.Helper()
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	lat := make([][]time.Duration, 16)
	b.ResetTimer()
	start := time.Now()
	for g := range lat {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				if err != nil {
					b.Error(err)
					return
				}
				res, err := benchClient.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Errorf("status %d", res.StatusCode)
					return
				}
				lat[g] = append(lat[g], time.Since(t0))
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

// BenchmarkGetProduct compares a cached product read through catalog,
// through Varnish (hits), and a trivial net/http handler returning a body
// of the same size, at the same concurrency.
func BenchmarkGetProduct(b *testing.B) {
	bd, _, cdn := behindVarnish(b, httpcache.Policy{})
	p := bd.create(b, lamp("LAMP-BENCH"))
	path := "/v1/products/" + p.ID + "?currency=EUR"
	body := bd.do(b, "GET", path, nil, nil).body
	trivial := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	defer trivial.Close()
	b.Run("trivial-net-http", func(b *testing.B) { hammer(b, trivial.URL+path) })
	b.Run("catalog-cached", func(b *testing.B) { hammer(b, bd.srv.URL+path) })
	b.Run("catalog-near", func(b *testing.B) {
		nb := setupCache(b, nil, httpcache.Policy{}, cache.Config{Near: cache.NearConfig{Entities: 10000, TTL: time.Second}})
		np := nb.create(b, lamp("LAMP-NEAR"))
		hammer(b, nb.srv.URL+"/v1/products/"+np.ID+"?currency=EUR")
	})
	b.Run("varnish-hit", func(b *testing.B) { hammer(b, cdn+path) })
	b.Run("raw-redis-get", func(b *testing.B) {
		r := testinfra.Redis(b)
		ctx := context.Background()
		if err := r.Client.Set(ctx, r.Key("p"), body, 0).Err(); err != nil {
			b.Fatal(err)
		}
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for range 16 {
			wg.Go(func() {
				for next.Add(1) <= int64(b.N) {
					if err := r.Client.Get(ctx, r.Key("p")).Err(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	})
}

// BenchmarkZipfHitRatio reads 10 000 seeded products with a Zipf key mix
// (s=1.1) through catalog and reports the Redis hit ratio and the source
// loads per distinct key read.
func BenchmarkZipfHitRatio(b *testing.B) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	bd := setupWith(b, nil, httpcache.Policy{}, reg)
	if err := productsvc.Seed(ctx, bd.db.Pool, outbox.New(catalogapi.Stream), 10000, time.Now); err != nil {
		b.Fatal(err)
	}
	rows, err := bd.db.Pool.Query(ctx, `SELECT id::text FROM products ORDER BY id`)
	if err != nil {
		b.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	zipf := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, uint64(len(ids)-1))
	keys := make([]string, b.N)
	distinct := map[string]bool{}
	for i := range keys {
		keys[i] = ids[zipf.Uint64()]
		distinct[keys[i]] = true
	}
	readAll := func() time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range 16 {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= int64(len(keys)) {
						return
					}
					if r := bd.do(b, "GET", "/v1/products/"+keys[i]+"?currency=EUR", nil, nil); r.status != http.StatusOK {
						b.Errorf("status %d", r.status)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	gather := func() map[string]float64 {
		counts := map[string]float64{}
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "result" || l.GetName() == "outcome" {
						counts[mf.GetName()+"/"+l.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
		}
		return counts
	}
	b.ResetTimer()
	readAll() // cold: every distinct key loads once
	cold := gather()
	b.ReportMetric(cold["cache_loads_total/ok"]/float64(len(distinct)), "loads/key")
	took := readAll() // warm: the same mix again
	warm := gather()
	b.ReportMetric(float64(b.N)/took.Seconds(), "warm_req/s")
	counts := map[string]float64{}
	for k, v := range warm {
		counts[k] = v - cold[k]
	}
	reads := counts["cache_requests_total/hit"] + counts["cache_requests_total/miss"] + counts["cache_requests_total/stale"] + counts["cache_requests_total/fail_open"]
	b.ReportMetric(100*counts["cache_requests_total/hit"]/reads, "warm_hit%")
}
