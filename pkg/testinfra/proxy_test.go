package testinfra_test

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestProxyDownBlackholeUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testinfra.Redis(t)
	opts, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := testinfra.NewProxy(t, opts.Addr)
	opts.Addr, opts.MaxRetries, opts.DialerRetries = p.Addr(), -1, 1
	opts.ReadTimeout, opts.WriteTimeout, opts.DialTimeout = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	c := redis.NewClient(opts)
	defer c.Close()
	ping := func() error { return c.Ping(ctx).Err() }

	if err := ping(); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.Down()
	if err := ping(); err == nil {
		t.Fatal("ping succeeded with the proxy down")
	}
	p.Up()
	testinfra.Eventually(t, 5*time.Second, ping)
	p.Blackhole()
	err = ping()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("ping through a blackhole: %v, want a timeout", err)
		}
	}
	p.Up()
	testinfra.Eventually(t, 5*time.Second, ping)
}
