package drill

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/chaos/invariant"
	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
)

// cacheDrills are the drills of the catalog cache: redis-flush, invalidation-lost.
func cacheDrills() []Drill { return []Drill{redisFlush(), invalidationLost()} }

// --- redis-flush --------------------------------------------------------------

const (
	// flushWindow is how long after the flush the source loads are
	// counted: long enough for every near-cache entry (CACHE_NEAR_TTL,
	// 1s) to have expired and every hot key to have missed in Redis.
	flushWindow = 5 * time.Second
	// flushP99 is how much the flush may add to the read p99 (over the
	// p99 of the same prober's reads before it): a read that misses
	// waits for one source load of its key (coalesced: a primary-key
	// read of a few ms) and at most LoadWait (100ms) for one of
	// MaxConcurrentLoads (16) load slots (pkg/cache); the rest is room
	// for two shared cores. A stampede queues every reader of a hot key
	// behind its own PostgreSQL query instead. Relative, not absolute:
	// a loaded machine's baseline p99 is not the cache's doing.
	flushP99 = 250 * time.Millisecond
	// zipfS is the skew of the read load (math/rand/v2's Zipf, v=1):
	// product k is read in proportion to (k+1)^-1.2, so the few hottest
	// products take most reads (the hottest of 200 about a quarter), as
	// on a shop's front page.
	zipfS = 1.2
	// zipfProducts is how many products the read load spreads over.
	zipfProducts = 200
	// readersServing are the catalog processes that serve reads (the api
	// role); each has its own cache instance and source loads.
	readersServing = "catalog"
)

// valKeys matches every cached value of the catalog's product cache
// (pkg/cache: <ns>:<class>:s<schema>:val:<id>:<version>:<variant>): one per
// key a reader loaded and stored.
var valKeys = target.CacheNamespace + "product:s*:val:*"

// cacheCounters are one catalog process's product-cache counters.
type cacheCounters struct {
	loads, misses, coalesced, redisErrors, failOpen float64
	breakerOpen                                     bool // a gauge: now, not a delta
}

func (c cacheCounters) minus(o cacheCounters) cacheCounters {
	return cacheCounters{loads: c.loads - o.loads, misses: c.misses - o.misses, coalesced: c.coalesced - o.coalesced,
		redisErrors: c.redisErrors - o.redisErrors, failOpen: c.failOpen - o.failOpen, breakerOpen: c.breakerOpen}
}

// scrapeCache reads process's product-cache counters from its /metrics:
// cache_loads_total{outcome="ok"} (source loads that found the product),
// cache_requests_total{result="miss"|"fail_open"}, cache_coalesced_total,
// cache_redis_errors_total.
func scrapeCache(ctx context.Context, sys *target.System, process string) (cacheCounters, error) {
	var c cacheCounters
	samples, err := target.Scrape(ctx, sys.Client(), sys.Metrics[process])
	if err != nil {
		return c, err
	}
	for _, s := range samples {
		if s.Label("class") != "product" {
			continue
		}
		switch s.Name {
		case "cache_loads_total":
			if s.Label("outcome") == "ok" {
				c.loads += s.Value
			}
		case "cache_requests_total":
			switch s.Label("result") {
			case "miss":
				c.misses += s.Value
			case "fail_open":
				c.failOpen += s.Value
			}
		case "cache_coalesced_total":
			c.coalesced += s.Value
		case "cache_redis_errors_total":
			c.redisErrors += s.Value
		case "cache_breaker_open":
			c.breakerOpen = c.breakerOpen || s.Value > 0
		}
	}
	return c, nil
}

// flushResult is what redis-flush's Inject measured, for Effect and the
// probe's rows.
type flushResult struct {
	at                    time.Time // the FLUSHDB answered
	sizeBefore, sizeAfter int64
	delta                 cacheCounters // catalog, over flushWindow
	keys                  int64         // cached values in Redis at the end of the window
	err                   error         // the window could not be measured
}

// flushes holds each run's flushResult (Inject writes it; Effect and the
// probe read it after the heal).
var flushes sync.Map // *Run → *flushResult

func flushOf(r *Run) *flushResult {
	v, _ := flushes.Load(r)
	f, _ := v.(*flushResult)
	return f
}

func redisFlush() Drill {
	return Drill{
		Name:     "redis-flush",
		Resource: "redis",
		GameDay:  true,
		Fault: "FLUSHDB the topology's own Redis database (catalog's cache: pointers, values, negative markers all gone at once) " +
			"under a Zipf read load (bursts of 8 concurrent reads, 5 bursts/s, over 200 products, every tenth read through the CDN). " +
			"The issue's FLUSHALL, narrowed: the Redis server is shared with tests and other copies of the topology, " +
			"each in its own database (SHOPFLOOR_REDIS_DB), so emptying this system's database is what losing its Redis means; FLUSHALL would wipe theirs too",
		Proves: fmt.Sprintf("a cold cache does not stampede PostgreSQL: in the %s after the flush catalog makes at most one source load per key "+
			"(singleflight per instance, a double-check in Redis inside the flight), every read answers 200 and the flush adds at most %s to the read p99; checkouts keep working", flushWindow, flushP99),
		Inject: flushRedis,
		Heal: func(_ context.Context, r *Run) error {
			r.Logf("nothing to heal: the cache refills from PostgreSQL as it is read")
			return nil
		},
		Effect: flushEffect,
		Probe:  zipfProbe,
	}
}

// flushRedis snapshots catalog's cache counters, flushes the database,
// and measures the next flushWindow: source loads, misses, and the values
// stored again.
func flushRedis(ctx context.Context, r *Run) error {
	f := &flushResult{}
	// Flush a cache that works: with Redis skipped (breaker open) reads
	// would not even see the flush.
	var before cacheCounters
	for deadline := time.Now().Add(15 * time.Second); ; {
		var err error
		if before, err = scrapeCache(ctx, r.Sys, readersServing); err != nil {
			return fmt.Errorf("catalog cache counters: %w", err)
		}
		if !before.breakerOpen || time.Now().After(deadline) || !sleep(ctx, 500*time.Millisecond) {
			break
		}
	}
	if before.breakerOpen {
		r.Logf("catalog's Redis breaker is open (Redis slower than 50ms?): flushing anyway")
	}
	var err error
	if f.sizeBefore, err = r.Sys.RedisFlushDB(ctx); err != nil {
		return err
	}
	f.at = time.Now()
	flushes.Store(r, f)
	f.sizeAfter, _ = r.Sys.RedisDBSize(ctx)
	r.Logf("FLUSHDB %s: DBSIZE %d → %d", cache.RedactURL(r.Sys.Redis), f.sizeBefore, f.sizeAfter)
	if !sleep(ctx, flushWindow-time.Since(f.at)) {
		f.err = ctx.Err()
		return nil
	}
	after, err := scrapeCache(ctx, r.Sys, readersServing)
	if err != nil {
		f.err = fmt.Errorf("catalog cache counters: %w", err)
		return nil
	}
	// After the counters: a value stored between the two reads makes the
	// bound looser by one, never a load uncounted.
	keys, err := r.Sys.RedisCount(ctx, valKeys)
	if err != nil {
		f.err = err
		return nil
	}
	f.delta, f.keys = after.minus(before), keys
	r.Logf("%s after the flush: catalog made %g source loads, %g misses, %g coalesced reads; %d values cached again",
		flushWindow, f.delta.loads, f.delta.misses, f.delta.coalesced, f.keys)
	return nil
}

func flushEffect(r *Run) invariant.Result {
	res := invariant.Result{Invariant: effectName}
	f := flushOf(r)
	if f == nil {
		res.Evidence = "the flush did not happen"
		return res
	}
	res.Held = f.sizeBefore > 0 && f.sizeAfter < f.sizeBefore && f.delta.misses > 0
	res.Evidence = fmt.Sprintf("FLUSHDB dropped the cache: DBSIZE %d before, %d right after; catalog missed %g reads in Redis in the %s after",
		f.sizeBefore, f.sizeAfter, f.delta.misses, flushWindow)
	res.Counts = map[string]int{"dbsize_before": int(f.sizeBefore), "dbsize_after": int(f.sizeAfter), "misses": int(f.delta.misses)}
	if f.err != nil {
		res.Held = false
		res.Evidence += "; not measured: " + f.err.Error()
	}
	return res
}

// stampedeRow: source loads ≤ keys loaded. Every load of a found product
// stores its value under (id, version, variant); after a flush nothing
// else is there, so the values in Redis at the end of the window count
// the distinct keys loaded, and any load beyond them loaded a key twice.
// A load whose store failed (a Redis error) or that served a read failing
// open is not stored: allowed for, one each, and shown.
func stampedeRow(f *flushResult) invariant.Result {
	res := invariant.Result{Invariant: fmt.Sprintf("stampede protection: ≤ 1 source load per key per catalog instance in the %s after the flush", flushWindow)}
	if f == nil || f.err != nil {
		res.Evidence = "not measured"
		if f != nil {
			res.Evidence += ": " + f.err.Error()
		}
		return res
	}
	d := f.delta
	// A read that failed open (a Redis timeout over 50ms, the breaker
	// open) loads at most once, coalesced, and stores nothing; a Redis
	// error may be a store that failed: each allows one load more.
	allowed := float64(f.keys) + d.redisErrors + d.failOpen
	res.Held = d.loads > 0 && d.loads <= allowed
	res.Evidence = fmt.Sprintf("%s: %g source loads (cache_loads_total{outcome=\"ok\"}) for %d keys cached again (product × version × variant); "+
		"%g reads coalesced onto another reader's load (cache_coalesced_total), %g misses; %g Redis errors, %g reads failed open",
		readersServing, d.loads, f.keys, d.coalesced, d.misses, d.redisErrors, d.failOpen)
	if d.loads > allowed {
		res.Evidence += fmt.Sprintf("; %g loads beyond one per key", d.loads-allowed)
	}
	if d.failOpen > 0 {
		res.Evidence += fmt.Sprintf("; bound %g = keys + Redis errors + reads failed open (Redis slower than 50ms: each loads once and stores nothing)", allowed)
	}
	res.Counts = map[string]int{"loads": int(d.loads), "keys": int(f.keys), "coalesced": int(d.coalesced), "misses": int(d.misses),
		"redis_errors": int(d.redisErrors), "fail_open": int(d.failOpen)}
	return res
}

// zipfProbe is redis-flush's read load: 8 readers, each reading every
// 200ms (their ticks fall together: bursts of 8 concurrent reads, the
// way a page's fragments or a CDN's revalidations arrive), the product of
// each read drawn from a Zipf distribution over up to 200 products
// (seeded: Config.Seed, else the run's id), every tenth read of a reader
// through the CDN. No writes.
func zipfProbe(ctx context.Context, r *Run) func(context.Context) []invariant.Result {
	products, err := listProducts(ctx, r.Sys, zipfProducts)
	if err != nil || len(products) < 2 {
		r.Logf("zipf probe: %v; reading the load's %d products", err, len(r.Products))
		products = r.Products
	}
	seed := uint64(r.Cfg.Seed)
	if seed == 0 {
		seed, _ = strconv.ParseUint(r.ID, 16, 64)
	}
	r.Logf("zipf probe: %d products, s=%.1f, seed %d", len(products), zipfS, seed)
	p := &prober{products: products, pick: zipfPicker(seed, len(products)), readers: 8, every: 200 * time.Millisecond, cdnEvery: 10, recordCDN: true}
	p.start(ctx, r)
	return func(context.Context) []invariant.Result {
		reads, _, _ := p.stop()
		f := flushOf(r)
		flushes.Delete(r)
		return []invariant.Result{stampedeRow(f), flushReadsRow(reads, f)}
	}
}

// zipfPicker draws product indexes in [0, n) from a Zipf distribution
// with the given seed; safe for concurrent use.
func zipfPicker(seed uint64, n int) func() int {
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), zipfS, 1, uint64(n-1)) //nolint:gosec // G404: a load pattern, not security
	var mu sync.Mutex
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return int(z.Uint64())
	}
}

// flushReadsRow: every read answered 200, and the p99 of the window after
// the flush is at most flushP99 above the p99 of as long a window just
// before it.
func flushReadsRow(reads []catalogRead, f *flushResult) invariant.Result {
	res := invariant.Result{Invariant: fmt.Sprintf("#6 catalog answers every read (200); the flush adds ≤ %s to the read p99", flushP99)}
	if f == nil {
		res.Evidence = "the flush did not happen; " + readSummary(reads)
		return res
	}
	end := f.at.Add(flushWindow)
	var before, baseline, window, later []catalogRead
	for _, rd := range reads {
		switch {
		case rd.at.Before(f.at):
			before = append(before, rd)
			if !rd.at.Before(f.at.Add(-flushWindow)) {
				baseline = append(baseline, rd)
			}
		case rd.at.Before(end):
			window = append(window, rd)
		default:
			later = append(later, rd)
		}
	}
	origin, cdn := 0, 0
	for _, rd := range window {
		if rd.cdn {
			cdn++
		} else {
			origin++
		}
	}
	ok := okCount(reads)
	p99, base := percentile(window, 0.99), percentile(baseline, 0.99)
	res.Held = len(window) > 0 && len(baseline) > 0 && ok == len(reads) && p99 <= base+flushP99
	res.Evidence = fmt.Sprintf("%s after the flush (%d from the origin, %d through the CDN): %s; the %s before it: %s (bound %s = its p99 + %s); "+
		"all reads: %d, %d answered 200; later: %s",
		flushWindow, origin, cdn, readSummary(window), flushWindow, readSummary(baseline), (base + flushP99).Round(time.Millisecond), flushP99,
		len(reads), ok, readSummary(later))
	res.Counts = map[string]int{"reads": len(reads), "ok": ok, "window_reads": len(window), "window_p99_ms": int(p99.Milliseconds()),
		"baseline_p99_ms": int(base.Milliseconds()), "before_reads": len(before)}
	return res
}

// percentile is the p-quantile of rs's latencies (quantile: nearest rank).
func percentile(rs []catalogRead, p float64) time.Duration {
	took := make([]time.Duration, len(rs))
	for i, rd := range rs {
		took[i] = rd.took
	}
	return quantile(took, p)
}

// listProducts pages through catalog's origin list for up to n products.
func listProducts(ctx context.Context, sys *target.System, n int) ([]catalogapi.Product, error) {
	var out []catalogapi.Product
	token := ""
	for len(out) < n {
		u := sys.Catalog + "/v1/products?limit=" + strconv.Itoa(min(100, n-len(out)))
		if token != "" {
			u += "&page_token=" + url.QueryEscape(token)
		}
		var page catalogapi.ProductList
		if err := target.GetJSON(ctx, sys.Client(), u, &page); err != nil {
			return out, fmt.Errorf("list products: %w", err)
		}
		out = append(out, page.Products...)
		if page.NextPageToken == "" || len(page.Products) == 0 {
			break
		}
		token = page.NextPageToken
	}
	return out, nil
}

// --- invalidation-lost --------------------------------------------------------

const invalidationProcess = "catalog-worker"

func invalidationLost() Drill {
	return Drill{
		Name:      "invalidation-lost",
		Resource:  invalidationProcess,
		GameDay:   true,
		Processes: []string{invalidationProcess},
		Fault: "SIGKILL catalog-worker and its replicas (ROLES=relay,consumer: the CATALOG outbox relay and the catalog-invalidation consumer, " +
			"which moves cache pointers, warms and purges the CDN), start it again after the fault window; meanwhile a prober writes " +
			"a new EUR price to one of 8 products every second and reads them from the origin (40 reads/s) and, every fifth read, through the CDN",
		Proves: "losing the invalidation path costs bounded staleness, never a wrong price for good (#6): origin reads lag a committed write by at most " +
			"CACHE_NEAR_TTL (1s; the writer's own post-commit invalidation moves the Redis pointer and tells every near cache), CDN reads by at most " +
			"s-maxage + stale-while-revalidate (nothing purges the CDN meanwhile); after the restart the outbox backlog is published, " +
			"the consumer purges, and origin and CDN serve the PostgreSQL version",
		Inject: func(ctx context.Context, r *Run) error {
			// Every instance: with SHOPFLOOR_REPLICAS a standby relay and
			// a second consumer would carry the path on, and the drill
			// would prove nothing.
			if err := kill(everyInstance(r, invalidationProcess)...)(ctx, r); err != nil {
				return err
			}
			// Counted once it is dead: what the relay published while
			// ctl.sh was still on its way is not "while down".
			if js, err := r.Sys.JetStream(ctx); err == nil {
				r.Values["invalidation catalog at kill"] = float64(js.Messages[catalogapi.Stream])
			}
			return nil
		},
		Heal: func(ctx context.Context, r *Run) error {
			if js, err := r.Sys.JetStream(ctx); err == nil {
				r.Values["invalidation catalog at heal"] = float64(js.Messages[catalogapi.Stream])
			}
			return start(everyInstance(r, invalidationProcess)...)(ctx, r)
		},
		Effect: invalidationEffect,
		Probe:  invalidationProbe,
	}
}

// invalidationEffect: nothing reached the CATALOG stream while
// catalog-worker was down, and the price changes committed meanwhile
// (held in the outbox) were published after the restart.
func invalidationEffect(r *Run) invariant.Result {
	res := invariant.Result{Invariant: effectName}
	atKill, ok1 := r.Values["invalidation catalog at kill"]
	atHeal, ok2 := r.Values["invalidation catalog at heal"]
	if !ok1 || !ok2 {
		res.Evidence = "NATS monitoring did not answer at the kill or the restart"
		return res
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := r.Sys.JetStream(ctx)
	if err != nil {
		res.Evidence = err.Error()
		return res
	}
	now := float64(js.Messages[catalogapi.Stream])
	whileDown, after := atHeal-atKill, now-atHeal
	res.Held = whileDown == 0 && after > 0
	res.Evidence = fmt.Sprintf("CATALOG stream: +%g messages while catalog-worker was down, +%g after its restart (the price changes committed meanwhile waited in the outbox; "+
		"sampled outbox backlog CATALOG peak %g); catalog-invalidation pending now %d",
		whileDown, after, r.Samples.Peak("outbox backlog "+catalogapi.Stream), js.Pending[catalogapi.Stream+"/catalog-invalidation"])
	res.Counts = map[string]int{"published_while_down": int(whileDown), "published_after_restart": int(after)}
	return res
}

// invalidationProbe reads and writes 8 products like redis-down's prober,
// keeping the CDN's reads too, and judges origin and CDN reads each
// against their own bound.
func invalidationProbe(ctx context.Context, r *Run) func(context.Context) []invariant.Result {
	products := r.Products[len(r.Products)-8:]
	cdnBound, cc, err := cdnStaleBound(ctx, r.Sys, products[0].ID)
	if err != nil {
		r.Logf("invalidation probe: %v", err)
	}
	r.Logf("invalidation probe: origin bound %s (CACHE_NEAR_TTL), CDN bound %s (%s)", staleBound, cdnBound, cc)
	p := &prober{products: products, readers: 2, every: 50 * time.Millisecond, cdnEvery: 5, recordCDN: true, writeEvery: time.Second}
	p.start(ctx, r)
	return func(ctx context.Context) []invariant.Result {
		reads, writes, werrs := p.stop()
		rows := invalidationRows(reads, writes, werrs, cdnBound, cc, r.FaultStart, r.HealEnd)
		return append(rows, catalogConverged(ctx, r, products))
	}
}

// invalidationRows are the origin and CDN staleness verdicts.
func invalidationRows(reads []catalogRead, writes []catalogWrite, werrs []string, cdnBound time.Duration, cc string, faultStart, healEnd time.Time) []invariant.Result {
	var origin, cdn []catalogRead
	for _, rd := range reads {
		if rd.cdn {
			cdn = append(cdn, rd)
		} else {
			origin = append(origin, rd)
		}
	}
	const during, after = "while catalog-worker was down", "after its restart"
	of := checkFreshness(origin, writes, staleBound, faultStart, healEnd)
	o := of.row(fmt.Sprintf("#6 origin: no read older than a write committed %s before (CACHE_NEAR_TTL; the writer's own invalidation)", staleBound), len(werrs), during, after)
	o.Evidence += "; " + of.lagSummary() + "; " + readSummary(origin)
	o.Held = o.Held && okCount(origin) == len(origin)
	o.Counts["oldest_lag_ms"] = int(of.oldest.Milliseconds())

	res := invariant.Result{Invariant: "#6 CDN: no read older than a write committed s-maxage + stale-while-revalidate before"}
	if cdnBound <= 0 {
		res.Evidence = "the origin's Cache-Control was not read: no bound"
		return []invariant.Result{o, res}
	}
	// Nothing the CDN served in a drill can be s-maxage old: the row
	// holds when no read lagged beyond the bound, and shows how far the
	// CDN did lag (the purges it missed).
	cf := checkFreshness(cdn, writes, cdnBound, faultStart, healEnd)
	c := invariant.Result{Invariant: fmt.Sprintf("#6 CDN: no read older than a write committed %s before (s-maxage + stale-while-revalidate)", cdnBound)}
	c.Held = cf.reads > 0 && cf.oldest <= cdnBound && okCount(cdn) == len(cdn)
	c.Evidence = fmt.Sprintf("%d CDN reads: %s (%s); %s", cf.reads, cf.lagSummary(), cc, readSummary(cdn))
	c.Counts = map[string]int{"reads": cf.reads, "lagged_before": cf.lagged["before"], "lagged_during": cf.lagged["during"],
		"lagged_after": cf.lagged["after"], "oldest_lag_ms": int(cf.oldest.Milliseconds())}
	return []invariant.Result{o, c}
}

var ccSeconds = regexp.MustCompile(`(s-maxage|stale-while-revalidate)=(\d+)`)

// cdnStaleBound reads the origin's Cache-Control for product id and
// returns s-maxage + stale-while-revalidate: how long the CDN may serve a
// copy nobody purged (the VCL honours both with a healthy origin).
func cdnStaleBound(ctx context.Context, sys *target.System, id string) (time.Duration, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sys.Catalog+"/v1/products/"+url.PathEscape(id)+"?currency=EUR", nil)
	if err != nil {
		return 0, "", fmt.Errorf("cache-control: %w", err)
	}
	resp, err := sys.Client().Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("cache-control: %w", err)
	}
	_ = resp.Body.Close()
	return parseStaleBound(resp.Header.Get("Cache-Control"))
}

// parseStaleBound returns s-maxage + stale-while-revalidate of a
// Cache-Control value.
func parseStaleBound(cc string) (time.Duration, string, error) {
	var total time.Duration
	var parts []string
	seen := map[string]bool{}
	for _, m := range ccSeconds.FindAllStringSubmatch(cc, -1) {
		n, err := strconv.Atoi(m[2])
		if err != nil {
			return 0, cc, fmt.Errorf("cache-control %q: %w", cc, err)
		}
		seen[m[1]] = true
		total += time.Duration(n) * time.Second
		parts = append(parts, m[0])
	}
	if !seen["s-maxage"] {
		return 0, cc, errors.New("cache-control " + strconv.Quote(cc) + ": no s-maxage")
	}
	return total, strings.Join(parts, " + "), nil
}
