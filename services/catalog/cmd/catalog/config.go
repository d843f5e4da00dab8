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
	return errs
}
