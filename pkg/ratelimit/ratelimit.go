// Package ratelimit limits requests per caller with token buckets: one
// bucket per key (a principal, a client address), each a
// golang.org/x/time/rate Limiter, kept in the process (ADR 0038).
//
// # Contract
//
//   - A key's bucket holds at most Limit.Burst tokens and gains Limit.Rate
//     tokens a second; a request takes one token or is refused. A key seen
//     for the first time starts with a full bucket.
//   - Limits hold per process: with N instances behind a balancer a
//     caller gets up to N times the limit. Nothing is shared and nothing
//     outside the process is called, so a decision never fails, never
//     waits and costs no round trip.
//   - Memory is bounded. A bucket idle long enough to be full again
//     (Burst/Rate) is the same as no bucket: it is dropped, least recently
//     used first, during later decisions (no goroutine). Past
//     Config.MaxKeys buckets the least recently used one is dropped even
//     when it is not full, which gives that caller a fresh burst; such
//     evictions are counted, so a dashboard shows when MaxKeys is too
//     small (or when someone is cycling addresses).
//   - A refusal is answered 429 application/problem+json ("rate-limited")
//     with Retry-After in whole seconds, rounded up: the time until the
//     bucket holds a token again. Answers carry the RateLimit-Policy and
//     RateLimit fields of draft-ietf-httpapi-ratelimit-headers-11 (Admit).
//
// Metrics (Config.Registerer), labelled with the policy:
// http_requests_rate_limited_total{policy,route}, ratelimit_keys{policy}
// and ratelimit_evictions_total{policy}.
package ratelimit

import (
	"container/list"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// DefaultMaxKeys is Config.MaxKeys when unset: a bucket takes a few
// hundred bytes, so some 30 MB at most.
const DefaultMaxKeys = 100_000

// Limit is a token bucket's shape.
type Limit struct {
	// Rate is how many tokens the bucket gains a second: the sustained
	// request rate a caller may keep up.
	Rate float64
	// Burst is the bucket's size: how many requests a caller with a full
	// bucket may send at once.
	Burst int
}

// Window is how long an empty bucket takes to fill (Burst/Rate), in whole
// seconds rounded up, at least 1: the "w" of the RateLimit-Policy field,
// so that q=Burst per w seconds is the limit's rate.
func (l Limit) Window() int64 { return max(1, ceilSeconds(l.fill(float64(l.Burst)))) }

// fill is how long the bucket takes to gain n tokens.
func (l Limit) fill(n float64) time.Duration {
	return time.Duration(n / l.Rate * float64(time.Second))
}

// Config is a Limiter's configuration.
type Config struct {
	// Policy names the limit in the RateLimit fields and the metrics
	// ("principal", "anonymous", "checkout"): lower-case letters, digits
	// and '-'. Required.
	Policy string
	// Limit is every key's bucket. Rate and Burst must be positive (a
	// limit that is off is a nil *Limiter, which admits everything).
	Limit Limit
	// MaxKeys bounds how many buckets are kept (default DefaultMaxKeys).
	MaxKeys int
	// Shared says that answers to the limited requests may be stored by a
	// shared cache (a CDN in front of public reads): the RateLimit field,
	// which is one caller's state, is then sent with refusals only, never
	// on an answer the cache could hand to another caller.
	Shared bool
	// Registerer, when set, receives the metrics.
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now); tests pass a fake one.
	Now func() time.Time
}

var policyName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	var errs []error
	if !policyName.MatchString(c.Policy) {
		errs = append(errs, fmt.Errorf("ratelimit: policy %q: must be lower-case letters, digits and '-'", c.Policy))
	}
	if !(c.Limit.Rate > 0) || math.IsInf(c.Limit.Rate, 0) {
		errs = append(errs, fmt.Errorf("ratelimit %s: rate must be positive (got %v)", c.Policy, c.Limit.Rate))
	}
	if c.Limit.Burst < 1 {
		errs = append(errs, fmt.Errorf("ratelimit %s: burst must be at least 1 (got %d)", c.Policy, c.Limit.Burst))
	}
	if c.MaxKeys < 0 {
		errs = append(errs, fmt.Errorf("ratelimit %s: max keys must not be negative (got %d)", c.Policy, c.MaxKeys))
	}
	return errors.Join(errs...)
}

// Limiter keeps one token bucket per key. It is safe for concurrent use.
// A nil *Limiter admits every request: a limit that is turned off.
type Limiter struct {
	cfg       Config
	fullAfter time.Duration

	mu   sync.Mutex
	keys map[string]*list.Element // of *bucket
	lru  *list.List               // front: most recently used

	limited   *prometheus.CounterVec
	size      prometheus.Gauge
	evictions prometheus.Counter
}

type bucket struct {
	key  string
	lim  *rate.Limiter
	last time.Time
}

// New returns a Limiter for cfg.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	policy := prometheus.Labels{"policy": cfg.Policy}
	l := &Limiter{cfg: cfg, fullAfter: cfg.Limit.fill(float64(cfg.Limit.Burst)),
		keys: make(map[string]*list.Element), lru: list.New(),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_rate_limited_total",
			Help: "Requests answered 429 by a rate limit, by policy and route.", ConstLabels: policy}, []string{"route"}),
		size: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ratelimit_keys",
			Help: "Token buckets a rate limit keeps (callers seen recently whose bucket is not full).", ConstLabels: policy}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{Name: "ratelimit_evictions_total",
			Help: "Buckets dropped before they were full because the limit keeps at most its max keys.", ConstLabels: policy}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{l.limited, l.size, l.evictions} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("ratelimit %s: register metrics: %w", cfg.Policy, err)
			}
		}
	}
	return l, nil
}

// Policy is the limit's name.
func (l *Limiter) Policy() string { return l.cfg.Policy }

// Limit is the limit's bucket shape.
func (l *Limiter) Limit() Limit { return l.cfg.Limit }

// Decision is the outcome of one request.
type Decision struct {
	// Allowed: the request took a token.
	Allowed bool
	// Remaining is how many whole tokens are left after the request.
	Remaining int
	// Full is how long until the bucket is full again.
	Full time.Duration
	// RetryAfter is how long until the bucket holds a token again; 0 when
	// the request was allowed.
	RetryAfter time.Duration
}

// Allow takes a token from key's bucket, if there is one.
func (l *Limiter) Allow(key string) Decision {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, now)
	ok := b.lim.AllowN(now, 1)
	tokens := max(b.lim.TokensAt(now), 0)
	d := Decision{Allowed: ok, Remaining: int(tokens), Full: l.cfg.Limit.fill(float64(l.cfg.Limit.Burst) - tokens)}
	if !ok {
		d.RetryAfter = l.cfg.Limit.fill(1 - tokens)
	}
	return d
}

// bucket returns key's bucket, marked used at now, after dropping the
// buckets that are full again and, at MaxKeys, the least recently used.
// l.mu is held.
func (l *Limiter) bucket(key string, now time.Time) *bucket {
	for e := l.lru.Back(); e != nil; e = l.lru.Back() {
		if b := e.Value.(*bucket); now.Sub(b.last) < l.fullAfter {
			break
		}
		l.drop(e)
	}
	if e, ok := l.keys[key]; ok {
		l.lru.MoveToFront(e)
		b := e.Value.(*bucket)
		b.last = now
		return b
	}
	if len(l.keys) >= l.cfg.MaxKeys {
		l.drop(l.lru.Back())
		l.evictions.Inc()
	}
	b := &bucket{key: key, lim: rate.NewLimiter(rate.Limit(l.cfg.Limit.Rate), l.cfg.Limit.Burst), last: now}
	l.keys[key] = l.lru.PushFront(b)
	l.size.Set(float64(len(l.keys)))
	return b
}

func (l *Limiter) drop(e *list.Element) {
	delete(l.keys, e.Value.(*bucket).key)
	l.lru.Remove(e)
	l.size.Set(float64(len(l.keys)))
}

// Len is how many buckets the limiter keeps.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// ceilSeconds is d in whole seconds, rounded up.
func ceilSeconds(d time.Duration) int64 {
	return int64((max(d, 0) + time.Second - 1) / time.Second)
}
