package ratelimit

import (
	"net/http"
	"strconv"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

// The response fields of draft-ietf-httpapi-ratelimit-headers-11.
const (
	// HeaderPolicy is the limit a request is under, the same for every
	// caller: `"<policy>";q=<Burst>;w=<Window>`, Burst requests per
	// Window seconds, the bucket's rate.
	HeaderPolicy = "RateLimit-Policy"
	// HeaderLimit is the caller's state under the policy:
	// `"<policy>";r=<remaining>;t=<seconds>`. t is the seconds until the
	// bucket is full again; on a refusal (r=0) it is the Retry-After
	// delay, so that Retry-After never points before the end of the
	// window (the draft's §6).
	HeaderLimit = "RateLimit"
)

// Admit takes a token from key's bucket for a request to route (a fixed
// label for the metric, such as "POST /v1/orders", never a raw path) and
// adds the RateLimit fields to w (the RateLimit field only on a refusal
// when Config.Shared): a request under two limits (the API's per caller,
// checkout's per customer) gets both policies, one field line each, which
// the draft reads as one list. When the bucket is empty it answers the request
// itself, 429 "rate-limited" with Retry-After and Cache-Control: no-store,
// counts it, and returns false; the caller then writes nothing more. A nil
// Limiter admits the request and sets nothing.
func (l *Limiter) Admit(w http.ResponseWriter, route, key string) bool {
	if l == nil {
		return true
	}
	d := l.Allow(key)
	h := w.Header()
	h.Add(HeaderPolicy, strconv.Quote(l.cfg.Policy)+";q="+strconv.Itoa(l.cfg.Limit.Burst)+";w="+strconv.FormatInt(l.cfg.Limit.Window(), 10))
	if d.Allowed {
		if !l.cfg.Shared {
			h.Add(HeaderLimit, l.state(d.Remaining, d.Full))
		}
		return true
	}
	l.limited.WithLabelValues(route).Inc()
	h.Add(HeaderLimit, l.state(0, d.RetryAfter))
	h.Set("Cache-Control", "no-store")
	p := httpkit.NewProblem(http.StatusTooManyRequests, "rate-limited",
		"too many requests from this caller ("+l.cfg.Policy+" limit: "+strconv.Itoa(l.cfg.Limit.Burst)+" at once, "+
			strconv.FormatFloat(l.cfg.Limit.Rate, 'g', -1, 64)+" a second); retry after the Retry-After delay")
	p.RetryAfter = time.Duration(ceilSeconds(d.RetryAfter)) * time.Second
	httpkit.WriteProblem(w, p)
	return false
}

// ByPrincipal keys a request by its principal (auth.FromContext): "sub:"
// and the subject. On a route without auth.Require it is "", so such a
// request is not limited by this key.
func ByPrincipal(r *http.Request) string {
	if p, ok := auth.FromContext(r.Context()); ok && p.Subject != "" {
		return "sub:" + p.Subject
	}
	return ""
}

func (l *Limiter) state(remaining int, t time.Duration) string {
	return strconv.Quote(l.cfg.Policy) + ";r=" + strconv.Itoa(remaining) + ";t=" + strconv.FormatInt(ceilSeconds(t), 10)
}

// Middleware admits each request through Admit with the key key returns;
// a request whose key is "" is not limited by l (key decides which
// requests the limit is for). A nil Limiter returns next unchanged.
func (l *Limiter) Middleware(route string, key func(*http.Request) string) httpkit.Middleware {
	return func(next http.Handler) http.Handler {
		if l == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if k := key(r); k == "" || l.Admit(w, route, k) {
				next.ServeHTTP(w, r)
			}
		})
	}
}
