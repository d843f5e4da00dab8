package kafkastream_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/stream/streamtest"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// ids collects event IDs in handling order.
type ids struct{ h *handled }

func (s ids) handler(_ context.Context, d stream.Delivery) error { s.h.add(d); return nil }

func (s ids) list() []string {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	var out []string
	for id := range s.h.got {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func (s ids) waitList(t *testing.T, want []string) {
	t.Helper()
	testinfra.Eventually(t, 20*time.Second, func() error {
		if got := s.list(); !slices.Equal(got, want) {
			return fmt.Errorf("handled %v, want %v", got, want)
		}
		return nil
	})
}

// TestReplayWithNewGroup: on one partition, a new group with DeliverAll
// sees everything, DeliverByStartSequence from offset 2 on, DeliverNew
// only what is published after it joined; an existing group keeps its
// committed position whatever its configured start.
func TestReplayWithNewGroup(t *testing.T) {
	t.Parallel()
	k := setup(t, 1)
	k.publish(t, stream.Message{ID: "e0", Key: "k"}, stream.Message{ID: "e1", Key: "k"}, stream.Message{ID: "e2", Key: "k"}, stream.Message{ID: "e3", Key: "k"})

	all := ids{newHandled()}
	r := k.start(t, testGroup(k.topic, "all"), all.handler)
	all.waitList(t, []string{"e0", "e1", "e2", "e3"})
	r.stop()

	fromOffset := ids{newHandled()}
	cfg := testGroup(k.topic, "from-offset")
	cfg.Deliver, cfg.StartOffset = stream.DeliverByStartSequence, 2
	k.start(t, cfg, fromOffset.handler)
	fromOffset.waitList(t, []string{"e2", "e3"})

	again := ids{newHandled()}
	cfg = testGroup(k.topic, "all")
	cfg.Deliver = stream.DeliverNew
	k.start(t, cfg, again.handler)

	newOnly := ids{newHandled()}
	cfg = testGroup(k.topic, "new")
	cfg.Deliver = stream.DeliverNew
	k.start(t, cfg, newOnly.handler)
	// The new group's start (the end of the partition) is taken when it
	// is assigned the partition, which the test cannot see from outside:
	// publish probes until it handles one.
	probes := 0
	testinfra.Eventually(t, 20*time.Second, func() error {
		if len(newOnly.list()) > 0 {
			return nil
		}
		probes++
		k.publish(t, stream.Message{ID: fmt.Sprintf("p%02d", probes), Key: "k"})
		return fmt.Errorf("no probe handled after %d", probes)
	})
	var want []string
	for i := 1; i <= probes; i++ {
		want = append(want, fmt.Sprintf("p%02d", i))
	}
	again.waitList(t, want)
	fromOffset.waitList(t, append([]string{"e2", "e3"}, want...))
	for _, id := range newOnly.list() {
		if !slices.Contains(want, id) {
			t.Errorf("DeliverNew group handled %s, published before it started", id)
		}
	}
}

// TestReplayFromTime: a new group with DeliverByStartTime starts at the
// first record stamped at or after StartTime, in every partition.
func TestReplayFromTime(t *testing.T) {
	t.Parallel()
	k := setup(t, 4)
	keys := streamtest.Keys(8)
	var old []stream.Message
	for _, key := range keys {
		old = append(old, stream.Message{ID: "old-" + key, Key: key})
	}
	k.publish(t, old...)
	// Records carry millisecond timestamps: wait until the clock has
	// moved past the last old one, then take the start time.
	lastOld := time.Now()
	testinfra.Eventually(t, time.Second, func() error {
		if time.Now().UnixMilli() <= lastOld.UnixMilli() {
			return fmt.Errorf("clock still in %v's millisecond", lastOld)
		}
		return nil
	})
	start := time.Now()
	var fresh []string
	var msgs []stream.Message
	for _, key := range keys {
		msgs = append(msgs, stream.Message{ID: "new-" + key, Key: key})
		fresh = append(fresh, "new-"+key)
	}
	k.publish(t, msgs...)
	slices.Sort(fresh)
	got := ids{newHandled()}
	cfg := testGroup(k.topic, "by-time")
	cfg.Deliver, cfg.StartTime = stream.DeliverByStartTime, start
	k.start(t, cfg, got.handler)
	got.waitList(t, fresh)
}

// TestLagMetricReportsBacklogAndZeroOnceDrained: while a partition's
// handler is blocked, stream_kafka_consumer_lag_messages shows the records
// behind it and stream_kafka_consumer_oldest_unacked_age_seconds the age
// of the first; once released, 0 and 0.
func TestLagMetricReportsBacklogAndZeroOnceDrained(t *testing.T) {
	t.Parallel()
	k := setup(t, 1)
	reg := prometheus.NewRegistry()
	cfg := testGroup(k.topic, "g")
	cfg.Registerer = reg
	release := make(chan struct{})
	k.start(t, cfg, func(ctx context.Context, d stream.Delivery) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	k.publish(t, stream.Message{ID: "a", Key: "k"}, stream.Message{ID: "b", Key: "k"}, stream.Message{ID: "c", Key: "k"})
	lagIs := func(want float64) func() error {
		return func() error {
			if v := metric(t, reg, "stream_kafka_consumer_lag_messages", "partition", "0"); v != want {
				return fmt.Errorf("lag %v, want %v", v, want)
			}
			return nil
		}
	}
	testinfra.Eventually(t, 10*time.Second, lagIs(3))
	// The oldest record not committed ages while the handler blocks.
	testinfra.Eventually(t, 10*time.Second, func() error {
		if v := metric(t, reg, "stream_kafka_consumer_oldest_unacked_age_seconds", "partition", "0"); v < 0.2 {
			return fmt.Errorf("oldest unacked age %vs, want it growing past 0.2s", v)
		}
		return nil
	})
	close(release)
	testinfra.Eventually(t, 10*time.Second, lagIs(0))
	if v := metric(t, reg, "stream_kafka_consumer_oldest_unacked_age_seconds", "partition", "0"); v != 0 {
		t.Errorf("oldest unacked age %vs once drained, want 0", v)
	}
}
