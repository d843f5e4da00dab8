package productstream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/product"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productstream"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productsvc"
	"github.com/shopfloor/shopfloor/services/catalog/migrations"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

var quiet = slog.New(slog.DiscardHandler)

func newService(t *testing.T, db *testinfra.Database, rdb redis.UniversalClient, ns, streamName string) *productsvc.Service {
	t.Helper()
	svc, err := productsvc.New(db.Pool, func(load cache.Loader[catalogapi.Product]) (*cache.Cache[catalogapi.Product], error) {
		return cache.New(rdb, load, cache.Config{Namespace: ns, Class: "product", BreakerOpenFor: time.Hour, RedisTimeout: time.Second}, quiet)
	}, outbox.New(streamName), quiet, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// deadRedis is a client of an address nothing listens on: Redis
// unreachable from this instance.
func deadRedis(t *testing.T) *redis.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	_ = ln.Close()
	dead := redis.NewClient(&redis.Options{Addr: deadAddr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { _ = dead.Close() })
	return dead
}

// purges records PURGE requests, standing in for a Varnish node.
type purges struct {
	mu   sync.Mutex
	keys []string
}

func (p *purges) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Method == "PURGE" {
		p.keys = append(p.keys, r.Header.Get("xkey-purge"))
	}
}

func (p *purges) count(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, k := range p.keys {
		if k == key {
			n++
		}
	}
	return n
}

// TestAWriteWhoseInvalidationFailedReachesReadersThroughTheStream: a write whose direct cache invalidation failed
// (Redis unreachable from that instance) still reaches readers through the
// stream: the consumer moves the pointer, warms the new version and purges
// the CDN. Replaying the stream from the start changes nothing.
func TestAWriteWhoseInvalidationFailedReachesReadersThroughTheStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations.FS)
	r := testinfra.Redis(t)
	nt := testinfra.NATS(t)
	name := nt.Name("CATALOG")
	if err := stream.EnsureStream(ctx, nt.JS, stream.StreamConfig{Name: name, Partitions: 2}); err != nil {
		t.Fatal(err)
	}

	dead := deadRedis(t)
	writer := newService(t, db, dead, r.Prefix, name)
	reader := newService(t, db, r.Client, r.Prefix, name)

	p, err := writer.Create(ctx, product.Product{SKU: "LAMP-9", Category: "lamps",
		Translations: map[string]catalogapi.ProductText{"en-US": {Name: "Lamp"}}, Prices: map[string]int64{"EUR": 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reader.Get(ctx, p.ID, "en-US", "EUR"); err != nil { // caches v1
		t.Fatal(err)
	}
	if _, err := writer.Update(ctx, p.ID, 1, func(p *product.Product) { p.Prices = map[string]int64{"EUR": 900} }); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := reader.Get(ctx, p.ID, "en-US", "EUR"); got.Version != 1 {
		t.Fatalf("before the consumer ran the reader saw v%d; the test needs the stale v1 cached", got.Version)
	}

	pub, err := stream.NewPublisher(nt.JS, name, 2)
	if err != nil {
		t.Fatal(err)
	}
	relay, err := outbox.NewRelay(db.Pool, outbox.StreamSink{name: pub}, outbox.RelayConfig{PollInterval: 50 * time.Millisecond}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	cdn := &purges{}
	cdnSrv := httptest.NewServer(cdn)
	defer cdnSrv.Close()
	inv := &productstream.Invalidator{Cache: reader.Cache(), Warm: reader.Warm, Purger: &productstream.Purger{URLs: []string{cdnSrv.URL}}, Log: quiet}

	run := func(fn func(context.Context) error) {
		gctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = fn(gctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	newGroup := func(group string) *stream.Group {
		g, err := stream.NewGroup(nt.JS, stream.GroupConfig{Stream: name, Name: group, FetchWait: 200 * time.Millisecond}, inv.Handle, quiet)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	run(relay.Run)
	run(newGroup(productstream.Group).Run)

	key := "product:" + p.ID + " category:lamps"
	testinfra.Eventually(t, 20*time.Second, func() error {
		if n := cdn.count(key); n != 2 {
			return fmt.Errorf("%d purges of %q", n, key)
		}
		return nil
	})
	got, meta, err := reader.Get(ctx, p.ID, "en-US", "EUR")
	if err != nil || got.Version != 2 || got.Price.AmountMinor != 900 || meta.Result != cache.Hit {
		t.Fatalf("after the consumer: %+v %+v %v; want v2 already warm (a hit)", got, meta, err)
	}

	// Replay the whole stream in a new group: same state, purges again.
	run(newGroup("replay").Run)
	testinfra.Eventually(t, 20*time.Second, func() error {
		if n := cdn.count(key); n != 4 {
			return fmt.Errorf("%d purges after the replay", n)
		}
		return nil
	})
	if got, _, _ := reader.Get(ctx, p.ID, "en-US", "EUR"); got.Version != 2 {
		t.Fatalf("after the replay the reader sees v%d, want 2 (the pointer never moves back)", got.Version)
	}
}

// TestPurgerMarksAnUnavailableCDNAsInfrastructure: a CDN node answering
// 5xx or 429 is an outage the invalidation consumer waits out
// (stream.IsInfrastructure: the budget is not spent); a refusal (403, 405)
// is not, and spends it like any other failure.
func TestPurgerMarksAnUnavailableCDNAsInfrastructure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		infra  bool
	}{{503, true}, {500, true}, {429, true}, {403, false}, {405, false}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(tc.status) }))
		err := (&productstream.Purger{URLs: []string{srv.URL}}).Purge(context.Background(), "product:1")
		srv.Close()
		if err == nil || stream.IsInfrastructure(err) != tc.infra {
			t.Errorf("status %d: %v, infrastructure = %v, want %v", tc.status, err, stream.IsInfrastructure(err), tc.infra)
		}
	}
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer ok.Close()
	if err := (&productstream.Purger{URLs: []string{ok.URL}}).Purge(context.Background(), "product:1"); err != nil {
		t.Errorf("200: %v", err)
	}
}

// TestInvalidationWaitsForRedis: an event whose invalidation cannot reach
// Redis is an infrastructure error (stream.IsInfrastructure): the
// consumer waits for Redis instead of spending the event's dead-letter
// budget (a game day dead-lettered one while Redis was cut and slow).
func TestInvalidationWaitsForRedis(t *testing.T) {
	t.Parallel()
	err := invalidateWithRedisDown(t, catalogapi.SchemaVersion)
	if err == nil || !stream.IsInfrastructure(err) || !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("invalidation with Redis down: %v (infrastructure %v), want an infrastructure error", err, stream.IsInfrastructure(err))
	}
}

// TestInvalidationRefusesAnUnknownSchemaVersion: a product.updated of a
// schemaversion this build does not know is poison (dead-lettered with
// the reason), never read as v1; it does not even wait for Redis.
func TestInvalidationRefusesAnUnknownSchemaVersion(t *testing.T) {
	t.Parallel()
	err := invalidateWithRedisDown(t, 2)
	if !stream.IsPermanent(err) || !errors.Is(err, events.ErrUnknownSchema) {
		t.Fatalf("product.updated v2: %v, want a permanent ErrUnknownSchema", err)
	}
}

// invalidateWithRedisDown hands the invalidation consumer a valid
// product.updated of the given schemaversion while Redis does not answer.
func invalidateWithRedisDown(t *testing.T, schemaVersion int) error {
	t.Helper()
	dead := deadRedis(t)
	c, err := cache.New(dead, func(context.Context, string, string) (catalogapi.Product, int64, error) {
		return catalogapi.Product{}, 0, cache.ErrNotFound
	},
		cache.Config{Namespace: "t", Class: "product", RedisTimeout: 100 * time.Millisecond}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.New("catalog", catalogapi.EventProductUpdated, "p1", schemaVersion, 2, catalogapi.ProductChanged{ID: "p1", Version: 2, Category: "lamps"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	payload, err := events.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return (&productstream.Invalidator{Cache: c, Log: quiet}).Handle(context.Background(), stream.Delivery{ID: ev.ID, Key: "p1", Payload: payload})
}
