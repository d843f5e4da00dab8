package httpcache_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/httpcache"
)

func TestCacheControlRendersTheDefaultsAndEachField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    httpcache.Policy
		want string
	}{
		{httpcache.Policy{}, "public, max-age=60, s-maxage=3600, stale-while-revalidate=30, stale-if-error=86400"},
		{httpcache.Policy{MaxAge: 5 * time.Second, SMaxAge: time.Minute, StaleWhileRevalidate: time.Second, StaleIfError: time.Hour},
			"public, max-age=5, s-maxage=60, stale-while-revalidate=1, stale-if-error=3600"},
	}
	for _, tt := range tests {
		if got := tt.p.CacheControl(); got != tt.want {
			t.Errorf("CacheControl = %q, want %q", got, tt.want)
		}
	}
}

func TestETagDependsOnEveryInput(t *testing.T) {
	t.Parallel()
	base := httpcache.ETag("p1", "3", "en-US", "EUR")
	for _, other := range []string{
		httpcache.ETag("p2", "3", "en-US", "EUR"),
		httpcache.ETag("p1", "4", "en-US", "EUR"),
		httpcache.ETag("p1", "3", "de-DE", "EUR"),
		httpcache.ETag("p1", "3", "en-US", "USD"),
		httpcache.ETag("p13", "", "en-US", "EUR"), // no ambiguity across parts
	} {
		if other == base {
			t.Fatalf("two representations share the ETag %s", base)
		}
	}
	if httpcache.ETag("p1", "3", "en-US", "EUR") != base {
		t.Fatal("ETag is not deterministic")
	}
	if base[0] != '"' || base[len(base)-1] != '"' {
		t.Fatalf("ETag %s is not a quoted strong validator", base)
	}
}

func TestNotModifiedMatchesWeakListedAndWildcardETags(t *testing.T) {
	t.Parallel()
	etag := httpcache.ETag("p1", "3")
	tests := []struct {
		inm  string
		want bool
	}{
		{"", false},
		{etag, true},
		{"W/" + etag, true},
		{`"other", ` + etag, true},
		{`"other"`, false},
		{"*", true},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if tt.inm != "" {
			r.Header.Set("If-None-Match", tt.inm)
		}
		if got := httpcache.NotModified(r, etag); got != tt.want {
			t.Errorf("If-None-Match %q: %v, want %v", tt.inm, got, tt.want)
		}
	}
}

func TestPublicSetsSurrogateKeysAndPrivateRemovesThem(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	httpcache.Public(h, httpcache.Policy{}, `"e"`, []string{"product:1", "category:lamps"}, "Accept-Language")
	if h.Get("Surrogate-Key") != "product:1 category:lamps" || h.Get("xkey") != "product:1 category:lamps" || h.Get("Vary") != "Accept-Language" || h.Get("ETag") != `"e"` {
		t.Fatalf("public headers = %v", h)
	}
	httpcache.Private(h)
	if h.Get("Cache-Control") != "private, no-store" || h.Get("ETag") != "" || h.Get("Surrogate-Key") != "" || h.Get("xkey") != "" {
		t.Fatalf("private headers = %v", h)
	}
	n := http.Header{}
	httpcache.NotFound(n)
	if n.Get("Cache-Control") != "public, max-age=0, s-maxage=10" {
		t.Fatalf("404 Cache-Control = %q", n.Get("Cache-Control"))
	}
}
