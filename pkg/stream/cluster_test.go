package stream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

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
