package cache_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// runNear runs c's invalidation subscription for the test and waits until
// the near layer serves.
func runNear(t *testing.T, c *cache.Cache[product]) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitSynced(t, c, true)
}

func waitSynced(t *testing.T, c *cache.Cache[product], want bool) {
	t.Helper()
	testinfra.Eventually(t, 10*time.Second, func() error {
		if c.NearSynced() != want {
			return fmt.Errorf("near synced = %v, want %v", !want, want)
		}
		return nil
	})
}

// nearPair returns two instances over one Redis prefix, each with a near
// layer (an hour's TTL, so only invalidations move it) kept in step, and
// their source holding product "p" at version 1.
func nearPair(t *testing.T) (*source, *cache.Cache[product], *cache.Cache[product]) {
	t.Helper()
	r := testinfra.Redis(t)
	src := newSource()
	src.put(product{ID: "p", Name: "Lamp", Version: 1})
	near := cache.Config{Near: cache.NearConfig{Entities: 100, TTL: time.Hour}}
	a := newCache(t, r.Client, r.Prefix, src, near)
	b := newCache(t, r.Client, r.Prefix, src, near)
	runNear(t, a)
	runNear(t, b)
	return src, a, b
}

// get reads id and fails the test on an error.
func get(t *testing.T, c *cache.Cache[product], id string) (product, cache.Meta) {
	t.Helper()
	v, m, err := c.Get(context.Background(), id, "en")
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	return v, m
}

// Two instances over one Redis: B serves its near copy without asking
// Redis, and an update invalidated on A reaches B's near layer.
func TestNearServesAndFollowsInvalidations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, a, b := nearPair(t)

	if _, m := get(t, b, "p"); m.Result != cache.Miss {
		t.Fatalf("first read: %s, want miss", m.Result)
	}
	if v, m := get(t, b, "p"); m.Result != cache.Near || v.Version != 1 {
		t.Fatalf("second read: %s version %d, want near version 1", m.Result, v.Version)
	}
	loads := src.loads.Load()

	src.put(product{ID: "p", Name: "Lamp", Version: 2})
	if err := a.Invalidate(ctx, "p", 2); err != nil {
		t.Fatal(err)
	}
	// A's own layer knows at once (the writer reads its write).
	if v, _ := get(t, a, "p"); v.Version != 2 {
		t.Fatalf("A read version %d right after its own invalidation, want 2", v.Version)
	}
	// B learns through the channel; its near copy of 1 has an hour to
	// live, so only the invalidation can move it.
	testinfra.Eventually(t, 10*time.Second, func() error {
		if v, _ := get(t, b, "p"); v.Version != 2 {
			return fmt.Errorf("B still reads version %d", v.Version)
		}
		return nil
	})
	if v, m := get(t, b, "p"); m.Result != cache.Near || v.Version != 2 {
		t.Fatalf("after the update: %s version %d, want near version 2", m.Result, v.Version)
	}
	if n := src.loads.Load() - loads; n != 1 {
		t.Fatalf("%d source loads for the update across two instances, want 1 (A's; B reads it from Redis)", n)
	}
}

// A slow reader on B loads version 1 while the entity moves to version 2:
// its result is answered to it but never kept in B's near layer.
func TestNearSlowReaderCannotKeepOldVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, a, b := nearPair(t)

	release := make(chan struct{})
	src.mu.Lock()
	src.hold["p"] = release
	src.mu.Unlock()
	slow := make(chan product, 1)
	go func() {
		v, _, err := b.Get(ctx, "p", "en")
		if err != nil {
			t.Error(err)
		}
		slow <- v
	}()
	// B's load has read version 1 and holds; now the write lands.
	testinfra.Eventually(t, 10*time.Second, func() error {
		if src.loads.Load() == 0 {
			return errors.New("no load yet")
		}
		return nil
	})
	src.mu.Lock()
	src.rows["p"] = product{ID: "p", Name: "Lamp", Version: 2}
	delete(src.hold, "p")
	src.mu.Unlock()
	if err := a.Invalidate(ctx, "p", 2); err != nil {
		t.Fatal(err)
	}
	// Wait until B's layer has heard of version 2 before the slow reader
	// tries to keep version 1.
	waitInvalidated(t, b, "p", 2)
	close(release)
	if v := <-slow; v.Version != 1 {
		t.Fatalf("the slow reader got version %d, want the 1 it loaded", v.Version)
	}
	if v, m := get(t, b, "p"); v.Version != 2 {
		t.Fatalf("B read version %d (%s) after the slow reader finished, want 2: the old value was kept", v.Version, m.Result)
	}
}

// waitInvalidated waits until c's near layer knows id is at version.
func waitInvalidated(t *testing.T, c *cache.Cache[product], id string, version int64) {
	t.Helper()
	testinfra.Eventually(t, 10*time.Second, func() error {
		if got := cache.NearFloor(c, id); got < version {
			return fmt.Errorf("near floor of %s is %d, want %d", id, got, version)
		}
		return nil
	})
}

// redisViaProxy returns a client that reaches the Redis at url through a
// proxy the test controls.
func redisViaProxy(t *testing.T, url string) (*testinfra.Proxy, *redis.Client) {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testinfra.NewProxy(t, opts.Addr)
	opts.Addr, opts.MaxRetries = proxy.Addr(), -1
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return proxy, c
}

// Losing the subscription stops the near layer; an invalidation sent
// while B could not hear it is not missed once B is back, because B
// starts empty.
func TestNearLostSubscriptionStartsEmpty(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testinfra.Redis(t)
	proxy, viaProxy := redisViaProxy(t, r.URL)

	src := newSource()
	src.put(product{ID: "p", Name: "Lamp", Version: 1})
	near := cache.Config{Near: cache.NearConfig{Entities: 100, TTL: time.Hour}, BreakerOpenFor: 100 * time.Millisecond}
	a := newCache(t, r.Client, r.Prefix, src, near)
	b := newCache(t, viaProxy, r.Prefix, src, near)
	runNear(t, b)
	get(t, b, "p")
	if _, m := get(t, b, "p"); m.Result != cache.Near {
		t.Fatalf("read before the outage: %s, want near", m.Result)
	}

	proxy.Down()
	waitSynced(t, b, false)
	if _, m := get(t, b, "p"); m.Result == cache.Near {
		t.Fatal("served near while the invalidation subscription was down")
	}
	src.put(product{ID: "p", Name: "Lamp", Version: 2})
	if err := a.Invalidate(ctx, "p", 2); err != nil { // B cannot hear this
		t.Fatal(err)
	}
	proxy.Up()
	waitSynced(t, b, true)
	testinfra.Eventually(t, 10*time.Second, func() error {
		if v, m := get(t, b, "p"); v.Version != 2 || m.Result == cache.FailOpen {
			return fmt.Errorf("B read version %d (%s) after the outage, want 2 from Redis", v.Version, m.Result)
		}
		return nil
	})
}

// A link that hangs (no error, no answers) is noticed by the PING within
// the near TTL, and the layer stops serving.
func TestNearHungLinkStopsServing(t *testing.T) {
	t.Parallel()
	r := testinfra.Redis(t)
	proxy, viaProxy := redisViaProxy(t, r.URL)
	src := newSource()
	src.put(product{ID: "p", Name: "Lamp", Version: 1})
	b := newCache(t, viaProxy, r.Prefix, src, cache.Config{Near: cache.NearConfig{Entities: 100, TTL: 500 * time.Millisecond}})
	runNear(t, b)
	proxy.Blackhole()
	waitSynced(t, b, false)
	proxy.Up()
	waitSynced(t, b, true)
}

// Readers on B never see versions go backwards while A writes, and B ends
// on the last version.
func TestNearMonotonicUnderWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, a, b := nearPair(t)
	const last = 60
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			var seen int64
			for {
				select {
				case <-stop:
					return
				default:
				}
				v, _, err := b.Get(ctx, "p", "en")
				if err != nil {
					t.Error(err)
					return
				}
				if v.Version < seen {
					t.Errorf("version went back from %d to %d", seen, v.Version)
					return
				}
				seen = v.Version
			}
		})
	}
	for ver := int64(2); ver <= last; ver++ {
		src.put(product{ID: "p", Name: "Lamp", Version: ver})
		if err := a.Invalidate(ctx, "p", ver); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if v, _ := get(t, b, "p"); v.Version != last {
			return fmt.Errorf("B reads version %d, want %d", v.Version, last)
		}
		return nil
	})
	close(stop)
	wg.Wait()
}

// An invalidation made while Redis was unreachable is re-sent before the
// instance reads Redis again: the writer never reads its old version, and
// another instance stops reading it as soon as the writer has read once.
func TestFailedInvalidationIsResentBeforeTheNextRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testinfra.Redis(t)
	proxy, viaProxy := redisViaProxy(t, r.URL)
	src := newSource()
	src.put(product{ID: "p", Name: "Lamp", Version: 1})
	cfg := cache.Config{BreakerFailures: 1, BreakerOpenFor: 100 * time.Millisecond}
	a := newCache(t, viaProxy, r.Prefix, src, cfg) // the writer, cut off
	b := newCache(t, r.Client, r.Prefix, src, cfg) // another instance
	get(t, a, "p")
	if v, _ := get(t, b, "p"); v.Version != 1 {
		t.Fatalf("B read version %d, want 1", v.Version)
	}

	proxy.Down()
	src.put(product{ID: "p", Name: "Lamp", Version: 2})
	if err := a.Invalidate(ctx, "p", 2); err == nil {
		t.Fatal("Invalidate with Redis unreachable reported success")
	}
	if v, m := get(t, a, "p"); v.Version != 2 {
		t.Fatalf("the writer read version %d (%s) during the outage, want 2", v.Version, m.Result)
	}
	proxy.Up()
	// The breaker lets A try Redis again after 100ms; whatever A answers
	// meanwhile comes from the source, never the old pointer.
	testinfra.Eventually(t, 10*time.Second, func() error {
		v, m := get(t, a, "p")
		if v.Version != 2 {
			t.Fatalf("the writer read version %d (%s) after the outage, want 2", v.Version, m.Result)
		}
		if m.Result == cache.FailOpen {
			return errors.New("A still fails open")
		}
		return nil
	})
	if v, m := get(t, b, "p"); v.Version != 2 {
		t.Fatalf("B read version %d (%s) after the writer's first Redis read, want 2: the invalidation was not re-sent", v.Version, m.Result)
	}
}

// An idle writer's Run re-sends its failed invalidations when Redis comes
// back, without any read to trigger it.
func TestRunResendsFailedInvalidations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testinfra.Redis(t)
	proxy, viaProxy := redisViaProxy(t, r.URL)
	src := newSource()
	src.put(product{ID: "p", Name: "Lamp", Version: 1})
	cfg := cache.Config{BreakerFailures: 1, BreakerOpenFor: 100 * time.Millisecond}
	a := newCache(t, viaProxy, r.Prefix, src, cfg)
	b := newCache(t, r.Client, r.Prefix, src, cfg)
	get(t, b, "p")
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	proxy.Down()
	src.put(product{ID: "p", Name: "Lamp", Version: 2})
	if err := a.Invalidate(ctx, "p", 2); err == nil {
		t.Fatal("Invalidate with Redis unreachable reported success")
	}
	proxy.Up()
	testinfra.Eventually(t, 10*time.Second, func() error {
		if v, _ := get(t, b, "p"); v.Version != 2 {
			return fmt.Errorf("B still reads version %d", v.Version)
		}
		return nil
	})
}
