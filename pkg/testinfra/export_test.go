package testinfra

import (
	"context"
	"testing"
)

// Hooks for the package's own tests.

func StartPostgresForTest(url string, docker bool) error {
	_, err := startPostgres(context.Background(), url, func() bool { return docker })
	return err
}

func StartRedisForTest(url string, docker bool) error {
	_, err := startRedis(context.Background(), url, func() bool { return docker })
	return err
}

func UnavailableForTest(tb testing.TB, msg string) { unavailable(tb, msg) }
