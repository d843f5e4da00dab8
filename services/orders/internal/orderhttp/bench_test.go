package orderhttp_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// benchClients is the number of concurrent clients of the checkout
// benchmarks; pgbench runs with the same number of connections.
const benchClients = 4

// BenchmarkCheckout measures POST /v1/orders (two lines, one by id, one by
// sku) with a warm catalog cache: every request claims a new key, prices
// through catalog over HTTP and commits order, lines, outbox event and key.
// It reports orders/s and the p50/p99 latency.
func BenchmarkCheckout(b *testing.B) {
	bu := setup(b)
	benchPost(b, bu, bu.order(), func(i int64) string { return fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i) })
}

// BenchmarkCheckoutByID is BenchmarkCheckout with both lines named by
// product id, as a storefront sends them: one catalog call instead of two.
func BenchmarkCheckoutByID(b *testing.B) {
	bu := setup(b)
	o := bu.order()
	o.Items[1] = ordersapi.LineInput{ProductID: bu.b.ID, Quantity: 3}
	benchPost(b, bu, o, func(i int64) string { return fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i) })
}

// BenchmarkReplay measures the same key again: the stored response is
// read and replayed, no transaction, no catalog call.
func BenchmarkReplay(b *testing.B) {
	bu := setup(b)
	benchPost(b, bu, bu.order(), func(int64) string { return "replayed-key" })
}

func benchPost(b *testing.B, bu *bundle, o ordersapi.CreateOrder, key func(int64) string) {
	body, err := json.Marshal(o)
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	post := func(k string) (int, error) {
		req, _ := http.NewRequest(http.MethodPost, bu.srv.URL+"/v1/orders", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", k)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := post(key(-1)); err != nil || code != http.StatusCreated { // warms catalog's cache
		b.Fatalf("warm-up: %d %v", code, err)
	}
	var (
		n   atomic.Int64
		mu  sync.Mutex
		lat []time.Duration
	)
	b.ResetTimer()
	start := time.Now()
	b.SetParallelism(max(1, benchClients/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		var local []time.Duration
		for pb.Next() {
			t0 := time.Now()
			code, err := post(key(n.Add(1)))
			if err != nil || code != http.StatusCreated {
				b.Errorf("POST: %d %v", code, err)
				return
			}
			local = append(local, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "orders/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

var tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// BenchmarkPgbenchCheckoutSQL runs pgbench with the checkout's SQL
// (loadtests/pgbench/checkout.sql) on a fresh orders database for 10 s with
// benchClients connections: the anchor BenchmarkCheckout is compared with,
// measured in the same run on the same machine. Needs pgbench on PATH.
func BenchmarkPgbenchCheckoutSQL(b *testing.B) {
	path, err := exec.LookPath("pgbench")
	if err != nil {
		b.Skip("pgbench is not installed (Debian: postgresql-client)")
	}
	bu := setup(b)
	script := "../../../../loadtests/pgbench/checkout.sql"
	if _, err := os.Stat(script); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		out, err := exec.Command(path, "-n", "-c", strconv.Itoa(benchClients), "-j", "2", "-T", "10", "-f", script, bu.db.URL).CombinedOutput()
		if err != nil {
			b.Fatalf("pgbench: %v\n%s", err, out)
		}
		m := tpsRE.FindSubmatch(out)
		if m == nil {
			b.Fatalf("no tps in pgbench output:\n%s", out)
		}
		tps, _ := strconv.ParseFloat(string(m[1]), 64)
		b.ReportMetric(tps, "tps")
	}
}
