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

// catalogProbe reads 8 products from catalog's origin (20 reads/s from
// each of two readers, every tenth through the CDN so that it holds copies
// to purge) from the start of the load until the system converged, and
// writes a new EUR price to one of them every second until the heal (so
// that what is current after the heal is only what the outage left). Its
// rows: every read during the outage answered 200; no read returned a
// version older than a write committed staleBound before it (by phase:
// before, during, after the outage); after the heal, origin and CDN serve
// the version the admin API (PostgreSQL) has.
func catalogProbe(ctx context.Context, r *Run) func(context.Context) []invariant.Result {
	products := r.Products[len(r.Products)-8:]
	ctx, cancel := context.WithCancel(ctx)
	var (
		mu     sync.Mutex
		reads  []catalogRead
		writes []catalogWrite
		werrs  []string
		wg     sync.WaitGroup
	)
	for reader := range 2 {
		wg.Go(func() {
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for i := reader; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				base := r.Sys.Catalog
				if i%10 == 0 {
					base = r.Sys.CDN
				}
				id := products[i%len(products)].ID
				rd := readProduct(ctx, r.Sys, base, id)
				if ctx.Err() != nil {
					return
				}
				if base == r.Sys.Catalog {
					mu.Lock()
					reads = append(reads, rd)
					mu.Unlock()
				}
			}
		})
	}
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-r.Healed():
				return
			case <-t.C:
			}
			id := products[i%len(products)].ID
			v, err := writePrice(ctx, r.Sys, id, int64(1000+i))
			if ctx.Err() != nil {
				return
			}
			mu.Lock()
			if err != nil {
				werrs = append(werrs, err.Error())
			} else {
				writes = append(writes, catalogWrite{id: id, version: v, at: time.Now()})
			}
			mu.Unlock()
		}
	})
	return func(ctx context.Context) []invariant.Result {
		cancel()
		wg.Wait()
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

	// For each read, the newest write of its product committed at least
	// staleBound before the read started.
	byID := map[string][]catalogWrite{}
	for _, w := range writes {
		byID[w.id] = append(byID[w.id], w)
	}
	var stale []string
	var lastStale time.Time
	phase := map[string]int{}
	checked := 0
	for _, rd := range reads {
		if rd.status != http.StatusOK {
			continue
		}
		var want int64
		for _, w := range byID[rd.id] {
			if !w.at.After(rd.at.Add(-staleBound)) {
				want = max(want, w.version)
			}
		}
		if want == 0 {
			continue
		}
		checked++
		if rd.version < want {
			switch {
			case rd.at.Before(faultStart):
				phase["before"]++
			case during(rd.at):
				phase["during"]++
			default:
				phase["after"]++
				if rd.at.After(lastStale) {
					lastStale = rd.at
				}
			}
			stale = append(stale, fmt.Sprintf("%s v%d (v%d committed before)", rd.id, rd.version, want))
		}
	}
	writesIn := 0
	for _, w := range writes {
		if during(w.at) {
			writesIn++
		}
	}
	fresh := invariant.Result{Invariant: fmt.Sprintf("#6 no read older than a write committed %s before", staleBound)}
	fresh.Evidence = fmt.Sprintf("%d reads checked against %d writes (%d during the outage; %d writes failed): %d stale (%d before the outage, %d during, %d after the heal)",
		checked, len(writes), writesIn, len(werrs), len(stale), phase["before"], phase["during"], phase["after"])
	if phase["after"] > 0 && !healEnd.IsZero() {
		fresh.Evidence += fmt.Sprintf("; the last stale read %.1fs after the heal", lastStale.Sub(healEnd).Seconds())
	}
	if len(stale) > 0 {
		sort.Strings(stale)
		stale = slices.Compact(stale)
		fresh.Evidence += "; e.g. " + strings.Join(stale[:min(3, len(stale))], ", ")
	}
	fresh.Held = len(stale) == 0 && checked > 0
	return []invariant.Result{answers, fresh}
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
