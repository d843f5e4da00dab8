package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	neturl "net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/sony/gobreaker"
	"golang.org/x/sync/singleflight"
)

// Errors a Loader and Get use.
var (
	// ErrNotFound: the source has no such entity. Loaders return it (or
	// wrap it); Get returns it, from the negative cache or a load.
	ErrNotFound = errors.New("cache: not found")
	// ErrOverloaded: too many source loads in flight and nothing stale to
	// serve. Answer 503 with Retry-After.
	ErrOverloaded = errors.New("cache: source overloaded")
	// ErrUnavailable wraps Invalidate's error when Redis did not answer:
	// the invalidation is remembered and re-sent when Redis is back, and a
	// stream consumer should wait for Redis (stream.Infrastructure)
	// rather than spend the event's dead-letter budget.
	ErrUnavailable = errors.New("redis unavailable")
)

// Loader reads an entity from the source of truth and returns its value for
// variant and its current version.
type Loader[V any] func(ctx context.Context, id, variant string) (V, int64, error)

// Config tunes a Cache. Zero values take the defaults in the package doc.
type Config struct {
	// Namespace prefixes every key (tests use their own prefix). Default
	// "shopfloor".
	Namespace string
	// Class names the kind of entity in keys and metrics ("product").
	// Required.
	Class string
	// SchemaVersion is part of every key; bump it when V's encoding
	// changes. Default 1.
	SchemaVersion int
	HardTTL       time.Duration
	SoftTTL       time.Duration
	// Jitter is the ± fraction applied to HardTTL. Default 0.1.
	Jitter             float64
	NegativeTTL        time.Duration
	MaxConcurrentLoads int
	LoadWait           time.Duration
	RedisTimeout       time.Duration
	BreakerFailures    int
	BreakerOpenFor     time.Duration
	// Near is the optional in-process layer in front of Redis; off by
	// default. It needs Run.
	Near NearConfig
	// Registerer receives the metrics; nil: none.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	d := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	if c.Namespace == "" {
		c.Namespace = defaultNamespace
	}
	if c.SchemaVersion <= 0 {
		c.SchemaVersion = 1
	}
	d(&c.HardTTL, time.Hour)
	d(&c.SoftTTL, 5*time.Minute)
	d(&c.NegativeTTL, 5*time.Second)
	d(&c.LoadWait, 100*time.Millisecond)
	d(&c.RedisTimeout, 50*time.Millisecond)
	d(&c.BreakerOpenFor, 5*time.Second)
	if c.Jitter <= 0 || c.Jitter >= 1 {
		c.Jitter = 0.1
	}
	if c.MaxConcurrentLoads <= 0 {
		c.MaxConcurrentLoads = 16
	}
	if c.BreakerFailures <= 0 {
		c.BreakerFailures = 5
	}
	return c
}

// Result says where a value came from.
type Result string

// Results of Get.
const (
	Hit      Result = "hit"
	Stale    Result = "stale"
	Miss     Result = "miss"
	Negative Result = "negative"
	Bypass   Result = "bypass"
	FailOpen Result = "fail_open"
	// Near: served from the in-process layer without asking Redis.
	Near Result = "near"
)

// Meta describes a Get.
type Meta struct {
	Version int64
	Result  Result
}

// Cache is a versioned cache-aside of V.
type Cache[V any] struct {
	rdb     redis.UniversalClient
	load    Loader[V]
	cfg     Config
	log     *slog.Logger
	prefix  string
	group   singleflight.Group
	slots   chan struct{}
	breaker *gobreaker.CircuitBreaker
	bypass  atomic.Bool
	near    *near[V]
	pending pending
	m       metrics
	// refreshing holds keys with a background refresh in flight.
	refreshing sync.Map
}

// New returns a cache over rdb that loads misses with load.
func New[V any](rdb redis.UniversalClient, load Loader[V], cfg Config, log *slog.Logger) (*Cache[V], error) {
	if cfg.Class == "" {
		return nil, errors.New("cache: Config.Class is required")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cache[V]{
		rdb: rdb, load: load, cfg: cfg, log: log,
		prefix: fmt.Sprintf("%s:%s:s%d:", cfg.Namespace, cfg.Class, cfg.SchemaVersion),
		slots:  make(chan struct{}, cfg.MaxConcurrentLoads),
	}
	if cfg.Near.Entities > 0 {
		c.near = newNear[V](cfg.Near)
	}
	if err := c.m.register(cfg.Registerer, cfg.Class, c.near.len, func() int { return int(c.pending.n.Load()) }, c.Bypassed); err != nil {
		return nil, err
	}
	c.breaker = gobreaker.NewCircuitBreaker(gobreaker.Settings{
		Name:         "redis-" + cfg.Class,
		Timeout:      cfg.BreakerOpenFor,
		ReadyToTrip:  func(n gobreaker.Counts) bool { return n.ConsecutiveFailures >= uint32(cfg.BreakerFailures) },
		IsSuccessful: redisHealthy,
		OnStateChange: func(_ string, from, to gobreaker.State) {
			log.Warn("redis circuit breaker", "class", cfg.Class, "from", from.String(), "to", to.String())
			open := 0.0
			if to == gobreaker.StateOpen {
				open = 1
			}
			c.m.breakerOpen.Set(open)
		},
	})
	return c, nil
}

// redisHealthy tells the breaker which outcomes say nothing bad about
// Redis: success, a cache miss, and running out of time while waiting for
// a pooled connection (local overload: a burst of readers, not a sick
// server; those readers still fail open). Network errors and socket
// timeouts count as failures.
func redisHealthy(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return false
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrPoolTimeout)
}

// SetBypass turns the emergency switch on or off.
func (c *Cache[V]) SetBypass(on bool) { c.bypass.Store(on) }

// Bypassed reports the emergency switch.
func (c *Cache[V]) Bypassed() bool { return c.bypass.Load() }

func (c *Cache[V]) ptrKey(id string) string { return c.prefix + "ptr:" + id }
func (c *Cache[V]) negKey(id string) string { return c.prefix + "neg:" + id }
func (c *Cache[V]) valKey(id string, version int64, variant string) string {
	return c.prefix + "val:" + id + ":" + strconv.FormatInt(version, 10) + ":" + variant
}

// entry is what a value key holds.
type entry[V any] struct {
	V       V     `json:"v"`
	Version int64 `json:"ver"`
	// FreshUntil is the soft expiry, Unix milliseconds.
	FreshUntil int64 `json:"fresh"`
}

// read returns pointer+value in one round trip: {negative, version, value}.
var readScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return {1, false, false} end
local v = redis.call('GET', KEYS[1])
if not v then return {0, false, false} end
return {0, v, redis.call('GET', ARGV[1] .. v .. ARGV[2])}
`)

// store writes a value under its version, with its hard TTL, and moves
// the pointer forward only. The pointer has no TTL (see Pointers).
var storeScript = redis.NewScript(`
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
`)

// bump moves the pointer forward only (no TTL), drops the negative marker
// and tells every instance's near layer (ARGV[2] channel, ARGV[3]
// message).
var bumpScript = redis.NewScript(`
redis.call('DEL', KEYS[2])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`)

// redisDo runs fn through the breaker with the Redis timeout. It reports
// ok=false when Redis is skipped or failed (fail open).
func (c *Cache[V]) redisDo(ctx context.Context, fn func(ctx context.Context) (any, error)) (any, bool) {
	v, err := c.breaker.Execute(func() (any, error) {
		rctx, cancel := context.WithTimeout(ctx, c.cfg.RedisTimeout)
		defer cancel()
		return fn(rctx)
	})
	if err == nil {
		return v, true
	}
	if errors.Is(err, redis.Nil) {
		return nil, true
	}
	if !errors.Is(err, gobreaker.ErrOpenState) && !errors.Is(err, gobreaker.ErrTooManyRequests) {
		c.m.redisErrors.Inc()
		c.log.WarnContext(ctx, "redis failed, reading the source", "class", c.cfg.Class, "err", err)
	}
	return nil, false
}

// defaultNamespace is Config.Namespace's default.
const defaultNamespace = "shopfloor"

// ClientOptions parses a redis:// URL into options fit for a cache that
// fails open: context deadlines bound every socket operation
// (ContextTimeoutEnabled; without it go-redis waits its own read timeout
// and a paused Redis costs seconds per request), short dial and pool
// timeouts, and no retries (a failed read goes to the source instead).
// An error names the URL without its password (RedactURL).
func ClientOptions(url string) (*redis.Options, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		// url.Parse's errors quote the whole URL, password included.
		var uerr *neturl.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("cache: redis URL %s: %w", RedactURL(url), err)
	}
	o.ContextTimeoutEnabled = true
	// Nothing on connecting beyond HELLO (and SELECT): no CLIENT SETINFO,
	// no CLIENT MAINT_NOTIFICATIONS, so a user with only ACLRules is never
	// refused (and ACL LOG stays for real refusals).
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	o.DialTimeout = 250 * time.Millisecond
	o.PoolTimeout = 250 * time.Millisecond
	o.MaxRetries = -1
	return o, nil
}

// Get returns the value of id for variant.
func (c *Cache[V]) Get(ctx context.Context, id, variant string) (V, Meta, error) {
	var zero V
	if c.bypass.Load() {
		v, ver, err := c.loadDirect(ctx, id, variant)
		c.m.requests.WithLabelValues(string(Bypass)).Inc()
		return v, Meta{Version: ver, Result: Bypass}, err
	}
	var epoch uint64
	if c.near != nil {
		// The epoch is read before Redis is: a value read across a reset
		// of the near layer is not kept in it.
		epoch = c.near.epoch.Load()
		if v, ver, ok := c.near.get(id, variant); ok {
			c.m.requests.WithLabelValues(string(Near)).Inc()
			return v, Meta{Version: ver, Result: Near}, nil
		}
	}
	var raw any
	ok := c.flushPending(ctx) || !c.pending.has(id)
	if ok {
		raw, ok = c.redisDo(ctx, func(ctx context.Context) (any, error) {
			return readScript.Run(ctx, c.rdb, []string{c.ptrKey(id), c.negKey(id)},
				c.prefix+"val:"+id+":", ":"+variant).Slice()
		})
	}
	if !ok {
		// Redis is down, skipped, or may point at an older version of id
		// (an invalidation of id failed and is not re-sent yet) or skipped: the source answers, coalesced and
		// capped, and nothing is written back.
		v, ver, err := c.loadShared(ctx, id, variant, false)
		c.m.requests.WithLabelValues(string(FailOpen)).Inc()
		return v, Meta{Version: ver, Result: FailOpen}, err
	}
	var stale *entry[V]
	if res, _ := raw.([]any); len(res) == 3 {
		if neg, _ := res[0].(int64); neg == 1 {
			c.m.requests.WithLabelValues(string(Negative)).Inc()
			return zero, Meta{Result: Negative}, ErrNotFound
		}
		if s, ok := res[2].(string); ok {
			var e entry[V]
			if err := json.Unmarshal([]byte(s), &e); err == nil {
				if time.Now().UnixMilli() < e.FreshUntil {
					if c.near != nil {
						c.near.put(epoch, id, variant, e.V, e.Version, time.UnixMilli(e.FreshUntil))
					}
					c.m.requests.WithLabelValues(string(Hit)).Inc()
					return e.V, Meta{Version: e.Version, Result: Hit}, nil
				}
				stale = &e
			}
		}
	}
	if stale != nil {
		c.refreshInBackground(ctx, id, variant)
		c.m.requests.WithLabelValues(string(Stale)).Inc()
		return stale.V, Meta{Version: stale.Version, Result: Stale}, nil
	}
	v, ver, err := c.loadShared(ctx, id, variant, true)
	if errors.Is(err, ErrNotFound) {
		c.m.requests.WithLabelValues(string(Negative)).Inc()
		return zero, Meta{Result: Negative}, err
	}
	if err == nil && c.near != nil {
		c.near.put(epoch, id, variant, v, ver, time.Now().Add(c.cfg.SoftTTL))
	}
	c.m.requests.WithLabelValues(string(Miss)).Inc()
	return v, Meta{Version: ver, Result: Miss}, err
}

type loaded[V any] struct {
	v   V
	ver int64
}

// loadShared loads through singleflight: one load per key per instance.
func (c *Cache[V]) loadShared(ctx context.Context, id, variant string, store bool) (V, int64, error) {
	key := id + "\x00" + variant
	c.m.waiters.Inc()
	defer c.m.waiters.Dec()
	ch := c.group.DoChan(key, func() (any, error) {
		// The load outlives any one caller's cancellation: others share it.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if store {
			// Double-check: a flight that finished between this reader's
			// miss and now has stored the value.
			if e, ok := c.readFresh(lctx, id, variant); ok {
				return loaded[V]{e.V, e.Version}, nil
			}
		}
		v, ver, err := c.loadCapped(lctx, id, variant)
		if store {
			c.storeResult(lctx, id, variant, v, ver, err)
		}
		return loaded[V]{v, ver}, err
	})
	select {
	case <-ctx.Done():
		var zero V
		return zero, 0, ctx.Err()
	case r := <-ch:
		if r.Shared {
			c.m.coalesced.Inc()
		}
		l, _ := r.Val.(loaded[V])
		return l.v, l.ver, r.Err
	}
}

// readFresh returns a fresh entry of id/variant from Redis, if any.
func (c *Cache[V]) readFresh(ctx context.Context, id, variant string) (entry[V], bool) {
	raw, ok := c.redisDo(ctx, func(ctx context.Context) (any, error) {
		return readScript.Run(ctx, c.rdb, []string{c.ptrKey(id), c.negKey(id)},
			c.prefix+"val:"+id+":", ":"+variant).Slice()
	})
	res, _ := raw.([]any)
	if !ok || len(res) != 3 {
		return entry[V]{}, false
	}
	s, isStr := res[2].(string)
	if !isStr {
		return entry[V]{}, false
	}
	var e entry[V]
	if err := json.Unmarshal([]byte(s), &e); err != nil || time.Now().UnixMilli() >= e.FreshUntil {
		return entry[V]{}, false
	}
	return e, true
}

// loadCapped runs the loader within the concurrency cap.
func (c *Cache[V]) loadCapped(ctx context.Context, id, variant string) (V, int64, error) {
	select {
	case c.slots <- struct{}{}:
	default:
		t := time.NewTimer(c.cfg.LoadWait)
		defer t.Stop()
		select {
		case c.slots <- struct{}{}:
		case <-t.C:
			c.m.loads.WithLabelValues("overloaded").Inc()
			var zero V
			return zero, 0, ErrOverloaded
		case <-ctx.Done():
			var zero V
			return zero, 0, ctx.Err()
		}
	}
	defer func() { <-c.slots }()
	return c.loadDirect(ctx, id, variant)
}

func (c *Cache[V]) loadDirect(ctx context.Context, id, variant string) (V, int64, error) {
	start := time.Now()
	v, ver, err := c.load(ctx, id, variant)
	c.m.loadSeconds.Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		c.m.loads.WithLabelValues("ok").Inc()
	case errors.Is(err, ErrNotFound):
		c.m.loads.WithLabelValues("not_found").Inc()
		err = ErrNotFound
	default:
		c.m.loads.WithLabelValues("error").Inc()
	}
	return v, ver, err
}

func (c *Cache[V]) storeResult(ctx context.Context, id, variant string, v V, ver int64, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		c.redisDo(ctx, func(ctx context.Context) (any, error) {
			return nil, c.rdb.Set(ctx, c.negKey(id), "1", c.cfg.NegativeTTL).Err()
		})
	case err == nil:
		body, merr := json.Marshal(entry[V]{V: v, Version: ver, FreshUntil: time.Now().Add(c.cfg.SoftTTL).UnixMilli()})
		if merr != nil {
			c.log.ErrorContext(ctx, "cache encode", "class", c.cfg.Class, "err", merr)
			return
		}
		ttl := c.jittered(c.cfg.HardTTL)
		c.redisDo(ctx, func(ctx context.Context) (any, error) {
			return nil, storeScript.Run(ctx, c.rdb, []string{c.ptrKey(id), c.valKey(id, ver, variant)},
				ver, body, ttl.Milliseconds()).Err()
		})
	}
}

// refreshInBackground reloads a stale entry once, while readers keep
// getting the stale value.
func (c *Cache[V]) refreshInBackground(ctx context.Context, id, variant string) {
	key := id + "\x00" + variant
	if _, busy := c.refreshing.LoadOrStore(key, true); busy {
		return
	}
	go func() {
		defer c.refreshing.Delete(key)
		_, _, _ = c.loadShared(context.WithoutCancel(ctx), id, variant, true)
	}()
}

// Invalidate moves id's pointer to version (never backwards) and removes
// its "not found" marker. Call it after committing a create or an update.
func (c *Cache[V]) Invalidate(ctx context.Context, id string, version int64) error {
	if c.near != nil {
		c.near.invalidate(id, version)
	}
	_, ok := c.redisDo(ctx, func(ctx context.Context) (any, error) {
		return nil, bumpScript.Run(ctx, c.rdb, []string{c.ptrKey(id), c.negKey(id)}, version,
			c.invalidationChannel(), id+" "+strconv.FormatInt(version, 10)).Err()
	})
	if !ok {
		// Remembered and re-sent when Redis answers again (pending).
		if !c.pending.add(id, version) && !c.pending.dropped.Swap(true) {
			c.log.ErrorContext(ctx, "too many invalidations waiting for Redis; later ones are dropped and their entities may be served stale until the soft TTL",
				"class", c.cfg.Class, "limit", maxPending)
		}
		return fmt.Errorf("cache: invalidate %s %s: %w (re-sent when it is back)", c.cfg.Class, id, ErrUnavailable)
	}
	c.pending.done(id, version)
	return nil
}

// Warm loads id for variant and stores it (the invalidation consumer warms
// the new version so the first reader after a change hits).
func (c *Cache[V]) Warm(ctx context.Context, id, variant string) error {
	_, _, err := c.loadShared(ctx, id, variant, true)
	return err
}

func (c *Cache[V]) jittered(d time.Duration) time.Duration {
	f := 1 + c.cfg.Jitter*(2*rand.Float64()-1) //nolint:gosec // G404: jitter, not security
	return time.Duration(float64(d) * f)
}

type metrics struct {
	requests    *prometheus.CounterVec
	loads       *prometheus.CounterVec
	coalesced   prometheus.Counter
	redisErrors prometheus.Counter
	loadSeconds prometheus.Observer
	breakerOpen prometheus.Gauge
	waiters     prometheus.Gauge
	// near layer
	nearSynced        prometheus.Gauge
	nearInvalidations prometheus.Counter
	pendingResent     prometheus.Counter
}

func (m *metrics) register(reg prometheus.Registerer, class string, nearLen, pendingLen func() int, bypassedNow func() bool) error {
	l := prometheus.Labels{"class": class}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cache_requests_total", Help: "Cache reads by result.", ConstLabels: l}, []string{"result"})
	loads := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cache_loads_total", Help: "Source loads by outcome.", ConstLabels: l}, []string{"outcome"})
	coalesced := prometheus.NewCounter(prometheus.CounterOpts{Name: "cache_coalesced_total", Help: "Reads that waited for another reader's load.", ConstLabels: l})
	redisErrors := prometheus.NewCounter(prometheus.CounterOpts{Name: "cache_redis_errors_total", Help: "Redis errors and timeouts (each failed open).", ConstLabels: l})
	loadSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cache_load_duration_seconds", Help: "Source load latency.", ConstLabels: l, Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})
	breakerOpen := prometheus.NewGauge(prometheus.GaugeOpts{Name: "cache_breaker_open", Help: "1 while Redis is skipped by the circuit breaker.", ConstLabels: l})
	waiters := prometheus.NewGauge(prometheus.GaugeOpts{Name: "cache_load_waiters", Help: "Readers waiting right now for a source load (the loader and those coalesced onto it).", ConstLabels: l})
	m.requests, m.loads, m.coalesced, m.redisErrors, m.loadSeconds, m.breakerOpen, m.waiters = requests, loads, coalesced, redisErrors, loadSeconds, breakerOpen, waiters
	m.nearSynced = prometheus.NewGauge(prometheus.GaugeOpts{Name: "cache_near_synced", Help: "1 while the near layer serves (its invalidation subscription is up).", ConstLabels: l})
	m.nearInvalidations = prometheus.NewCounter(prometheus.CounterOpts{Name: "cache_near_invalidations_total", Help: "Invalidations the near layer received.", ConstLabels: l})
	bypassed := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cache_bypass", Help: "1 while the emergency switch (SetBypass) sends every read to the source.", ConstLabels: l},
		func() float64 {
			if bypassedNow() {
				return 1
			}
			return 0
		})
	nearEntities := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cache_near_entities", Help: "Entities held by the near layer.", ConstLabels: l}, func() float64 { return float64(nearLen()) })
	m.pendingResent = prometheus.NewCounter(prometheus.CounterOpts{Name: "cache_invalidations_resent_total", Help: "Invalidations re-sent after Redis was unreachable when they were made.", ConstLabels: l})
	pendingGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cache_invalidations_pending", Help: "Invalidations waiting for Redis to come back (their entities are read from the source meanwhile).", ConstLabels: l}, func() float64 { return float64(pendingLen()) })
	if reg == nil {
		return nil
	}
	for _, col := range []prometheus.Collector{requests, loads, coalesced, redisErrors, loadSeconds, breakerOpen, waiters, m.nearSynced, m.nearInvalidations, nearEntities, m.pendingResent, pendingGauge, bypassed} {
		if err := reg.Register(col); err != nil {
			return fmt.Errorf("cache metrics: %w", err)
		}
	}
	return nil
}
