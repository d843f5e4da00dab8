package testinfra

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
)

// RedisImage is the image testcontainers starts when no address is set.
const RedisImage = "redis:7-alpine"

// RedisPrefix is a test's own key space on the shared Redis server.
type RedisPrefix struct {
	// Client is closed when the test ends.
	Client *redis.Client
	// Prefix is unique to the test and ends with ':'. Every key the test
	// writes must start with it; they are deleted when the test ends.
	Prefix string
	// URL is the server's address (redis://host:port/db), to hand to code
	// under test that opens its own client.
	URL string
}

// Key returns Prefix + name.
func (r *RedisPrefix) Key(name string) string { return r.Prefix + name }

// Redis returns a client and a key prefix unique to this test.
func Redis(tb testing.TB) *RedisPrefix {
	tb.Helper()
	ctx := context.Background()
	srvURL, err := redisServer(ctx)
	if err != nil {
		unavailable(tb, err.Error())
	}
	opts, err := redis.ParseURL(srvURL)
	if err != nil {
		tb.Fatalf("testinfra: %s: %v", EnvRedisURL, err)
	}
	client := redis.NewClient(opts)
	prefix := "t:" + sanitize(tb.Name(), 40) + ":" + randomHex(4) + ":"
	tb.Cleanup(func() {
		defer client.Close()
		if err := deleteByPrefix(context.Background(), client, prefix); err != nil {
			tb.Errorf("testinfra: delete keys %s*: %v", prefix, err)
		}
	})
	return &RedisPrefix{Client: client, Prefix: prefix, URL: srvURL}
}

// deleteByPrefix removes every key under prefix with SCAN, never KEYS, so a
// shared server is not blocked.
func deleteByPrefix(ctx context.Context, c *redis.Client, prefix string) error {
	iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := c.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return c.Unlink(ctx, batch...).Err()
	}
	return nil
}

var redisShared struct {
	mu   sync.Mutex
	done bool
	url  string
	err  error
}

func redisServer(ctx context.Context) (string, error) {
	redisShared.mu.Lock()
	defer redisShared.mu.Unlock()
	if !redisShared.done {
		redisShared.url, redisShared.err = startRedis(ctx, os.Getenv(EnvRedisURL), dockerAvailable)
		redisShared.done = true
	}
	return redisShared.url, redisShared.err
}

func startRedis(ctx context.Context, envURL string, haveDocker func() bool) (string, error) {
	srvURL := envURL
	if srvURL == "" {
		if !haveDocker() {
			return "", errors.New(missingRedis)
		}
		ctr, err := tcredis.Run(ctx, RedisImage)
		if err != nil {
			return "", fmt.Errorf("start Redis with testcontainers (%s): %w", RedisImage, err)
		}
		onShutdown(func() { _ = ctr.Terminate(context.Background()) })
		if srvURL, err = ctr.ConnectionString(ctx); err != nil {
			return "", fmt.Errorf("redis container address: %w", err)
		}
	}
	opts, err := redis.ParseURL(srvURL)
	if err != nil {
		return "", fmt.Errorf("%s=%q is not a redis:// URL: %w", EnvRedisURL, srvURL, err)
	}
	// One dial attempt: a missing server is reported once, clearly, not as
	// five pool retries in the log.
	probe := *opts
	probe.DialerRetries, probe.MaxRetries = 1, -1
	c := redis.NewClient(&probe)
	defer c.Close()
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		return "", fmt.Errorf("cannot reach Redis at %s (from %s): %w\n%s", redact(srvURL), EnvRedisURL, err, startRedisHint)
	}
	return srvURL, nil
}

const startRedisHint = `Start Redis 7 (redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no),
or unset the variable on a machine with Docker to let testcontainers start one.`

const missingRedis = `no Redis for the tests: ` + EnvRedisURL + ` is not set and no Docker engine answers.
Either start Redis 7 and run
    export ` + EnvRedisURL + `='redis://127.0.0.1:6379/0'
(make test sets it for you), or start Docker so that testcontainers can start one`
