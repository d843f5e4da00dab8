package cache_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// aclClient creates a Redis ACL user with cache.ACLRules(namespace) (a
// unique name, deleted when the test ends) and returns a client logged in
// as it, built like the services build theirs (cache.ClientOptions).
func aclClient(t *testing.T, r *testinfra.RedisPrefix, namespace string) *redis.Client {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	user, password := "t-cache-"+hex.EncodeToString(b[:4]), hex.EncodeToString(b[4:])
	args := []any{"ACL", "SETUSER", user, "reset", "on", ">" + password}
	for _, rule := range cache.ACLRules(namespace) {
		args = append(args, rule)
	}
	if err := r.Client.Do(ctx, args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Client.Do(context.Background(), "ACL", "DELUSER", user).Err(); err != nil {
			t.Errorf("ACL DELUSER %s: %v", user, err)
		}
	})
	u, err := url.Parse(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, password)
	opts, err := cache.ClientOptions(u.String())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// A cache logged in as a user with only ACLRules works as usual (misses,
// hits, "not found" markers, invalidations, the near layer's
// subscription), never failing open, and that user is refused anything
// outside its namespace: keys, channels and other commands.
func TestACLUserRunsTheCacheAndIsRefusedOutsideItsPrefix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testinfra.Redis(t)
	rdb := aclClient(t, r, r.Prefix)
	src := newSource()
	src.put(product{ID: "p", Name: "Lamp", Version: 1})
	near := cache.Config{Near: cache.NearConfig{Entities: 100, TTL: time.Hour}}
	a := newCache(t, rdb, r.Prefix, src, near)
	b := newCache(t, rdb, r.Prefix, src, near)
	runNear(t, a)
	runNear(t, b)

	if _, m := get(t, a, "p"); m.Result != cache.Miss {
		t.Fatalf("first read: %s, want miss", m.Result)
	}
	if _, m := get(t, b, "p"); m.Result != cache.Hit {
		t.Fatalf("B's first read: %s, want a hit in Redis (a fail-open miss means the ACL refused something)", m.Result)
	}
	src.put(product{ID: "p", Name: "Lamp", Version: 2})
	if err := a.Invalidate(ctx, "p", 2); err != nil {
		t.Fatalf("invalidate: %v", err)
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if v, _ := get(t, b, "p"); v.Version != 2 {
			return fmt.Errorf("B still reads version %d", v.Version)
		}
		return nil
	})
	if _, _, err := a.Get(ctx, "gone", "en"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("missing product: %v", err)
	}
	if _, m, _ := b.Get(ctx, "gone", "en"); m.Result != cache.Negative {
		t.Fatalf("missing product again: %s, want the negative marker from Redis", m.Result)
	}

	// Outside the cache's namespace (r.Prefix + ":*") but under the test's
	// prefix, so that testinfra deletes it should a refusal fail.
	elsewhere := r.Prefix + "-elsewhere"
	for _, cmd := range [][]any{
		{"SET", elsewhere, "x"},
		{"GET", elsewhere},
		{"PUBLISH", elsewhere, "x"},
		{"FLUSHDB"},
		{"KEYS", "*"},
		{"SCAN", "0"},
		{"CONFIG", "GET", "maxmemory-policy"},
		{"EVAL", "return redis.call('SET', KEYS[1], 'x')", "1", elsewhere},
	} {
		// NOPERM; inside a script Redis says "can't access" instead.
		err := rdb.Do(ctx, cmd...).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "NOPERM") && !strings.Contains(err.Error(), "can't access") {
			t.Errorf("%v as the cache's user: %v, want NOPERM", cmd, err)
		}
	}
	if n, err := r.Client.Exists(ctx, elsewhere).Result(); err != nil || n != 0 {
		t.Errorf("%s exists (%d, %v): a refused write went through", elsewhere, n, err)
	}
}

// ADR 0008: a version pointer must never expire or be evicted (an evicted
// pointer lets a slow reader store an old version as current again), so
// pointers have no TTL and everything else has one: Redis runs with a
// volatile-* eviction policy, which only evicts keys with a TTL.
func TestPointersHaveNoTTLAndEverythingElseHasOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testinfra.Redis(t)
	src := newSource()
	src.put(product{ID: "p", Name: "Lamp", Version: 1})
	src.put(product{ID: "q", Name: "Desk", Version: 1})
	c := newCache(t, r.Client, r.Prefix, src, cache.Config{})
	get(t, c, "p")                                    // pointer and value stored by a reader
	if err := c.Invalidate(ctx, "q", 3); err != nil { // pointer moved by a writer
		t.Fatal(err)
	}
	get(t, c, "q")
	if _, _, err := c.Get(ctx, "gone", "en"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("missing product: %v", err)
	}
	kinds := map[string]int{}
	iter := r.Client.Scan(ctx, 0, r.Prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		ttl, err := r.Client.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		kind := "other"
		for _, k := range []string{":ptr:", ":val:", ":neg:"} {
			if strings.Contains(key, k) {
				kind = k
			}
		}
		kinds[kind]++
		if pointer := kind == ":ptr:"; pointer != (ttl < 0) {
			t.Errorf("%s: TTL %s; want none for a pointer, one for anything else", key, ttl)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if kinds[":ptr:"] != 2 || kinds[":val:"] != 2 || kinds[":neg:"] != 1 || kinds["other"] != 0 {
		t.Fatalf("keys by kind %v, want 2 pointers, 2 values, 1 negative marker", kinds)
	}
}

// Errors about a Redis URL never show its password.
func TestClientOptionsNeverShowsThePassword(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"redis://catalog:s3cret-pw@redis:bad-port/0",
		"redis://catalog:s3cret-pw@redis:6379/not-a-db",
		"rediss//catalog:s3cret-pw@redis:6379/0",
		"redis://catalog:s3cret-pw@redis:6379/0?unknown_option=1",
	} {
		_, err := cache.ClientOptions(raw)
		if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "catalog") {
			t.Errorf("ClientOptions(%q): %v; want an error naming the user, not the password", raw, err)
		}
	}
	if got := cache.RedactURL("redis://catalog:s3cret-pw@redis:6379/0"); got != "redis://catalog:xxxxx@redis:6379/0" {
		t.Errorf("RedactURL = %s", got)
	}
}
