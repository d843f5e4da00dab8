package idp

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/ratelimit"
)

// DefaultSignInFailures is how many wrong passwords one user name may
// take: 10 at once, then one every 12 seconds (5 a minute).
var DefaultSignInFailures = ratelimit.Limit{Rate: 1.0 / 12, Burst: 10}

// signInGuard slows password guessing against a user name, from however
// many addresses: each failed sign-in takes a token of the name's bucket,
// and when a failure finds it empty, the name's sign-ins are refused (429
// with Retry-After, before the password is looked at) until the bucket
// holds a token again. Successful sign-ins take nothing, so people who
// type their password right are never slowed; someone guessing a name
// can delay its owner by the same limit, which is the price of any
// per-account throttle (a per-address limit is the public listener's,
// RATE_LIMIT_ANONYMOUS).
type signInGuard struct {
	lim       *ratelimit.Limiter
	now       func() time.Time
	throttled prometheus.Counter

	mu    sync.Mutex
	until map[string]time.Time
}

// maxBlocked bounds the refused names kept; past it, those whose wait is
// over are dropped first.
const maxBlocked = 10_000

func newSignInGuard(limit ratelimit.Limit, reg prometheus.Registerer, now func() time.Time) (*signInGuard, error) {
	if limit == (ratelimit.Limit{}) {
		limit = DefaultSignInFailures
	}
	lim, err := ratelimit.New(ratelimit.Config{Policy: "sign-in-failures", Limit: limit, Registerer: reg, Now: now})
	if err != nil {
		return nil, err
	}
	g := &signInGuard{lim: lim, now: now, until: map[string]time.Time{},
		throttled: prometheus.NewCounter(prometheus.CounterOpts{Name: "identity_signin_throttled_total",
			Help: "Sign-ins refused because their user name failed too often (the sign-in-failures limit)."})}
	if reg != nil {
		if err := reg.Register(g.throttled); err != nil {
			return nil, err
		}
	}
	return g, nil
}

func nameKey(username string) string { return strings.ToLower(strings.TrimSpace(username)) }

// wait is how long sign-ins as username are refused from now (0: not).
func (g *signInGuard) wait(username string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	until, ok := g.until[nameKey(username)]
	if !ok {
		return 0
	}
	if d := until.Sub(g.now()); d > 0 {
		g.throttled.Inc()
		return d
	}
	delete(g.until, nameKey(username))
	return 0
}

// failed records a wrong password for username.
func (g *signInGuard) failed(username string) {
	d := g.lim.Allow(nameKey(username))
	if d.Allowed {
		return
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.until) >= maxBlocked {
		for k, t := range g.until {
			if !t.After(now) {
				delete(g.until, k)
			}
		}
	}
	if len(g.until) < maxBlocked {
		g.until[nameKey(username)] = now.Add(d.RetryAfter)
	}
}
