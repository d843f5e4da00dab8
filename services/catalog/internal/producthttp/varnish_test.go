package producthttp_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/httpcache"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productstream"
)

// purgeSecret is the CDN_PURGE_SECRET of the test's varnishd.
const purgeSecret = "test-purge-secret-0123456789abcdef"

// varnish runs varnishd with deploy/compose/varnish/default.vcl in front
// of origin (host:port) and returns its base URL. Its CDN_PURGE_SECRET is
// purgeSecret.
func varnish(t testing.TB, origin string) string {
	t.Helper()
	return varnishWithEnv(t, origin, "CDN_PURGE_SECRET="+purgeSecret)
}

// varnishWithEnv is varnish with env (NAME=value) as varnishd's only
// environment besides PATH.
func varnishWithEnv(t testing.TB, origin string, env ...string) string {
	t.Helper()
	bin, err := exec.LookPath("varnishd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/varnishd", "/usr/local/sbin/varnishd"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		t.Fatal("varnishd not found: run `make tools` (apt-get install varnish varnish-modules)")
	}
	vcl, err := os.ReadFile("../../../../deploy/compose/varnish/default.vcl")
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(origin)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(vcl), `.host = "catalog";`, fmt.Sprintf(".host = %q;", host), 1)
	s = strings.Replace(s, `.port = "8081";`, fmt.Sprintf(".port = %q;", port), 1)
	dir := t.TempDir()
	vclPath := filepath.Join(dir, "test.vcl")
	if err := os.WriteFile(vclPath, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cmd := exec.Command(bin, "-F", "-j", "none", "-a", addr, "-f", vclPath, "-n", filepath.Join(dir, "n"), "-s", "malloc,32m")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start varnishd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("varnishd output:\n%s", out.String())
		}
	})
	testinfra.Eventually(t, 20*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("varnishd not listening: %w", err)
		}
		return c.Close()
	})
	return "http://" + addr
}

func get(t testing.TB, u string, header map[string]string) resp {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return doReq(t, req)
}

func doReq(t testing.TB, req *http.Request) resp {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: body}
}

// countingOrigin counts the requests that reach catalog through Varnish.
type countingOrigin struct {
	h    http.Handler
	hits atomic.Int64
	down atomic.Bool
}

func (o *countingOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/products") {
		o.hits.Add(1)
		if o.down.Load() {
			http.Error(w, "origin down", http.StatusServiceUnavailable)
			return
		}
	}
	o.h.ServeHTTP(w, r)
}

// TestVarnishServesHitsAndForgetsAPurgedSurrogateKey: behind
// deploy/compose's VCL a product read is fetched once and then served as a
// hit (tracking parameters share the entry), surrogate keys never reach
// the client, personal requests bypass the cache, and a PURGE of the
// product's key makes the next read fetch the new version.
func TestVarnishServesHitsAndForgetsAPurgedSurrogateKey(t *testing.T) {
	t.Parallel()
	b, origin, cdn := behindVarnish(t, httpcache.Policy{})
	p := b.create(t, lamp("LAMP-CDN"))
	path := "/v1/products/" + p.ID + "?currency=EUR"

	// Second GET is a hit; a tracking parameter shares the entry.
	first := get(t, cdn+path, nil)
	if first.status != 200 || first.header.Get("X-Cache") != "MISS" {
		t.Fatalf("first GET = %d %s", first.status, first.header.Get("X-Cache"))
	}
	if first.header.Get("xkey") != "" || first.header.Get("Surrogate-Key") != "" {
		t.Fatal("surrogate keys leaked to the client")
	}
	for _, q := range []string{"", "&utm_source=newsletter", "&gclid=abc&utm_medium=mail"} {
		if r := get(t, cdn+path+q, nil); r.header.Get("X-Cache") != "HIT" {
			t.Fatalf("GET %s = %s, want a hit", q, r.header.Get("X-Cache"))
		}
	}
	if n := origin.hits.Load(); n != 1 {
		t.Fatalf("origin saw %d requests, want 1", n)
	}

	// Personal requests are never served from, or stored in, the cache.
	for _, h := range []map[string]string{{"Cookie": "session=1"}, {"Authorization": "Bearer x"}} {
		before := origin.hits.Load()
		if r := get(t, cdn+path, h); r.header.Get("X-Cache") != "MISS" || origin.hits.Load() != before+1 {
			t.Fatalf("request with %v served from the cache", h)
		}
	}

	// Update → purge by surrogate key → the next GET shows the new version.
	if r := b.do(t, "PUT", "/v1/admin/products/"+p.ID+"/prices/EUR", map[string]int64{"amount_minor": 1234}, withAdmin(map[string]string{"If-Match": `"v1"`})); r.status != 200 {
		t.Fatalf("price change = %d", r.status)
	}
	purge, err := http.NewRequestWithContext(context.Background(), "PURGE", cdn+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	purge.Header.Set("xkey-purge", "product:"+p.ID)
	purge.Header.Set(productstream.SecretHeader, purgeSecret)
	if r := doReq(t, purge); r.status != 200 || !regexp.MustCompile(`Purged [1-9]`).Match(r.body) {
		t.Fatalf("PURGE = %d %s", r.status, r.body)
	}
	r := get(t, cdn+path, nil)
	if r.header.Get("X-Cache") != "MISS" || decode[catalogapi.Product](t, r).Price.AmountMinor != 1234 {
		t.Fatalf("after purge: %s %s", r.header.Get("X-Cache"), r.body)
	}

}

func behindVarnish(t testing.TB, public httpcache.Policy) (*bundle, *countingOrigin, string) {
	t.Helper()
	b := setupWith(t, nil, public)
	origin := &countingOrigin{h: b.srv.Config.Handler}
	b.srv.Config.Handler = origin
	u, err := url.Parse(b.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return b, origin, varnish(t, u.Host)
}

// TestVarnishServesStaleWhenOriginFails: past its s-maxage, with catalog
// failing, the CDN keeps serving the copy it has instead of an error.
func TestVarnishServesStaleWhenOriginFails(t *testing.T) {
	t.Parallel()
	// A one-second s-maxage so the test can watch the entry expire.
	b, origin, cdn := behindVarnish(t, httpcache.Policy{MaxAge: time.Second, SMaxAge: time.Second})
	p := b.create(t, lamp("LAMP-STALE"))
	path := "/v1/products/" + p.ID + "?currency=EUR"
	if r := get(t, cdn+path, nil); r.status != 200 {
		t.Fatalf("first GET = %d", r.status)
	}
	origin.down.Store(true)
	testinfra.Eventually(t, 20*time.Second, func() error {
		r := get(t, cdn+path, nil)
		if r.status != 200 || decode[catalogapi.Product](t, r).Price.AmountMinor != 4999 {
			t.Fatalf("origin down: %d %s", r.status, r.body)
		}
		if age, _ := strconv.Atoi(r.header.Get("Age")); age < 2 {
			return fmt.Errorf("Age %d: still fresh", age)
		}
		return nil // served past s-maxage=1 while the origin fails
	})
	if origin.hits.Load() < 2 {
		t.Fatal("Varnish never tried to refresh the expired entry")
	}
}
