package service

import (
	"fmt"
	"net/http"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/ratelimit"
)

// RateLimit is the public API's per-caller request limits (pkg/ratelimit,
// ADR 0038). Every request under /v1/ on the public listener takes a
// token from one bucket, and is answered 429 with Retry-After and the
// RateLimit fields when it is empty:
//
//   - a request with a bearer token the api role verifies: its principal's
//     bucket (the token's "sub"), Principal per second with bursts of
//     PrincipalBurst; a principal with the service role (another service's
//     client-credentials calls, which carry every customer's traffic:
//     orders' price lookups at catalog) has the Service limit instead;
//   - any other request (no token, or one that is not valid: the route
//     answers it 401, or needs no token): its client address's bucket
//     (ratelimit.ClientAddr: the peer's address, or, behind one of
//     TrustedProxies, the address the proxies saw; an IPv6 client's /64),
//     Anonymous per second with bursts of AnonymousBurst.
//
// The limits hold per process: N instances of the api role let a caller
// through N times as fast. A rate of 0 turns that limit off. The admin
// listener (ADR 0023) is not limited: only operators reach it.
type RateLimit struct {
	Principal      float64 `env:"RATE_LIMIT_PRINCIPAL" envDefault:"20"`
	PrincipalBurst int     `env:"RATE_LIMIT_PRINCIPAL_BURST" envDefault:"40"`
	Service        float64 `env:"RATE_LIMIT_SERVICE" envDefault:"500"`
	ServiceBurst   int     `env:"RATE_LIMIT_SERVICE_BURST" envDefault:"1000"`
	Anonymous      float64 `env:"RATE_LIMIT_ANONYMOUS" envDefault:"20"`
	AnonymousBurst int     `env:"RATE_LIMIT_ANONYMOUS_BURST" envDefault:"40"`
	// TrustedProxies are the addresses or CIDR prefixes of the proxies in
	// front of the service whose X-Forwarded-For is believed (Varnish, a
	// load balancer, the web service). Default none: X-Forwarded-For is
	// ignored, since any client can write it.
	TrustedProxies []string `env:"RATE_LIMIT_TRUSTED_PROXIES"`
	// MaxKeys bounds each limit's buckets (ratelimit.Config.MaxKeys).
	MaxKeys int `env:"RATE_LIMIT_MAX_KEYS" envDefault:"100000"`
}

// Validate names each variable that is out of range.
func (c RateLimit) Validate() []error {
	var errs []error
	for _, l := range c.limits() {
		if l.rate < 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive, or 0 to turn the limit off (got %v)", l.env, l.rate))
		}
		if l.rate > 0 && l.burst < 1 {
			errs = append(errs, fmt.Errorf("%s_BURST: must be at least 1 (got %d)", l.env, l.burst))
		}
	}
	if _, err := ratelimit.ParseProxies(c.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("RATE_LIMIT_TRUSTED_PROXIES: %w", err))
	}
	if c.MaxKeys < 1 {
		errs = append(errs, fmt.Errorf("RATE_LIMIT_MAX_KEYS: must be at least 1 (got %d)", c.MaxKeys))
	}
	return errs
}

type limitVar struct {
	policy, env string
	rate        float64
	burst       int
}

func (c RateLimit) limits() []limitVar {
	return []limitVar{
		{"principal", "RATE_LIMIT_PRINCIPAL", c.Principal, c.PrincipalBurst},
		{"service", "RATE_LIMIT_SERVICE", c.Service, c.ServiceBurst},
		{"anonymous", "RATE_LIMIT_ANONYMOUS", c.Anonymous, c.AnonymousBurst},
	}
}

// Limits are the public API's limiters of a RateLimit (nil when off).
type Limits struct {
	principal, service, anonymous *ratelimit.Limiter
	proxies                       []netip.Prefix
	authz                         *auth.Verifier
}

// NewLimits builds c's limiters, with their metrics on reg, identifying
// callers with authz (nil: every request is anonymous). Answers to
// anonymous requests may be stored by a CDN, so their buckets' state is
// sent with refusals only (ratelimit.Config.Shared).
func NewLimits(c RateLimit, authz *auth.Verifier, reg prometheus.Registerer) (*Limits, error) {
	proxies, err := ratelimit.ParseProxies(c.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("RATE_LIMIT_TRUSTED_PROXIES: %w", err)
	}
	l := &Limits{proxies: proxies, authz: authz}
	for _, v := range c.limits() {
		if v.rate == 0 {
			continue
		}
		lim, err := ratelimit.New(ratelimit.Config{Policy: v.policy, Limit: ratelimit.Limit{Rate: v.rate, Burst: v.burst},
			MaxKeys: c.MaxKeys, Shared: v.policy == "anonymous", Registerer: reg})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.env, err)
		}
		switch v.policy {
		case "principal":
			l.principal = lim
		case "service":
			l.service = lim
		default:
			l.anonymous = lim
		}
	}
	return l, nil
}

// Handler limits the requests to next by caller; route labels the
// metric. A verified token is verified once: the route's auth.Require
// takes the verification Identify made here.
func (l *Limits) Handler(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.authz != nil {
			if p, vr, ok := l.authz.Identify(r); ok {
				lim := l.principal
				if p.Has(auth.RoleService) {
					lim = l.service
				}
				if lim.Admit(w, route, "sub:"+p.Subject) {
					next.ServeHTTP(w, vr)
					// The mux recorded the route on vr; the access log
					// and the trace read it from r (httpkit.Middleware).
					r.Pattern = vr.Pattern
				}
				return
			}
		}
		key, cr := "ip:unknown", r // an in-process listener: one bucket for all
		if a, ok := ratelimit.ClientAddr(r, l.proxies); ok {
			key = ratelimit.AddrKey(a)
			// A handler that calls other services for this client passes
			// the address on (ratelimit.ForwardedFor; the web service).
			cr = r.WithContext(ratelimit.WithClientAddr(r.Context(), a))
		}
		if l.anonymous.Admit(w, route, key) {
			next.ServeHTTP(w, cr)
			r.Pattern = cr.Pattern
		}
	})
}
