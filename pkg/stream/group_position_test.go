package stream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestReplayWithNewGroup: a new group reads from the start (or from where it
// is told) while an existing one keeps its position.
func TestReplayWithNewGroup(t *testing.T) {
	t.Parallel()
	nt, name, pub := setupStream(t, 4)
	for i := 1; i <= 10; i++ {
		publishOne(t, pub, fmt.Sprintf("e%d", i), fmt.Sprintf("order-%d", i%4), nil)
	}
	type seenSet struct {
		mu  sync.Mutex
		ids map[string]int
	}
	consume := func(cfg stream.GroupConfig) (*seenSet, *running) {
		s := &seenSet{ids: map[string]int{}}
		g := newGroup(t, nt.JS, cfg, func(_ context.Context, d stream.Delivery) error {
			s.mu.Lock()
			s.ids[d.ID]++
			s.mu.Unlock()
			return nil
		})
		return s, start(t, g)
	}
	count := func(s *seenSet) int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.ids)
	}
	waitFor := func(s *seenSet, n int) {
		t.Helper()
		testinfra.Eventually(t, 15*time.Second, func() error {
			if c := count(s); c != n {
				return fmt.Errorf("seen %d, want %d", c, n)
			}
			return nil
		})
	}

	first, r := consume(testGroup(name, "search"))
	waitFor(first, 10)
	r.stop()

	replay, _ := consume(testGroup(name, "search_rebuild"))
	waitFor(replay, 10)

	fromSeq := testGroup(name, "from_six")
	fromSeq.Deliver, fromSeq.StartSequence = stream.DeliverByStartSequence, 6
	six, _ := consume(fromSeq)
	waitFor(six, 5)

	newOnly := testGroup(name, "new_only")
	newOnly.Deliver = stream.DeliverNew
	fresh, _ := consume(newOnly)
	// The group's consumers exist once Run has created them; publish until
	// one message arrives (messages before their creation are never
	// delivered to it).
	late := 0
	testinfra.Eventually(t, 15*time.Second, func() error {
		late++
		publishOne(t, pub, fmt.Sprintf("late-%d", late), "order-1", nil)
		if count(fresh) == 0 {
			return errors.New("new-only group saw nothing yet")
		}
		return nil
	})
	fresh.mu.Lock()
	for id := range fresh.ids {
		if !strings.HasPrefix(id, "late-") {
			t.Errorf("new-only group saw %s, published before it existed", id)
		}
	}
	fresh.mu.Unlock()

	// The first group, restarted, keeps its position: it sees only the
	// messages published after it stopped.
	again, _ := consume(testGroup(name, "search"))
	waitFor(again, late)
	again.mu.Lock()
	for id, n := range again.ids {
		if !strings.HasPrefix(id, "late-") || n != 1 {
			t.Errorf("restarted group saw %s %d times, want only late-* once", id, n)
		}
	}
	again.mu.Unlock()
}

// TestLagReportsTheBacklogWhileBlockedAndZeroOnceDrained: Lag and the lag gauges report a backlog while the handler is
// blocked, and zero once it drains.
func TestLagReportsTheBacklogWhileBlockedAndZeroOnceDrained(t *testing.T) {
	t.Parallel()
	nt, name, pub := setupStream(t, 1)
	reg := prometheus.NewRegistry()
	release := make(chan struct{})
	cfg := testGroup(name, "lagging")
	cfg.Registerer = reg
	cfg.LagInterval = 100 * time.Millisecond
	g := newGroup(t, nt.JS, cfg, func(ctx context.Context, _ stream.Delivery) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	for i := range 5 {
		publishOne(t, pub, fmt.Sprintf("e%d", i), "k", nil)
	}
	start(t, g)
	labels := map[string]string{"group": "lagging", "partition": "0"}
	testinfra.Eventually(t, 10*time.Second, func() error {
		lags, err := g.Lag(context.Background())
		if err != nil {
			return err
		}
		if len(lags) != 1 || lags[0].Messages != 5 || lags[0].OldestUnacked <= 0 {
			return fmt.Errorf("lag = %+v, want 5 messages and an age", lags)
		}
		if got := counter(t, reg, "stream_consumer_lag_messages", labels); got != 5 {
			return fmt.Errorf("lag gauge = %v, want 5", got)
		}
		if got := counter(t, reg, "stream_consumer_oldest_unacked_age_seconds", labels); got <= 0 {
			return fmt.Errorf("oldest age gauge = %v, want > 0", got)
		}
		return nil
	})
	close(release)
	testinfra.Eventually(t, 10*time.Second, func() error {
		if got := counter(t, reg, "stream_consumer_lag_messages", labels); got != 0 {
			return fmt.Errorf("lag gauge = %v, want 0", got)
		}
		if got := counter(t, reg, "stream_handler_duration_seconds", map[string]string{"outcome": "ack"}); got != 5 {
			return fmt.Errorf("handled %v, want 5", got)
		}
		return nil
	})
}
