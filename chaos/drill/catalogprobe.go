package drill

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/chaos/invariant"
	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
)

// staleBound is how much older than the newest committed write a read may
// be: the near cache's TTL (CACHE_NEAR_TTL, 1s), the documented bound of
// its staleness when an invalidation is lost (ADR 0016).
const staleBound = time.Second

type catalogRead struct {
	id      string
	cdn     bool // read through the CDN, not from the origin
	at      time.Time
	took    time.Duration
	status  int // 0: network error
	version int64
}

type catalogWrite struct {
	id      string
	version int64
	at      time.Time // the answer to the write came back: committed
}

// prober reads catalog products while a drill runs and, optionally,
// writes a new EUR price to one of them at a steady pace until the heal
// (so that what is current after the heal is only what the fault left).
// redis-down, redis-flush and invalidation-lost use it with different
// settings.
type prober struct {
	// products are read; pick chooses the index of the next one (nil:
	// round robin, each reader one step behind the previous).
	products []catalogapi.Product
	pick     func() int
	// readers read once every `every`, each on its own ticker: their
	// ticks fall together, so they read in bursts of `readers`.
	readers int
	every   time.Duration
	// cdnEvery: every n-th read of a reader goes through the CDN (0: none).
	cdnEvery int
	// recordCDN keeps CDN reads too (otherwise they only keep the CDN
	// holding copies to purge).
	recordCDN bool
	// writeEvery is the pace of price writes until the heal (0: none).
	writeEvery time.Duration

	mu     sync.Mutex
	reads  []catalogRead
	writes []catalogWrite
	werrs  []string
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// start runs the readers and the writer until stop.
func (p *prober) start(ctx context.Context, r *Run) {
	ctx, p.cancel = context.WithCancel(ctx)
	for reader := range p.readers {
		p.wg.Go(func() {
			t := time.NewTicker(p.every)
			defer t.Stop()
			for i := reader; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				cdn := p.cdnEvery > 0 && i%p.cdnEvery == 0
				base := r.Sys.Catalog
				if cdn {
					base = r.Sys.CDN
				}
				k := i % len(p.products)
				if p.pick != nil {
					k = p.pick()
				}
				rd := readProduct(ctx, r.Sys, base, p.products[k].ID)
				if ctx.Err() != nil {
					return
				}
				rd.cdn = cdn
				if !cdn || p.recordCDN {
					p.mu.Lock()
					p.reads = append(p.reads, rd)
					p.mu.Unlock()
				}
			}
		})
	}
	if p.writeEvery <= 0 {
		return
	}
	p.wg.Go(func() {
		t := time.NewTicker(p.writeEvery)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-r.Healed():
				return
			case <-t.C:
			}
			id := p.products[i%len(p.products)].ID
			v, err := writePrice(ctx, r.Sys, id, int64(1000+i))
			if ctx.Err() != nil {
				return
			}
			p.mu.Lock()
			if err != nil {
				p.werrs = append(p.werrs, err.Error())
			} else {
				p.writes = append(p.writes, catalogWrite{id: id, version: v, at: time.Now()})
			}
			p.mu.Unlock()
		}
	})
}

// stop ends the readers and the writer and returns what they saw.
func (p *prober) stop() (reads []catalogRead, writes []catalogWrite, werrs []string) {
	p.cancel()
	p.wg.Wait()
	return p.reads, p.writes, p.werrs
}

// catalogProbe is redis-down's prober: it reads 8 products from catalog's
// origin (20 reads/s from each of two readers, every tenth through the
// CDN so that it holds copies to purge) from the start of the load until
// the system converged, and writes a new EUR price to one of them every
// second until the heal. Its rows: every read during the outage answered
// 200; no read returned a version older than a write committed staleBound
// before it (by phase: before, during, after the outage); after the heal,
// origin and CDN serve the version the admin API (PostgreSQL) has.
func catalogProbe(ctx context.Context, r *Run) func(context.Context) []invariant.Result {
	products := r.Products[len(r.Products)-8:]
	p := &prober{products: products, readers: 2, every: 50 * time.Millisecond, cdnEvery: 10, writeEvery: time.Second}
	p.start(ctx, r)
	return func(ctx context.Context) []invariant.Result {
		reads, writes, werrs := p.stop()
		rows := catalogRows(reads, writes, werrs, r.FaultStart, r.HealEnd)
		return append(rows, catalogConverged(ctx, r, products))
	}
}

func readProduct(ctx context.Context, sys *target.System, base, id string) catalogRead {
	rd := catalogRead{id: id, at: time.Now()}
	var p catalogapi.Product
	err := target.GetJSON(ctx, sys.Client(), base+"/v1/products/"+url.PathEscape(id)+"?currency=EUR", &p)
	rd.took = time.Since(rd.at)
	var se *target.StatusError
	switch {
	case err == nil:
		rd.status, rd.version = http.StatusOK, p.Version
	case errors.As(err, &se):
		rd.status = se.Status
	}
	return rd
}

// writePrice sets id's EUR price through the admin API as the operator
// (If-Match on the version just read) and returns the new version.
func writePrice(ctx context.Context, sys *target.System, id string, amount int64) (int64, error) {
	var cur catalogapi.AdminProduct
	u := sys.CatalogAdmin + "/v1/admin/products/" + url.PathEscape(id)
	if err := sys.GetAs(ctx, target.Operator, u, &cur); err != nil {
		return 0, err
	}
	h, err := sys.Bearer(ctx, target.Operator)
	if err != nil {
		return 0, err
	}
	h.Set("If-Match", `"v`+strconv.FormatInt(cur.Version, 10)+`"`)
	var next catalogapi.AdminProduct
	if err := target.DoJSON(ctx, sys.Client(), http.MethodPut, u+"/prices/EUR", h, map[string]int64{"amount_minor": amount}, &next); err != nil {
		return 0, err
	}
	return next.Version, nil
}

func catalogRows(reads []catalogRead, writes []catalogWrite, werrs []string, faultStart, healEnd time.Time) []invariant.Result {
	during := func(t time.Time) bool { return !t.Before(faultStart) && (healEnd.IsZero() || t.Before(healEnd)) }
	var in, out []catalogRead
	for _, rd := range reads {
		if during(rd.at) {
			in = append(in, rd)
		} else {
			out = append(out, rd)
		}
	}
	answers := invariant.Result{Invariant: "#6 catalog answers every read while Redis is down"}
	answers.Evidence = fmt.Sprintf("during the outage: %s; outside it: %s", readSummary(in), readSummary(out))
	answers.Held = len(in) > 0 && okCount(in) == len(in)

	f := checkFreshness(originReads(reads), writes, staleBound, faultStart, healEnd)
	fresh := f.row(fmt.Sprintf("#6 no read older than a write committed %s before", staleBound), len(werrs), "during the outage", "after the heal")
	return []invariant.Result{answers, fresh}
}

func originReads(reads []catalogRead) []catalogRead {
	var out []catalogRead
	for _, rd := range reads {
		if !rd.cdn {
			out = append(out, rd)
		}
	}
	return out
}

// freshness is how far a set of reads lagged the prober's writes.
type freshness struct {
	bound               time.Duration
	faultStart, healEnd time.Time
	reads, writes       int
	writesIn            int // writes committed during the fault
	checked             int // 200 reads with a write committed at least bound before them
	stale               []string
	phase               map[string]int // stale reads: before, during, after
	lastStale           time.Time      // the last stale read after the heal
	oldest              time.Duration  // the largest lag of any read (stale or not)
	oldestAt            time.Time
	lagged              map[string]int // reads that returned a version older than one already committed, by phase
}

// checkFreshness compares every 200 read with the writes of its product.
// A read is stale when a write committed at least bound before the read
// started has a newer version than the read returned; its lag is how
// long before the read the first newer version was committed.
func checkFreshness(reads []catalogRead, writes []catalogWrite, bound time.Duration, faultStart, healEnd time.Time) freshness {
	f := freshness{bound: bound, faultStart: faultStart, healEnd: healEnd, writes: len(writes), phase: map[string]int{}, lagged: map[string]int{}}
	byID := map[string][]catalogWrite{}
	for _, w := range writes {
		byID[w.id] = append(byID[w.id], w)
		if f.during(w.at) {
			f.writesIn++
		}
	}
	for _, rd := range reads {
		if rd.status != http.StatusOK {
			continue
		}
		f.reads++
		var want int64
		var firstNewer time.Time
		for _, w := range byID[rd.id] {
			if w.at.After(rd.at) {
				continue
			}
			if !w.at.After(rd.at.Add(-bound)) {
				want = max(want, w.version)
			}
			if w.version > rd.version && (firstNewer.IsZero() || w.at.Before(firstNewer)) {
				firstNewer = w.at
			}
		}
		if !firstNewer.IsZero() {
			f.lagged[f.phaseOf(rd.at)]++
			if lag := rd.at.Sub(firstNewer); lag > f.oldest {
				f.oldest, f.oldestAt = lag, rd.at
			}
		}
		if want == 0 {
			continue
		}
		f.checked++
		if rd.version < want {
			ph := f.phaseOf(rd.at)
			f.phase[ph]++
			if ph == "after" && rd.at.After(f.lastStale) {
				f.lastStale = rd.at
			}
			f.stale = append(f.stale, fmt.Sprintf("%s v%d (v%d committed before)", rd.id, rd.version, want))
		}
	}
	return f
}

func (f freshness) during(t time.Time) bool {
	return !t.Before(f.faultStart) && (f.healEnd.IsZero() || t.Before(f.healEnd))
}

func (f freshness) phaseOf(t time.Time) string {
	switch {
	case t.Before(f.faultStart):
		return "before"
	case f.during(t):
		return "during"
	}
	return "after"
}

// row is the verdict "no read older than a write committed bound before
// it": held when at least one read was checked and none was stale.
// during and after name the phases ("during the outage", "after the
// heal").
func (f freshness) row(name string, failedWrites int, during, after string) invariant.Result {
	res := invariant.Result{Invariant: name, Held: len(f.stale) == 0 && f.checked > 0,
		Counts: map[string]int{"reads_checked": f.checked, "writes": f.writes, "stale": len(f.stale),
			"stale_before": f.phase["before"], "stale_during": f.phase["during"], "stale_after": f.phase["after"]}}
	res.Evidence = fmt.Sprintf("%d reads checked against %d writes (%d %s; %d writes failed): %d stale (%d before, %d %s, %d %s)",
		f.checked, f.writes, f.writesIn, during, failedWrites, len(f.stale), f.phase["before"], f.phase["during"], during, f.phase["after"], after)
	if f.phase["after"] > 0 && !f.healEnd.IsZero() {
		res.Evidence += fmt.Sprintf("; the last stale read %.1fs after the heal", f.lastStale.Sub(f.healEnd).Seconds())
	}
	if len(f.stale) > 0 {
		stale := slices.Clone(f.stale)
		sort.Strings(stale)
		stale = slices.Compact(stale)
		res.Evidence += "; e.g. " + strings.Join(stale[:min(3, len(stale))], ", ")
	}
	return res
}

// lagSummary says how many reads returned a version older than one
// already committed, by phase, and the oldest such lag against the bound.
func (f freshness) lagSummary() string {
	s := fmt.Sprintf("%d of %d reads behind a committed write (%d before, %d during, %d after)",
		f.lagged["before"]+f.lagged["during"]+f.lagged["after"], f.reads, f.lagged["before"], f.lagged["during"], f.lagged["after"])
	if f.oldest > 0 {
		s += fmt.Sprintf("; the oldest %s behind (%s), bound %s", f.oldest.Round(time.Millisecond), f.phaseOf(f.oldestAt), f.bound)
	} else {
		s += fmt.Sprintf("; bound %s", f.bound)
	}
	return s
}

func okCount(rs []catalogRead) int {
	n := 0
	for _, rd := range rs {
		if rd.status == http.StatusOK {
			n++
		}
	}
	return n
}

func readSummary(rs []catalogRead) string {
	if len(rs) == 0 {
		return "no reads"
	}
	st := map[int]int{}
	took := make([]time.Duration, len(rs))
	for i, rd := range rs {
		st[rd.status]++
		took[i] = rd.took
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	pct := func(p float64) time.Duration { return took[int(p*float64(len(took)-1))].Round(100 * time.Microsecond) }
	return fmt.Sprintf("%d reads, status %s, p50 %s, p99 %s", len(rs), statusCounts(st), pct(0.5), pct(0.99))
}

// catalogConverged waits (up to the drill's deadline) until origin and
// CDN serve, for every probed product, the version the admin API reads
// from PostgreSQL.
func catalogConverged(ctx context.Context, r *Run, products []catalogapi.Product) invariant.Result {
	res := invariant.Result{Invariant: "#6 origin and CDN serve the current version after the heal"}
	deadline := time.Now().Add(r.Cfg.Deadline)
	start := time.Now()
	for {
		var behind []string
		for _, p := range products {
			var truth catalogapi.AdminProduct
			if err := r.Sys.GetAs(ctx, target.Operator, r.Sys.CatalogAdmin+"/v1/admin/products/"+url.PathEscape(p.ID), &truth); err != nil {
				behind = append(behind, p.ID+": "+err.Error())
				continue
			}
			origin := readProduct(ctx, r.Sys, r.Sys.Catalog, p.ID)
			cdn := readProduct(ctx, r.Sys, r.Sys.CDN, p.ID)
			if origin.version != truth.Version || cdn.version != truth.Version {
				behind = append(behind, fmt.Sprintf("%s: PostgreSQL v%d, origin v%d, CDN v%d", p.ID, truth.Version, origin.version, cdn.version))
			}
		}
		if len(behind) == 0 {
			res.Held = true
			res.Evidence = fmt.Sprintf("%d/%d products: origin and CDN at the PostgreSQL version (%.1fs after the orders converged)",
				len(products), len(products), time.Since(start).Seconds())
			return res
		}
		if time.Now().After(deadline) || !sleep(ctx, 2*time.Second) {
			res.Evidence = fmt.Sprintf("not within %s: %d/%d products behind: %v", r.Cfg.Deadline, len(behind), len(products), behind[:min(3, len(behind))])
			return res
		}
	}
}
