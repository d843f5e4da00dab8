package testinfra

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

// Environment variables that point the harness at running servers.
const (
	EnvPostgresURL = "SHOPFLOOR_TEST_POSTGRES_URL"
	EnvRedisURL    = "SHOPFLOOR_TEST_REDIS_URL"
	EnvNATSURL     = "SHOPFLOOR_TEST_NATS_URL"
)

// unavailable fails the test with msg, or skips it under -short. CI never
// runs -short, so a missing server fails CI.
func unavailable(tb testing.TB, msg string) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("testinfra (-short): " + msg)
	}
	tb.Fatal("testinfra: " + msg)
}

var docker struct {
	once sync.Once
	ok   bool
}

// dockerAvailable reports whether a Docker engine answers, asking once per
// test binary. A missing socket answers in microseconds.
func dockerAvailable() bool {
	docker.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cli, err := testcontainers.NewDockerClientWithOpts(ctx)
		if err != nil {
			return
		}
		_ = cli.Close()
		docker.ok = true
	})
	return docker.ok
}
