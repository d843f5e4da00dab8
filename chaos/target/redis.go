package target

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/shopfloor/shopfloor/pkg/cache"
)

// CacheNamespace is the prefix of every key the system's caches write
// (pkg/cache's default Namespace, "shopfloor:").
const CacheNamespace = "shopfloor:"

// ComposeRedisURL is the compose topology's Redis as
// deploy/compose/compose.chaos.yaml publishes it on the host (the redis service's
// 6379 at 127.0.0.1:16379; catalog uses database 0), logged in as its
// default user, the operator's, with password (REDIS_PASSWORD of
// deploy/compose/.env; ADR 0036). catalog's own user could not FLUSHDB.
func ComposeRedisURL(password string) string {
	u := url.URL{Scheme: "redis", User: url.UserPassword("default", password), Host: "127.0.0.1:16379", Path: "/0"}
	return u.String()
}

// LocalRedisURL is the Redis database of a deploy/local run that uses
// SHOPFLOOR_REDIS_DB=db: the machine's server, directly (not through
// Toxiproxy), database db.
func LocalRedisURL(db int) string { return fmt.Sprintf("redis://127.0.0.1:6379/%d", db) }

// ReadRedisEnv returns REDIS_URL of a run directory's redis.env, which
// deploy/local/run.sh writes: the run's own Redis database.
func ReadRedisEnv(runDir string) (string, error) {
	path := filepath.Join(runDir, "redis.env")
	env, err := readEnvFile(path)
	if err != nil {
		return "", fmt.Errorf("redis settings: %w (a run started before run.sh wrote redis.env: restart it, or pass --url redis=redis://host:port/db)", err)
	}
	u := env["REDIS_URL"]
	if !strings.HasPrefix(u, "redis://") {
		return "", fmt.Errorf("redis settings: %s has no REDIS_URL=redis://…", path)
	}
	return u, nil
}

// redisClient opens a client of the topology's Redis database
// (Endpoints.Redis). The caller closes it.
func (s *System) redisClient() (*redis.Client, error) {
	if s.Redis == "" {
		return nil, errors.New("the topology's Redis database is not known (local: the run directory's redis.env; or --url redis=redis://host:port/db)")
	}
	o, err := redis.ParseURL(s.Redis)
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", cache.RedactURL(s.Redis), err)
	}
	return redis.NewClient(o), nil
}

// RedisDBSize returns DBSIZE of the topology's Redis database.
func (s *System) RedisDBSize(ctx context.Context) (int64, error) {
	c, err := s.redisClient()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	n, err := c.DBSize(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("redis %s: DBSIZE: %w", cache.RedactURL(s.Redis), err)
	}
	return n, nil
}

// RedisCount counts the keys of the topology's Redis database that match
// pattern (SCAN, never KEYS: the server is shared).
func (s *System) RedisCount(ctx context.Context, pattern string) (int64, error) {
	c, err := s.redisClient()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var n int64
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		n++
	}
	if err := iter.Err(); err != nil {
		return n, fmt.Errorf("redis %s: SCAN %s: %w", cache.RedactURL(s.Redis), pattern, err)
	}
	return n, nil
}

// RedisFlushDB empties the topology's Redis database with FLUSHDB, never
// FLUSHALL: the server is shared with other copies of the topology (each
// with its own SHOPFLOOR_REDIS_DB) and with tests. It refuses when the
// database holds a key outside CacheNamespace (a test's "t:…" keys: tests
// use database 0 by default, like `make run`), so that a drill never
// empties what is not the system's. It returns DBSIZE before the flush.
func (s *System) RedisFlushDB(ctx context.Context) (int64, error) {
	c, err := s.redisClient()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	iter := c.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		if k := iter.Val(); !strings.HasPrefix(k, CacheNamespace) {
			return 0, fmt.Errorf("redis %s holds %q, not a key of the system (%s*): shared with something else (a test?); not flushing it", cache.RedactURL(s.Redis), k, CacheNamespace)
		}
	}
	if err := iter.Err(); err != nil {
		return 0, fmt.Errorf("redis %s: SCAN: %w", cache.RedactURL(s.Redis), err)
	}
	before, err := c.DBSize(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("redis %s: DBSIZE: %w", cache.RedactURL(s.Redis), err)
	}
	if err := c.FlushDB(ctx).Err(); err != nil {
		return before, fmt.Errorf("redis %s: FLUSHDB: %w", cache.RedactURL(s.Redis), err)
	}
	return before, nil
}
