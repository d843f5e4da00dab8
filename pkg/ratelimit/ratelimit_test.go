package ratelimit_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/ratelimit"
)

// newLimiter returns a limiter for cfg on a fake clock, and the function
// that moves the clock (the tests are sequential: no lock needed).
func newLimiter(t *testing.T, cfg ratelimit.Config) (*ratelimit.Limiter, func(time.Duration)) {
	t.Helper()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { return now }
	if cfg.Policy == "" {
		cfg.Policy = "test"
	}
	l, err := ratelimit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, func(d time.Duration) { now = now.Add(d) }
}

func TestABurstIsAdmittedThenRefusedUntilATokenRefills(t *testing.T) {
	t.Parallel()
	l, advance := newLimiter(t, ratelimit.Config{Limit: ratelimit.Limit{Rate: 2, Burst: 3}})
	for want := 2; want >= 0; want-- {
		if d := l.Allow("ada"); !d.Allowed || d.Remaining != want || d.RetryAfter != 0 {
			t.Fatalf("request with %d left: %+v", want, d)
		}
	}
	d := l.Allow("ada")
	if d.Allowed || d.Remaining != 0 || d.RetryAfter != 500*time.Millisecond || d.Full != 1500*time.Millisecond {
		t.Fatalf("request on an empty bucket: %+v; want refused, retry after 500ms, full in 1.5s", d)
	}
	advance(499 * time.Millisecond)
	if d := l.Allow("ada"); d.Allowed {
		t.Fatalf("allowed 1ms before a token is back: %+v", d)
	}
	advance(time.Millisecond)
	if d := l.Allow("ada"); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("refused once a token is back: %+v", d)
	}
}

func TestEachKeyHasItsOwnBucket(t *testing.T) {
	t.Parallel()
	l, _ := newLimiter(t, ratelimit.Config{Limit: ratelimit.Limit{Rate: 1, Burst: 1}})
	if !l.Allow("ada").Allowed || l.Allow("ada").Allowed {
		t.Fatal("ada: want one request, then a refusal")
	}
	if !l.Allow("grace").Allowed {
		t.Fatal("grace refused because of ada's requests")
	}
}

func TestBucketsThatAreFullAgainAreDropped(t *testing.T) {
	t.Parallel()
	l, advance := newLimiter(t, ratelimit.Config{Limit: ratelimit.Limit{Rate: 10, Burst: 20}})
	l.Allow("ada")
	advance(time.Second)
	l.Allow("grace")
	if n := l.Len(); n != 2 {
		t.Fatalf("%d buckets, want 2", n)
	}
	// ada's bucket is full 2s (Burst/Rate) after her last request; grace's
	// is not yet.
	advance(time.Second)
	l.Allow("grace")
	if n := l.Len(); n != 1 {
		t.Fatalf("%d buckets after ada's refilled, want 1 (grace's)", n)
	}
	advance(2 * time.Second)
	if d := l.Allow("linus"); !d.Allowed || l.Len() != 1 {
		t.Fatalf("after grace's refilled: %+v, %d buckets; want linus's alone", d, l.Len())
	}
}

func TestMaxKeysDropsTheLeastRecentlyUsedBucketAndCountsIt(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	l, _ := newLimiter(t, ratelimit.Config{Limit: ratelimit.Limit{Rate: 1, Burst: 1}, MaxKeys: 2, Registerer: reg})
	l.Allow("ada")
	l.Allow("grace")
	l.Allow("ada") // grace is now the least recently used
	l.Allow("linus")
	if n := l.Len(); n != 2 {
		t.Fatalf("%d buckets, want MaxKeys = 2", n)
	}
	if l.Allow("ada").Allowed {
		t.Error("ada's bucket was dropped: she got a fresh burst")
	}
	if !l.Allow("grace").Allowed {
		t.Error("grace's bucket was kept although it was the least recently used")
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP ratelimit_evictions_total Buckets dropped before they were full because the limit keeps at most its max keys.
# TYPE ratelimit_evictions_total counter
ratelimit_evictions_total{policy="test"} 2
`), "ratelimit_evictions_total"); err != nil {
		t.Error(err)
	}
}

func TestAdmitAnswers429WithRetryAfterAndRateLimitFields(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	l, advance := newLimiter(t, ratelimit.Config{Policy: "principal", Limit: ratelimit.Limit{Rate: 0.4, Burst: 2}, Registerer: reg})
	w := httptest.NewRecorder()
	if !l.Admit(w, "/v1/", "sub:ada") {
		t.Fatal("first request refused")
	}
	if got := w.Header().Get("RateLimit-Policy"); got != `"principal";q=2;w=5` {
		t.Errorf("RateLimit-Policy = %s, want 2 requests per 5 s", got)
	}
	if got := w.Header().Get("RateLimit"); got != `"principal";r=1;t=3` {
		t.Errorf("RateLimit = %s, want 1 left, full in 3 s (2.5 rounded up)", got)
	}
	l.Admit(httptest.NewRecorder(), "/v1/", "sub:ada")
	advance(time.Second) // 0.4 tokens back: a token in 1.5 s
	w = httptest.NewRecorder()
	if l.Admit(w, "/v1/", "sub:ada") {
		t.Fatal("third request admitted on an empty bucket")
	}
	res := w.Result()
	var p httpkit.Problem
	if err := json.NewDecoder(res.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Content-Type") != httpkit.ContentTypeProblem ||
		p.Type != httpkit.ProblemBase+"rate-limited" || !strings.Contains(p.Detail, "retry after") {
		t.Errorf("refusal: %d %s %+v", res.StatusCode, res.Header.Get("Content-Type"), p)
	}
	if got := res.Header.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After = %q, want 2 (1.5 s rounded up)", got)
	}
	if got := res.Header.Get("RateLimit"); got != `"principal";r=0;t=2` {
		t.Errorf("RateLimit = %s, want none left for the Retry-After delay", got)
	}
	if got := res.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP http_requests_rate_limited_total Requests answered 429 by a rate limit, by policy and route.
# TYPE http_requests_rate_limited_total counter
http_requests_rate_limited_total{policy="principal",route="/v1/"} 1
`), "http_requests_rate_limited_total"); err != nil {
		t.Error(err)
	}
}

func TestASharedLimitSendsTheCallersStateOnlyWithRefusals(t *testing.T) {
	t.Parallel()
	l, _ := newLimiter(t, ratelimit.Config{Policy: "anonymous", Limit: ratelimit.Limit{Rate: 1, Burst: 1}, Shared: true})
	w := httptest.NewRecorder()
	l.Admit(w, "/v1/", "ip:192.0.2.1")
	if w.Header().Get("RateLimit-Policy") == "" || w.Header().Get("RateLimit") != "" {
		t.Errorf("admitted answer of a shared limit: %v; want the policy and no caller state (a CDN may store it)", w.Header())
	}
	w = httptest.NewRecorder()
	l.Admit(w, "/v1/", "ip:192.0.2.1")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("RateLimit") != `"anonymous";r=0;t=1` {
		t.Errorf("refusal of a shared limit: %d %v", w.Code, w.Header())
	}
}

func TestMiddlewareLimitsTheRequestsItHasAKeyFor(t *testing.T) {
	t.Parallel()
	l, _ := newLimiter(t, ratelimit.Config{Limit: ratelimit.Limit{Rate: 1, Burst: 1}})
	served := 0
	h := l.Middleware("POST /v1/orders", func(r *http.Request) string { return r.Header.Get("X-Who") })(
		http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served++ }))
	codes := func(who string) (out []int) {
		for range 2 {
			r := httptest.NewRequest(http.MethodPost, "/v1/orders", nil)
			r.Header.Set("X-Who", who)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			out = append(out, w.Code)
		}
		return out
	}
	if got := codes("ada"); got[0] != 200 || got[1] != 429 {
		t.Errorf("ada: %v, want [200 429]", got)
	}
	if got := codes(""); got[0] != 200 || got[1] != 200 {
		t.Errorf("no key: %v, want not limited", got)
	}
	if served != 3 {
		t.Errorf("handler ran %d times, want 3 (never for a refusal)", served)
	}
	var off *ratelimit.Limiter
	next := http.NotFoundHandler()
	if got := off.Middleware("x", func(*http.Request) string { return "k" })(next); got == nil || !off.Admit(httptest.NewRecorder(), "x", "k") {
		t.Error("a nil limiter (limit off) must admit everything")
	}
}

func TestConfigIsValidated(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  ratelimit.Config
		want string
	}{
		{ratelimit.Config{Policy: "Bad Name", Limit: ratelimit.Limit{Rate: 1, Burst: 1}}, "policy"},
		{ratelimit.Config{Policy: "p", Limit: ratelimit.Limit{Rate: 0, Burst: 1}}, "rate must be positive"},
		{ratelimit.Config{Policy: "p", Limit: ratelimit.Limit{Rate: 1, Burst: 0}}, "burst must be at least 1"},
		{ratelimit.Config{Policy: "p", Limit: ratelimit.Limit{Rate: 1, Burst: 1}, MaxKeys: -1}, "max keys"},
	} {
		if _, err := ratelimit.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one about %q", tc.cfg, err, tc.want)
		}
	}
}

func TestClientAddrBelievesXForwardedForOnlyFromTrustedProxies(t *testing.T) {
	t.Parallel()
	trusted, err := ratelimit.ParseProxies([]string{"10.0.0.0/8", " 192.0.2.10 ", ""})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, remote string
		xff          []string
		trusted      []netip.Prefix
		want         string
	}{
		{"no proxy trusted: the peer", "10.0.0.5:4000", []string{"203.0.113.9"}, nil, "10.0.0.5"},
		{"an untrusted peer's header is ignored", "198.51.100.7:4000", []string{"203.0.113.9"}, trusted, "198.51.100.7"},
		{"behind a trusted proxy: the address it saw", "10.0.0.5:4000", []string{"203.0.113.9"}, trusted, "203.0.113.9"},
		{"entries the client wrote are not believed", "10.0.0.5:4000", []string{"1.1.1.1, 203.0.113.9"}, trusted, "203.0.113.9"},
		{"two trusted proxies, two header lines", "192.0.2.10:80", []string{"6.6.6.6, 203.0.113.9", "10.1.2.3"}, trusted, "203.0.113.9"},
		{"garbage stops at the proxy that passed it on", "10.0.0.5:4000", []string{"203.0.113.9, nonsense"}, trusted, "10.0.0.5"},
		{"only proxies: the leftmost", "10.0.0.5:4000", []string{"10.9.9.9, 10.0.0.6"}, trusted, "10.9.9.9"},
		{"IPv4-mapped peer", "[::ffff:198.51.100.7]:4000", nil, trusted, "198.51.100.7"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/v1/products", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		got, ok := ratelimit.ClientAddr(r, tc.trusted)
		if !ok || got.String() != tc.want {
			t.Errorf("%s: %v %v, want %s", tc.name, got, ok, tc.want)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "pipe"
	if _, ok := ratelimit.ClientAddr(r, trusted); ok {
		t.Error("RemoteAddr that is no address: want ok false")
	}
	if _, err := ratelimit.ParseProxies([]string{"varnish"}); err == nil || !strings.Contains(err.Error(), `"varnish"`) {
		t.Errorf("a host name as a proxy: %v", err)
	}
}

func TestAnIPv6ClientIsKeyedByItsSlash64(t *testing.T) {
	t.Parallel()
	a, b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	if ratelimit.AddrKey(a) != ratelimit.AddrKey(b) || ratelimit.AddrKey(a) != "ip:2001:db8:1:2::/64" {
		t.Errorf("keys %s and %s, want the same /64", ratelimit.AddrKey(a), ratelimit.AddrKey(b))
	}
	if got := ratelimit.AddrKey(netip.MustParseAddr("192.0.2.1")); got != "ip:192.0.2.1" {
		t.Errorf("IPv4 key %s", got)
	}
}

// BenchmarkAllow is one decision on a limiter holding 10 000 callers'
// buckets, from parallel goroutines: the cost a rate limit adds to every
// request.
func BenchmarkAllow(b *testing.B) {
	l, err := ratelimit.New(ratelimit.Config{Policy: "bench", Limit: ratelimit.Limit{Rate: 1e6, Burst: 1e6}})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "sub:customer-" + strconv.Itoa(i)
	}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(keys[i%len(keys)])
			i++
		}
	})
}
