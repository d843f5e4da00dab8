package producthttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/httpcache"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productstream"
)

// purge sends a PURGE of key to cdn with header set (none when nil) and
// returns the status.
func purge(t *testing.T, cdn, key string, header map[string]string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), "PURGE", cdn+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("xkey-purge", key)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return doReq(t, req).status
}

// TestVarnishPurgesOnlyWithTheSharedSecret: behind deploy/compose's VCL a
// PURGE without X-Purge-Secret, or with anything but CDN_PURGE_SECRET in
// it, is refused with 403 and purges nothing (the next read is still a
// hit); catalog's Purger, given the secret, purges (ADR 0037).
func TestVarnishPurgesOnlyWithTheSharedSecret(t *testing.T) {
	t.Parallel()
	b, origin, cdn := behindVarnish(t, httpcache.Policy{})
	p := b.create(t, lamp("LAMP-PURGE"))
	path := "/v1/products/" + p.ID + "?currency=EUR"
	key := "product:" + p.ID
	get(t, cdn+path, nil)
	if r := get(t, cdn+path, nil); r.header.Get("X-Cache") != "HIT" {
		t.Fatalf("second GET = %s, want a hit", r.header.Get("X-Cache"))
	}
	fetched := origin.hits.Load()

	for name, header := range map[string]map[string]string{
		"no secret":    nil,
		"empty":        {productstream.SecretHeader: ""},
		"wrong":        {productstream.SecretHeader: "not-the-purge-secret-0123456789"},
		"its prefix":   {productstream.SecretHeader: purgeSecret[:16]},
		"longer":       {productstream.SecretHeader: purgeSecret + "x"},
		"upper case":   {productstream.SecretHeader: strings.ToUpper(purgeSecret)},
		"other header": {"X-Purge-Token": purgeSecret},
	} {
		if st := purge(t, cdn, key, header); st != http.StatusForbidden {
			t.Errorf("PURGE with %s = %d, want 403", name, st)
		}
		if r := get(t, cdn+path, nil); r.header.Get("X-Cache") != "HIT" || origin.hits.Load() != fetched {
			t.Fatalf("after a PURGE with %s the entry is gone (%s)", name, r.header.Get("X-Cache"))
		}
	}

	// The consumer's Purger: refused with a wrong secret (a configuration
	// error, retried then dead-lettered), obeyed with the right one.
	wrong := &productstream.Purger{URLs: []string{cdn + "/"}, Secret: "not-the-purge-secret-0123456789"}
	if err := wrong.Purge(context.Background(), key); err == nil || !strings.Contains(err.Error(), "status 403") {
		t.Fatalf("Purge with a wrong secret: %v, want status 403", err)
	}
	right := &productstream.Purger{URLs: []string{cdn + "/"}, Secret: purgeSecret}
	if err := right.Purge(context.Background(), key); err != nil {
		t.Fatalf("Purge with the secret: %v", err)
	}
	if r := get(t, cdn+path, nil); r.header.Get("X-Cache") != "MISS" || origin.hits.Load() != fetched+1 {
		t.Fatalf("after the purge: %s, origin fetched %d times, want a miss", r.header.Get("X-Cache"), origin.hits.Load()-fetched)
	}
}

// TestVarnishRefusesEveryPurgeWithoutAUsableSecret: a varnishd whose
// environment has no CDN_PURGE_SECRET, or one shorter than 16 characters,
// refuses every PURGE, whatever the header says (an unset variable never
// matches an absent or empty header).
func TestVarnishRefusesEveryPurgeWithoutAUsableSecret(t *testing.T) {
	t.Parallel()
	origin := httpServer(t)
	for name, env := range map[string][]string{
		"unset": nil,
		"empty": {"CDN_PURGE_SECRET="},
		"short": {"CDN_PURGE_SECRET=short-secret15"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cdn := varnishWithEnv(t, origin, env...)
			for _, header := range []map[string]string{nil, {productstream.SecretHeader: ""}, {productstream.SecretHeader: "short-secret15"}} {
				if st := purge(t, cdn, "product:1", header); st != http.StatusForbidden {
					t.Errorf("PURGE with %v = %d, want 403", header, st)
				}
			}
		})
	}
}

// TestVarnishNeverForwardsThePurgeSecret: a request other than PURGE that
// carries X-Purge-Secret reaches the origin without it, so the secret
// never lands in the origin's logs or anything it calls.
func TestVarnishNeverForwardsThePurgeSecret(t *testing.T) {
	t.Parallel()
	var seen atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Get(productstream.SecretHeader) + "|" + r.Header.Get("X-Other"))
		w.Header().Set("Cache-Control", "private, no-store")
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	cdn := varnish(t, u.Host)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		req, err := http.NewRequestWithContext(context.Background(), method, cdn+"/v1/products/p-1", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(productstream.SecretHeader, purgeSecret)
		req.Header.Set("X-Other", "kept")
		if st := doReq(t, req).status; st != http.StatusOK {
			t.Fatalf("%s = %d", method, st)
		}
		if got := seen.Load(); got != "|kept" {
			t.Errorf("%s: the origin saw %q (secret|X-Other), want %q", method, got, "|kept")
		}
	}
}

// httpServer is an origin that answers 200 to everything, for tests that
// need Varnish to start but never read through it; it returns host:port.
func httpServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
