package drill

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestStampedeRowHoldsOnlyWithOneLoadPerKey(t *testing.T) {
	t.Parallel()
	at := time.Unix(1000, 0)
	for _, tc := range []struct {
		name string
		f    *flushResult
		held bool
		want string
	}{
		{"one load per key", &flushResult{at: at, keys: 40, delta: cacheCounters{loads: 40, misses: 55, coalesced: 15}}, true, "40 source loads"},
		{"a key loaded twice", &flushResult{at: at, keys: 40, delta: cacheCounters{loads: 43, misses: 55}}, false, "3 loads beyond one per key"},
		{"a failed store is allowed for", &flushResult{at: at, keys: 40, delta: cacheCounters{loads: 41, redisErrors: 1}}, true, "1 Redis errors"},
		{"a read that failed open loads once", &flushResult{at: at, keys: 40, delta: cacheCounters{loads: 43, failOpen: 3}}, true, "bound 43"},
		{"more than that", &flushResult{at: at, keys: 40, delta: cacheCounters{loads: 45, failOpen: 3}}, false, "2 loads beyond one per key"},
		{"no load at all", &flushResult{at: at}, false, "0 source loads"},
		{"not measured", nil, false, "not measured"},
	} {
		got := stampedeRow(tc.f)
		if got.Held != tc.held || !strings.Contains(got.Evidence, tc.want) {
			t.Errorf("%s: held %t, %q; want held %t and %q", tc.name, got.Held, got.Evidence, tc.held, tc.want)
		}
	}
}

func TestFlushReadsRow(t *testing.T) {
	t.Parallel()
	at := time.Unix(1000, 0)
	f := &flushResult{at: at}
	read := func(off time.Duration, took time.Duration, status int) catalogRead {
		return catalogRead{id: "p", at: at.Add(off), took: took, status: status, version: 1}
	}
	fast := []catalogRead{read(-time.Second, time.Millisecond, 200), read(time.Second, 5*time.Millisecond, 200), read(10*time.Second, time.Millisecond, 200)}
	if got := flushReadsRow(fast, f); !strings.Contains(got.Evidence, "bound 251ms") {
		t.Errorf("the bound is the baseline's p99 + %s: %s", flushP99, got.Evidence)
	}
	if got := flushReadsRow(fast, f); !got.Held {
		t.Errorf("fast reads: %+v", got)
	}
	slow := append(fast, read(2*time.Second, time.Second, 200))
	if got := flushReadsRow(slow, f); got.Held {
		t.Errorf("a 1s read in a window of two (p99 1s > 1ms + %s): held: %+v", flushP99, got)
	}
	failed := append(fast, read(20*time.Second, time.Millisecond, http.StatusServiceUnavailable))
	if got := flushReadsRow(failed, f); got.Held {
		t.Errorf("a 503 after the window: held: %+v", got)
	}
	if got := flushReadsRow(fast, nil); got.Held {
		t.Errorf("no flush: held: %+v", got)
	}
}

func TestCheckFreshnessFindsStaleReadsAndTheirLag(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	faultStart, healEnd := t0.Add(10*time.Second), t0.Add(20*time.Second)
	writes := []catalogWrite{{id: "a", version: 2, at: t0.Add(12 * time.Second)}, {id: "a", version: 3, at: t0.Add(14 * time.Second)}}
	reads := []catalogRead{
		{id: "a", at: t0.Add(5 * time.Second), status: 200, version: 1},                            // before any write
		{id: "a", at: t0.Add(12*time.Second + 500*time.Millisecond), status: 200, version: 1},      // 0.5s behind v2: within 1s
		{id: "a", at: t0.Add(14*time.Second + 100*time.Millisecond), status: 200, version: 2},      // 0.1s behind v3
		{id: "a", at: t0.Add(16 * time.Second), status: 200, version: 2},                           // 2s behind v3: stale
		{id: "a", at: t0.Add(21 * time.Second), status: 200, version: 3},                           // current
		{id: "a", at: t0.Add(22 * time.Second), status: http.StatusServiceUnavailable, version: 0}, // not a 200: not judged
	}
	f := checkFreshness(reads, writes, time.Second, faultStart, healEnd)
	if f.checked != 3 || len(f.stale) != 1 || f.phase["during"] != 1 {
		t.Errorf("checked %d, stale %v, phases %v; want 3 checked, 1 stale during", f.checked, f.stale, f.phase)
	}
	if f.oldest != 2*time.Second {
		t.Errorf("oldest lag %s, want 2s (v2 read 2s after v3 was committed)", f.oldest)
	}
	if f.lagged["during"] != 3 {
		t.Errorf("lagged %v, want 3 during", f.lagged)
	}
	row := f.row("x", 0, "during the fault", "after it")
	if row.Held || !strings.Contains(row.Evidence, "1 stale (0 before, 1 during the fault, 0 after it)") {
		t.Errorf("row: %+v", row)
	}
	if !strings.Contains(f.lagSummary(), "the oldest 2s behind (during), bound 1s") {
		t.Errorf("lag summary: %s", f.lagSummary())
	}
	// With the CDN's bound, the same reads hold.
	if g := checkFreshness(reads, writes, time.Hour, faultStart, healEnd).row("x", 0, "d", "a"); g.Held {
		t.Errorf("nothing is checked against a 1h bound within 22s, so the row cannot hold: %+v", g)
	}
}

func TestParseStaleBound(t *testing.T) {
	t.Parallel()
	d, parts, err := parseStaleBound("public, max-age=60, s-maxage=3600, stale-while-revalidate=30, stale-if-error=86400")
	if err != nil || d != 3630*time.Second || parts != "s-maxage=3600 + stale-while-revalidate=30" {
		t.Errorf("got %s %q %v", d, parts, err)
	}
	if _, _, err := parseStaleBound("private, no-store"); err == nil {
		t.Error("no s-maxage: no error")
	}
}

func TestZipfPickerIsReproducibleAndSkewed(t *testing.T) {
	t.Parallel()
	a, b := zipfPicker(42, 200), zipfPicker(42, 200)
	counts := make([]int, 200)
	for range 10000 {
		x, y := a(), b()
		if x != y {
			t.Fatalf("the same seed drew %d and %d", x, y)
		}
		counts[x]++
	}
	// Skewed: the hottest product far above the median one.
	if counts[0] < 10*counts[100] || counts[0] < 1000 {
		t.Errorf("not skewed: product 0 read %d times, product 100 %d", counts[0], counts[100])
	}
}
