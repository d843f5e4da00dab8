package lifecycle_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/lifecycle"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestConnectRetriesAndReportsReadiness(t *testing.T) {
	t.Parallel()
	dep := lifecycle.NewDependency("postgres")
	if err := dep.Check(context.Background()); err == nil {
		t.Fatal("dependency ready before connecting")
	}
	fast := backoff.Policy{Initial: time.Millisecond, Max: time.Millisecond}
	attempts := 0
	var seenWhileDown []string
	got, err := lifecycle.Connect(context.Background(), quiet, dep, fast, func(ctx context.Context) (string, error) {
		attempts++
		if attempts > 1 {
			// The readiness check sees the previous attempt's error.
			if err := dep.Check(ctx); err != nil {
				seenWhileDown = append(seenWhileDown, err.Error())
			}
		}
		if attempts < 3 {
			return "", errors.New("connection refused")
		}
		return "pool", nil
	})
	if err != nil || got != "pool" || attempts != 3 {
		t.Fatalf("Connect = %q, %v after %d attempts; want pool, nil, 3", got, err, attempts)
	}
	if len(seenWhileDown) != 2 || seenWhileDown[0] != "connection refused" {
		t.Fatalf("readiness while down = %q, want the last error twice", seenWhileDown)
	}
	if err := dep.Check(context.Background()); err != nil {
		t.Fatalf("after connecting Check = %v, want nil", err)
	}
}

func TestConnectGivesUpWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	dep := lifecycle.NewDependency("nats")
	_, err := lifecycle.Connect(ctx, quiet, dep, backoff.Policy{Initial: time.Hour, Max: time.Hour}, func(context.Context) (int, error) {
		cancel()
		return 0, errors.New("no route to host")
	})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "no route to host") {
		t.Fatalf("err = %v, want context.Canceled naming the last error", err)
	}
}

// recorder records the order in which roles stop.
type recorder struct {
	mu      sync.Mutex
	stopped []string
}

func (r *recorder) role(name string, started *sync.WaitGroup) func(context.Context) error {
	return func(ctx context.Context) error {
		started.Done()
		<-ctx.Done()
		r.mu.Lock()
		r.stopped = append(r.stopped, name)
		r.mu.Unlock()
		return nil
	}
}

func TestGroupStopsRolesInReverseOrder(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var rec recorder
	var started sync.WaitGroup
	started.Add(3)
	g := lifecycle.NewGroup(quiet)
	g.Add("relay", rec.role("relay", &started))
	g.Add("consumer", rec.role("consumer", &started))
	g.Add("http", rec.role("http", &started))
	errc := make(chan error, 1)
	go func() { errc <- g.Run(ctx) }()
	started.Wait()
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v, want nil after a clean stop", err)
	}
	if want := []string{"http", "consumer", "relay"}; !slices.Equal(rec.stopped, want) {
		t.Fatalf("stop order = %v, want %v", rec.stopped, want)
	}
}

func TestGroupStopsAllWhenOneFails(t *testing.T) {
	t.Parallel()
	var rec recorder
	var started sync.WaitGroup
	started.Add(2)
	boom := errors.New("lost the database")
	g := lifecycle.NewGroup(quiet)
	g.Add("relay", rec.role("relay", &started))
	g.Add("http", rec.role("http", &started))
	g.Add("worker", func(context.Context) error { started.Wait(); return boom })
	err := g.Run(context.Background())
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "role worker") {
		t.Fatalf("Run = %v, want the worker's error named", err)
	}
	if want := []string{"http", "relay"}; !slices.Equal(rec.stopped, want) {
		t.Fatalf("stop order = %v, want %v", rec.stopped, want)
	}
}
