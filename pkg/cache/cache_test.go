package cache_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

type product struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version int64  `json:"version"`
}

// source is a stand-in for PostgreSQL: the test controls versions and can
// hold a load in flight. (The cache's contract is about what it does with
// the loader's answers; the catalog service tests it over PostgreSQL.)
type source struct {
	mu    sync.Mutex
	rows  map[string]product
	loads atomic.Int64
	// hold, when set, blocks loads of that id until the channel closes,
	// after they read the row.
	hold map[string]chan struct{}
}

func newSource() *source {
	return &source{rows: map[string]product{}, hold: map[string]chan struct{}{}}
}

func (s *source) put(p product) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows[p.ID] = p
}

func (s *source) load(ctx context.Context, id, variant string) (product, int64, error) {
	s.loads.Add(1)
	s.mu.Lock()
	p, ok := s.rows[id]
	hold := s.hold[id]
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if !ok {
		return product{}, 0, cache.ErrNotFound
	}
	p.Name += "/" + variant
	return p, p.Version, nil
}

func newCache(t *testing.T, rdb redis.UniversalClient, prefix string, src *source, cfg cache.Config) *cache.Cache[product] {
	t.Helper()
	cfg.Namespace, cfg.Class = prefix, "product"
	if cfg.RedisTimeout == 0 {
		// Generous: parallel tests under -race on two cores can take more
		// than the 50ms default, and a timeout fails open (a second load),
		// which is right in production and noise here.
		cfg.RedisTimeout = time.Second
	}
	c, err := cache.New(rdb, src.load, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHitMissAndVariants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testinfra.Redis(t)
	src := newSource()
	src.put(product{ID: "p1", Name: "Lamp", Version: 1})
	c := newCache(t, r.Client, r.Prefix, src, cache.Config{})

	v, m, err := c.Get(ctx, "p1", "en-US")
	if err != nil || m.Result != cache.Miss || v.Name != "Lamp/en-US" || m.Version != 1 {
		t.Fatalf("first Get = %+v %+v %v", v, m, err)
	}
	v, m, err = c.Get(ctx, "p1", "en-US")
	if err != nil || m.Result != cache.Hit || v.Name != "Lamp/en-US" {
		t.Fatalf("second Get = %+v %+v %v", v, m, err)
	}
	if v, m, _ := c.Get(ctx, "p1", "de-DE"); m.Result != cache.Miss || v.Name != "Lamp/de-DE" {
		t.Fatalf("other variant = %+v %+v, want its own entry", v, m)
	}
	if n := src.loads.Load(); n != 2 {
		t.Fatalf("%d loads, want 2", n)
	}
}

// TestSlowReaderNeverOverwritesNewerVersion is the stale-overwrite race.
func TestSlowReaderNeverOverwritesNewerVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testinfra.Redis(t)
	src := newSource()
	src.put(product{ID: "p1", Name: "v1", Version: 1})
	slowSrc := newSource()
	slowSrc.put(product{ID: "p1", Name: "v1", Version: 1})
	release := make(chan struct{})
	slowSrc.hold["p1"] = release
	// Two instances of the service sharing Redis: one slow, one fast.
	slow := newCache(t, r.Client, r.Prefix, slowSrc, cache.Config{})
	fast := newCache(t, r.Client, r.Prefix, src, cache.Config{})

	done := make(chan product, 1)
	go func() {
		v, _, err := slow.Get(ctx, "p1", "en")
		if err != nil {
			t.Error(err)
		}
		done <- v
	}()
	testinfra.Eventually(t, 10*time.Second, func() error {
		if slowSrc.loads.Load() == 0 {
			return errors.New("slow reader has not loaded yet")
		}
		return nil
	})
	// The writer commits version 2 and moves the pointer.
	src.put(product{ID: "p1", Name: "v2", Version: 2})
	if err := fast.Invalidate(ctx, "p1", 2); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := fast.Get(ctx, "p1", "en"); v.Version != 2 {
		t.Fatalf("after the writer: version %d", v.Version)
	}
	close(release) // the slow reader now stores version 1
	if v := <-done; v.Version != 1 {
		t.Fatalf("slow reader returned %d (it loaded 1)", v.Version)
	}
	for range 3 {
		v, m, err := fast.Get(ctx, "p1", "en")
		if err != nil || v.Version != 2 {
			t.Fatalf("after the slow reader stored v1: Get = %+v %+v %v; want version 2", v, m, err)
		}
	}
}

func TestStampedeLoadsOnce(t *testing.T) {
	t.Parallel()
	r := testinfra.Redis(t)
	src := newSource()
	src.put(product{ID: "hot", Name: "Hot", Version: 7})
	release := make(chan struct{})
	src.hold["hot"] = release
	// Size the client's pool for the burst: RedisTimeout covers the wait
	// for a pooled connection, and a reader that times out there fails
	// open to the source.
	opts, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	opts.PoolSize = 200
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	// A generous Redis timeout: this test is about coalescing, and 1 000
	// goroutines under -race on two cores make 50ms waits for a pooled
	// connection common (each would fail open, correctly, to the source).
	reg := prometheus.NewRegistry()
	c := newCache(t, rdb, r.Prefix, src, cache.Config{RedisTimeout: time.Second, Registerer: reg})
	const n = 1000
	results := make(chan cache.Result, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			v, m, err := c.Get(context.Background(), "hot", "en")
			results <- m.Result
			if err == nil && v.Version != 7 {
				err = fmt.Errorf("version %d", v.Version)
			}
			errs <- err
		})
	}
	// Hold the one load until every reader waits for it. Releasing earlier
	// lets a late reader start a second flight after the first ended, and
	// if Redis was slow for that reader (fail open stores nothing) that is
	// a second load by design, not a stampede.
	waitGauge(t, reg, "cache_load_waiters", n)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	close(results)
	byResult := map[cache.Result]int{}
	for r := range results {
		byResult[r]++
	}
	if got := src.loads.Load(); got != 1 {
		t.Fatalf("%d source loads for %d concurrent cold reads, want 1 (results: %v)", got, n, byResult)
	}
}

func TestNegativeCacheAndCreate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testinfra.Redis(t)
	src := newSource()
	c := newCache(t, r.Client, r.Prefix, src, cache.Config{NegativeTTL: time.Hour})
	for i := range 2 {
		if _, _, err := c.Get(ctx, "new", "en"); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Get %d of a missing product: %v", i, err)
		}
	}
	if n := src.loads.Load(); n != 1 {
		t.Fatalf("%d loads, want 1 (the second answered from the negative cache)", n)
	}
	src.put(product{ID: "new", Name: "New", Version: 1})
	if err := c.Invalidate(ctx, "new", 1); err != nil {
		t.Fatal(err)
	}
	if v, _, err := c.Get(ctx, "new", "en"); err != nil || v.Version != 1 {
		t.Fatalf("after create: %+v %v", v, err)
	}
}

func TestSoftTTLServesStaleWhileRefreshing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testinfra.Redis(t)
	src := newSource()
	src.put(product{ID: "p", Name: "old", Version: 1})
	c := newCache(t, r.Client, r.Prefix, src, cache.Config{SoftTTL: time.Millisecond})
	if _, _, err := c.Get(ctx, "p", "en"); err != nil {
		t.Fatal(err)
	}
	// A change the cache was not told about (no Invalidate): the stale
	// entry is served at once while one refresh runs, and the soft TTL
	// bounds how long it is served.
	src.put(product{ID: "p", Name: "new", Version: 2})
	testinfra.Eventually(t, 10*time.Second, func() error {
		v, m, err := c.Get(ctx, "p", "en")
		switch {
		case err != nil:
			t.Fatal(err)
		case m.Result == cache.Hit && v.Version == 1:
			return errors.New("still fresh")
		case m.Result != cache.Stale || v.Version != 1:
			t.Fatalf("first read after the soft TTL = %+v %+v; want version 1 served stale", v, m)
		}
		return nil
	})
	testinfra.Eventually(t, 10*time.Second, func() error {
		v, m, err := c.Get(ctx, "p", "en")
		if err != nil {
			return err
		}
		if v.Version != 2 {
			return fmt.Errorf("still version %d (%s)", v.Version, m.Result)
		}
		return nil
	})
}

func TestOverloadWithoutStaleIsAnError(t *testing.T) {
	t.Parallel()
	r := testinfra.Redis(t)
	src := newSource()
	src.put(product{ID: "a", Version: 1})
	src.put(product{ID: "b", Version: 1})
	release := make(chan struct{})
	src.hold["a"] = release
	c := newCache(t, r.Client, r.Prefix, src, cache.Config{MaxConcurrentLoads: 1, LoadWait: 20 * time.Millisecond})
	done := make(chan error, 1)
	go func() { _, _, err := c.Get(context.Background(), "a", "en"); done <- err }()
	testinfra.Eventually(t, 10*time.Second, func() error {
		if src.loads.Load() == 0 {
			return errors.New("load of a not started")
		}
		return nil
	})
	if _, _, err := c.Get(context.Background(), "b", "en"); !errors.Is(err, cache.ErrOverloaded) {
		t.Fatalf("Get b with the only load slot taken: %v, want ErrOverloaded", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(context.Background(), "b", "en"); err != nil {
		t.Fatalf("Get b once the slot is free: %v", err)
	}
}

// TestRedisDownFailsOpen: with Redis unreachable every read still answers
// from the source, and after the breaker opens Redis is not even tried.
func TestRedisDownFailsOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A port with nothing behind it: Redis is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	var dials atomic.Int64
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 50 * time.Millisecond,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}})
	defer rdb.Close()
	src := newSource()
	src.put(product{ID: "p", Name: "Lamp", Version: 3})
	c := newCache(t, rdb, "t", src, cache.Config{BreakerFailures: 3, BreakerOpenFor: time.Hour})
	for i := range 50 {
		v, m, err := c.Get(ctx, "p", "en")
		if err != nil || v.Version != 3 || m.Result != cache.FailOpen {
			t.Fatalf("Get %d with Redis down = %+v %+v %v; want version 3 from the source", i, v, m, err)
		}
	}
	if d := dials.Load(); d > 3 {
		t.Fatalf("%d dials to a dead Redis for 50 reads; the breaker should stop them after 3", d)
	}
	if err := c.Invalidate(ctx, "p", 4); err == nil {
		t.Fatal("Invalidate with Redis down reported success")
	}
}

func TestBypassReadsTheSourceAndWritesNothingToRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testinfra.Redis(t)
	src := newSource()
	src.put(product{ID: "p", Version: 1})
	reg := prometheus.NewRegistry()
	c := newCache(t, r.Client, r.Prefix, src, cache.Config{Registerer: reg})
	waitGauge(t, reg, "cache_bypass", 0)
	c.SetBypass(true)
	waitGauge(t, reg, "cache_bypass", 1) // what an operator's console reads
	for range 3 {
		if _, m, err := c.Get(ctx, "p", "en"); err != nil || m.Result != cache.Bypass {
			t.Fatalf("bypassed Get = %+v %v", m, err)
		}
	}
	keys, err := r.Client.Keys(ctx, r.Prefix+"*").Result()
	if err != nil || len(keys) != 0 || src.loads.Load() != 3 {
		t.Fatalf("bypass wrote %v to Redis (%v) or skipped the source (%d loads)", keys, err, src.loads.Load())
	}
}

// waitGauge waits until the gauge name in reg reads want.
func waitGauge(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	var got float64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name && len(mf.GetMetric()) == 1 {
				got = mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		if got == want {
			return
		}
	}
	t.Fatalf("%s = %v after 30s, want %v", name, got, want)
}
