package main

import (
	"errors"
	"time"

	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
)

// Config is the serve command's configuration, from the environment.
type Config struct {
	service.Base
	service.Serve
	// RedisURL is the cache; catalog answers without it (slower).
	RedisURL   string `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0"`
	Partitions int    `env:"CATALOG_PARTITIONS" envDefault:"8"`
	// The api role accepts operators' tokens for /v1/admin and services'
	// for products:batch (service.Serve's Auth; ADR 0021, 0022).
	CacheBypass bool          `env:"CACHE_BYPASS" envDefault:"false"`
	CacheSoft   time.Duration `env:"CACHE_SOFT_TTL" envDefault:"5m"`
	CacheHard   time.Duration `env:"CACHE_HARD_TTL" envDefault:"1h"`
	// The near cache: an in-process layer in front of Redis for the api
	// role, kept in step by Redis pub/sub (ADR 0016). 0 entities: off.
	CacheNearEntities int           `env:"CACHE_NEAR_ENTITIES" envDefault:"10000"`
	CacheNearTTL      time.Duration `env:"CACHE_NEAR_TTL" envDefault:"1s"`
	// Public read caching for browsers (max-age) and the CDN (s-maxage).
	PublicMaxAge  time.Duration `env:"PUBLIC_MAX_AGE" envDefault:"60s"`
	PublicSMaxAge time.Duration `env:"PUBLIC_S_MAXAGE" envDefault:"1h"`
	// CDNPurgeURLs receive PURGE by surrogate key from the consumer role
	// (Varnish nodes), comma-separated. Empty: no CDN.
	CDNPurgeURLs []string `env:"CDN_PURGE_URLS"`
	// CDNPurgeSecret is sent with every purge (X-Purge-Secret); the CDN
	// refuses purges without it (ADR 0037). Required with CDNPurgeURLs,
	// at least 16 characters, no spaces or control characters. No default.
	CDNPurgeSecret string `env:"CDN_PURGE_SECRET"`
}

// Validate reports rules beyond one value's syntax.
func (c Config) Validate() []error {
	var errs []error
	if err := stream.CheckPartitions("CATALOG_PARTITIONS", c.Partitions); err != nil {
		errs = append(errs, err)
	}
	if c.CacheNearEntities < 0 {
		errs = append(errs, errors.New("CACHE_NEAR_ENTITIES: 0 (off) or more"))
	}
	if c.CacheNearEntities > 0 && (c.CacheNearTTL < time.Millisecond || c.CacheNearTTL > time.Minute) {
		errs = append(errs, errors.New("CACHE_NEAR_TTL: between 1ms and 1m (it bounds how stale a lost invalidation can leave a read)"))
	}
	if len(c.CDNPurgeURLs) > 0 {
		if err := checkPurgeSecret(c.CDNPurgeSecret); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// checkPurgeSecret is the rule for CDN_PURGE_SECRET: a value a CDN can
// compare in a header, long enough not to be guessed. The error never
// contains the value.
func checkPurgeSecret(s string) error {
	if len(s) < 16 {
		return errors.New("CDN_PURGE_SECRET: required with CDN_PURGE_URLS, at least 16 characters (the CDN refuses purges without it; generate one: openssl rand -hex 24)")
	}
	for _, r := range s {
		if r <= ' ' || r >= 0x7f {
			return errors.New("CDN_PURGE_SECRET: printable ASCII without spaces only (it goes into an HTTP header)")
		}
	}
	return nil
}
