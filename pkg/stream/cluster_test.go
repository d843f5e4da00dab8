package stream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestReplicatedStreamLosesNothingWhenItsLeaderDies: on a JetStream
// cluster of three, a stream with 3 replicas (ADR 0041) and its DLQ keep a
// copy on every node; a group's consumers inherit the replicas. The
// stream's leader is killed mid-stream: publishing resumes once another
// node leads (the publisher retries, as the outbox relay does), every
// acknowledged message is still there, the group gets every message once
// (by id), and the killed node catches up when it is back.
func TestReplicatedStreamLosesNothingWhenItsLeaderDies(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := testinfra.NewNATSCluster(t, 3)
	_, js := c.Connect()
	const name, partitions, total = "R3", 2, 60
	if err := stream.EnsureStream(ctx, js, stream.StreamConfig{Name: name, Partitions: partitions, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	leader := func(s string) (string, int) {
		t.Helper()
		st, err := js.Stream(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		info := st.CachedInfo()
		if info.Cluster == nil {
			t.Fatalf("%s: no cluster information", s)
		}
		return info.Cluster.Leader, info.Config.Replicas
	}
	for _, s := range []string{name, stream.DLQStream(name)} {
		if _, r := leader(s); r != 3 {
			t.Fatalf("%s: %d replicas, want 3", s, r)
		}
	}

	var mu sync.Mutex
	got := map[string]int{}
	g := newGroup(t, js, testGroup(name, "r3"), func(_ context.Context, d stream.Delivery) error {
		mu.Lock()
		got[d.ID]++
		mu.Unlock()
		return nil
	})
	gctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("group: %v", err)
		}
	}()

	pub, err := stream.NewPublisher(js, name, partitions)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(i int) {
		t.Helper()
		id := fmt.Sprintf("m%03d", i)
		// While a new leader is elected the publish fails; the relay
		// retries with the same id, which the broker de-duplicates.
		testinfra.Eventually(t, 30*time.Second, func() error {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := pub.Publish(pctx, stream.Message{ID: id, Key: fmt.Sprintf("k%d", i%7), Payload: []byte(id)})
			return err
		})
	}
	for i := range total / 2 {
		publish(i)
	}
	handled := func(n int) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(got) < n {
				return fmt.Errorf("the group handled %d of %d messages", len(got), n)
			}
			return nil
		}
	}
	// The group is running (its consumers made, their leaders elected)
	// before the leader dies.
	testinfra.Eventually(t, 30*time.Second, handled(total/2))
	old, _ := leader(name)
	dead := c.Index(old)
	if dead < 0 {
		t.Fatalf("leader %q is not a node of the cluster", old)
	}
	c.Stop(dead)
	for i := total / 2; i < total; i++ {
		publish(i)
	}
	testinfra.Eventually(t, 30*time.Second, func() error {
		st, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		if n := st.CachedInfo().State.Msgs; n != total {
			return fmt.Errorf("stream holds %d messages, want %d", n, total)
		}
		if l := st.CachedInfo().Cluster.Leader; l == old || l == "" {
			return fmt.Errorf("leader %q (the dead node was %q)", l, old)
		}
		return nil
	})
	testinfra.Eventually(t, 60*time.Second, handled(total))

	// Every consumer of the group has the stream's replicas.
	for p := range partitions {
		cons, err := js.Consumer(ctx, name, fmt.Sprintf("r3-p%d", p))
		if err != nil {
			t.Fatal(err)
		}
		if ci := cons.CachedInfo(); ci.Cluster == nil || len(ci.Cluster.Replicas)+1 != 3 {
			t.Errorf("consumer r3-p%d: cluster %+v, want a leader and 2 replicas", p, ci.Cluster)
		}
	}

	// The killed node comes back and catches up.
	c.Start(dead)
	testinfra.Eventually(t, 30*time.Second, func() error {
		st, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		for _, r := range st.CachedInfo().Cluster.Replicas {
			if r.Name == old && (!r.Current || r.Offline) {
				return fmt.Errorf("node %s: current %v, offline %v, lag %d", r.Name, r.Current, r.Offline, r.Lag)
			}
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for id, n := range got {
		if n > 1 {
			// At-least-once: a redelivery is allowed, the inbox makes it
			// harmless; count them to see how often a failover causes one.
			t.Logf("%s handled %d times", id, n)
		}
	}
}

// TestAckLostWithTheConsumerLeaderIsSentAgain: the consumer's leader and
// another node die while the handler holds a message, so the cluster has
// no quorum and the handler's ack meets no leader. The group sends the ack
// again once a node is back and another leader is elected (reconfirm), and
// the partition moves on. AckWait is ten minutes here, so the test cannot
// pass through a redelivery: without the resend the partition waits for
// one (its single in-flight slot taken, or the batch gate counting the
// unconfirmed messages as held elsewhere).
func TestAckLostWithTheConsumerLeaderIsSentAgain(t *testing.T) {
	t.Parallel()
	for _, maxBatch := range []int{1, 8} {
		t.Run(fmt.Sprintf("max-batch-%d", maxBatch), func(t *testing.T) {
			t.Parallel()
			ackLostWithTheConsumerLeader(t, maxBatch)
		})
	}
}

func ackLostWithTheConsumerLeader(t *testing.T, maxBatch int) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := testinfra.NewNATSCluster(t, 3)
	_, js := c.Connect()
	const name, group = "ACKS", "acks"
	if err := stream.EnsureStream(ctx, js, stream.StreamConfig{Name: name, Partitions: 1, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	cfg := testGroup(name, group)
	cfg.AckWait = 10 * time.Minute
	cfg.MaxBatch = maxBatch
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg

	var (
		mu      sync.Mutex
		got     = map[string]int{}
		blocked = make(chan struct{})
		release = make(chan struct{})
		once    sync.Once
	)
	handle := func(ds []stream.Delivery) {
		for _, d := range ds {
			if d.ID == "m1" {
				// The first time m1 comes: hold it until the leader is gone.
				once.Do(func() {
					close(blocked)
					<-release
				})
			}
		}
		mu.Lock()
		for _, d := range ds {
			got[d.ID]++
		}
		mu.Unlock()
	}
	var g *stream.Group
	if maxBatch > 1 {
		g = newBatchGroup(t, js, cfg, func(_ context.Context, ds []stream.Delivery) error { handle(ds); return nil })
	} else {
		g = newGroup(t, js, cfg, func(_ context.Context, d stream.Delivery) error { handle([]stream.Delivery{d}); return nil })
	}
	start(t, g)

	pub, err := stream.NewPublisher(js, name, 1)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			id := fmt.Sprintf("m%d", i)
			testinfra.Eventually(t, 30*time.Second, func() error {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				_, err := pub.Publish(pctx, stream.Message{ID: id, Key: "k", Payload: []byte(id)})
				return err
			})
		}
	}
	publish(0, 4)
	select {
	case <-blocked:
	case <-ctx.Done():
		t.Fatal("the handler never got m1")
	}
	cons, err := js.Consumer(ctx, name, stream.ConsumerName(group, 0))
	if err != nil {
		t.Fatal(err)
	}
	ci := cons.CachedInfo()
	if ci.Cluster == nil || c.Index(ci.Cluster.Leader) < 0 {
		t.Fatalf("consumer %s: cluster %+v", ci.Name, ci.Cluster)
	}
	old := ci.Cluster.Leader
	other := (c.Index(old) + 1) % 3
	c.Stop(c.Index(old))
	c.Stop(other)
	close(release)
	// Longer than the first, confirmed ack waits (settleTimeout, 5 s):
	// without a quorum no node can take it.
	time.Sleep(7 * time.Second)
	c.Start(other)

	publish(4, 8)
	testinfra.Eventually(t, 90*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) < 8 {
			return fmt.Errorf("handled %d of 8 messages (consumer leader %s killed)", len(got), old)
		}
		return nil
	})
	if n := counter(t, reg, "stream_ack_reconfirms_total", map[string]string{"group": group, "outcome": "confirmed"}); n < 1 {
		t.Errorf("stream_ack_reconfirms_total{outcome=confirmed} = %v: the ack was never sent again, so the leader's death did not meet an ack", n)
	}
}
