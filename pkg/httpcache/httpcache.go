// Package httpcache writes the HTTP caching headers of shopfloor's public
// reads and answers conditional requests, so that a CDN (Varnish, see
// deploy/compose/varnish) and browsers cache what may be cached and nothing
// else.
//
// Contract:
//   - Public responses get Cache-Control "public, max-age=M, s-maxage=S,
//     stale-while-revalidate=W, stale-if-error=E": browsers keep M, shared
//     caches S; after that a cache may serve the stale copy for W while it
//     revalidates, and for E when the origin fails.
//   - Private responses (admin, previews, anything behind Authorization)
//     get "private, no-store", and never an ETag a shared cache could use.
//   - The ETag is strong and derived from every input of the representation
//     (entity id, version, locale, currency, and the representation's schema
//     version), so two different bodies never share one. NotModified answers
//     If-None-Match (weak comparison, "*" and lists included) with 304.
//   - Surrogate keys (Surrogate-Key and xkey, space separated) name what a
//     response depends on, e.g. "product:42 category:lamps", so one purge
//     by key drops every page that showed the entity.
//   - Vary stays minimal: only the request headers that really change the
//     body (Accept-Language when the locale comes from it).
//   - Errors are not cached, except a 404 for a short negative TTL.
package httpcache

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Policy is the Cache-Control of a public representation.
type Policy struct {
	// MaxAge is for browsers. Default 60s.
	MaxAge time.Duration
	// SMaxAge is for shared caches (the CDN), which are purged on change.
	// Default 1h.
	SMaxAge time.Duration
	// StaleWhileRevalidate and StaleIfError extend what a cache may serve.
	// Defaults 30s and 1 day.
	StaleWhileRevalidate time.Duration
	StaleIfError         time.Duration
}

func (p Policy) withDefaults() Policy {
	d := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	d(&p.MaxAge, time.Minute)
	d(&p.SMaxAge, time.Hour)
	d(&p.StaleWhileRevalidate, 30*time.Second)
	d(&p.StaleIfError, 24*time.Hour)
	return p
}

// CacheControl renders the header value.
func (p Policy) CacheControl() string {
	p = p.withDefaults()
	return fmt.Sprintf("public, max-age=%d, s-maxage=%d, stale-while-revalidate=%d, stale-if-error=%d",
		secs(p.MaxAge), secs(p.SMaxAge), secs(p.StaleWhileRevalidate), secs(p.StaleIfError))
}

func secs(d time.Duration) int64 { return int64(d / time.Second) }

// NegativeTTL is how long a shared cache may keep a 404.
const NegativeTTL = 10 * time.Second

// Public sets the headers of a cacheable public response.
func Public(h http.Header, p Policy, etag string, surrogateKeys []string, vary ...string) {
	h.Set("Cache-Control", p.CacheControl())
	if etag != "" {
		h.Set("ETag", etag)
	}
	if len(surrogateKeys) > 0 {
		keys := strings.Join(surrogateKeys, " ")
		h.Set("Surrogate-Key", keys)
		h.Set("xkey", keys)
	}
	for _, v := range vary {
		h.Add("Vary", v)
	}
}

// Private marks a response as never cacheable by anyone.
func Private(h http.Header) {
	h.Set("Cache-Control", "private, no-store")
	h.Del("ETag")
	h.Del("Surrogate-Key")
	h.Del("xkey")
}

// NotFound sets the headers of a 404 a shared cache may keep briefly.
func NotFound(h http.Header) {
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=0, s-maxage=%d", secs(NegativeTTL)))
}

// NoStore marks an error response as not cacheable.
func NoStore(h http.Header) { h.Set("Cache-Control", "no-store") }

// ETag returns a strong ETag over parts (id, version, locale, currency, …).
func ETag(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}

// NotModified reports whether r's If-None-Match matches etag; the caller
// then answers 304 with the same caching headers and no body.
func NotModified(r *http.Request, etag string) bool {
	return Matches(r.Header.Get("If-None-Match"), etag)
}

// Matches reports whether an If-None-Match header value matches etag.
func Matches(inm, etag string) bool {
	if inm == "" || etag == "" {
		return false
	}
	if strings.TrimSpace(inm) == "*" {
		return true
	}
	want := strings.TrimPrefix(etag, "W/")
	for _, t := range strings.Split(inm, ",") {
		if strings.TrimPrefix(strings.TrimSpace(t), "W/") == want {
			return true
		}
	}
	return false
}
