//go:build unix

package outbox_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// The child relay's environment: the database URL, the NATS URL and the
// stream (TestRelayChildProcess runs only when the first is set).
const (
	childDBEnv     = "SHOPFLOOR_OUTBOX_CHILD_DATABASE_URL"
	childNATSEnv   = "SHOPFLOOR_OUTBOX_CHILD_NATS_URL"
	childStreamEnv = "SHOPFLOOR_OUTBOX_CHILD_STREAM"
)

// TestRelayChildProcess is not a test of its own: it is the relay that
// TestFrozenLeaderIsReplaced starts in a child process (the test binary
// run again), so that the parent can freeze it with SIGSTOP. It reports on
// stdout, one line each: "leader" and "standby" when its IsLeader changes,
// and "publishing <event id>" for every message it hands the broker. The
// broker is slow for keys that start with "slow" (300ms before sending),
// which gives the parent time to freeze it in the middle of a batch.
func TestRelayChildProcess(t *testing.T) {
	dbURL := os.Getenv(childDBEnv)
	if dbURL == "" {
		t.Skip("the child process of TestFrozenLeaderIsReplaced")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	var mu sync.Mutex
	say := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", a...)
	}
	pool, err := pgdb.Open(ctx, pgdb.Config{URL: dbURL, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	nc, err := nats.Connect(os.Getenv(childNATSEnv))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	name := os.Getenv(childStreamEnv)
	pub, err := stream.NewPublisher(js, name, 4, stream.WithAckTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	sink := sinkFunc(func(ctx context.Context, msgs []outbox.Message) []outbox.Published {
		slow := false
		for _, m := range msgs {
			say("publishing %s", m.ID)
			slow = slow || strings.HasPrefix(m.Key, "slow")
		}
		if slow {
			time.Sleep(300 * time.Millisecond)
			// Frozen here, the relay wakes with the acknowledgement on
			// its way (the kernel kept it) while it learns that its
			// session is gone: take the worst order, the ack first.
			ctx = context.WithoutCancel(ctx)
		}
		return outbox.StreamSink{name: pub}.PublishAll(ctx, msgs)
	})
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := outbox.NewRelay(pool, sink, outbox.RelayConfig{PollInterval: 50 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		leading := false
		for ctx.Err() == nil {
			if now := r.IsLeader(); now != leading {
				leading = now
				say(map[bool]string{true: "leader", false: "standby"}[now])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	_ = r.Run(ctx)
}

type sinkFunc func(ctx context.Context, msgs []outbox.Message) []outbox.Published

func (f sinkFunc) PublishAll(ctx context.Context, msgs []outbox.Message) []outbox.Published {
	return f(ctx, msgs)
}

// child is a relay running in another process.
type child struct {
	cmd    *exec.Cmd
	stderr testinfra.Buffer
	mu     sync.Mutex
	lines  []string
}

func (c *child) said() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lines)
}

func startChild(t *testing.T, b *bundle, natsURL string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^TestRelayChildProcess$", "-test.count=1")}
	c.cmd.Env = append(os.Environ(), childDBEnv+"="+b.db.URL, childNATSEnv+"="+natsURL, childStreamEnv+"="+b.stream)
	c.cmd.Stderr = &c.stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.mu.Lock()
			c.lines = append(c.lines, sc.Text())
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		// SIGKILL ends a stopped process too.
		_ = c.cmd.Process.Kill()
		<-read
		_ = c.cmd.Wait()
		if t.Failed() {
			t.Logf("child relay's log:\n%s", c.stderr.String())
		}
	})
	return c
}

// TestFrozenLeaderIsReplaced: the leader's process is frozen (SIGSTOP)
// while holding the lock; its session stays open (the kernel keeps the
// TCP connection), but the server ends it when the lease
// (idle_session_timeout) runs out, and the standby leads and publishes.
// The leader is frozen in the middle of a batch, between two events of
// one key: when it wakes (SIGCONT) it sends the message it was sending (a
// duplicate, which the broker drops), publishes nothing more (its lease
// ran out) and becomes a standby, finding its session gone. No event is
// lost or published twice or out of order.
func TestFrozenLeaderIsReplaced(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	c := startChild(t, b, nt.URL)

	var sent []events.Envelope
	for i := range 4 {
		sent = append(sent, b.emit(t, fmt.Sprintf("k%d", i%2), nil))
	}
	testinfra.Eventually(t, 30*time.Second, func() error {
		if !slices.Contains(c.said(), "leader") {
			return errors.New("child relay does not lead yet")
		}
		return drained(t, b)()
	})
	standby := newRelay(t, b, b.sink(), outbox.RelayConfig{PollInterval: 50 * time.Millisecond})
	runRelay(t, standby)
	testinfra.Eventually(t, 10*time.Second, func() error {
		// The standby's session: it has asked for the lock (the child's
		// lock session heartbeats instead).
		var n int
		if err := b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE '%pg_try_advisory_lock%'`).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return errors.New("the standby has not tried the lock yet")
		}
		return nil
	})
	if standby.IsLeader() {
		t.Fatal("standby leads while the child holds the lock")
	}

	// Two events of one key: the child's batch has them in two rounds;
	// freeze it while it sends the first.
	var slow []events.Envelope
	for v := range int64(2) {
		ev, err := events.New("test", "widget.changed", "slow", 1, v+1, map[string]any{"v": v + 1}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		slow = append(slow, ev)
	}
	if err := pgdb.InTx(context.Background(), b.db.Pool, func(tx pgx.Tx) error { return b.ob.Publish(context.Background(), tx, slow...) }); err != nil {
		t.Fatal(err)
	}
	sent = append(sent, slow...)
	testinfra.Eventually(t, 10*time.Second, func() error {
		if !slices.Contains(c.said(), "publishing "+slow[0].ID) {
			return errors.New("the child is not sending the slow key's first event yet")
		}
		return nil
	})
	if err := syscall.Kill(c.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	saidBefore := len(c.said())
	for i := range 6 {
		sent = append(sent, b.emit(t, fmt.Sprintf("k%d", i%3), nil))
	}
	var tookOver time.Duration
	testinfra.Eventually(t, 30*time.Second, func() error {
		if !standby.IsLeader() {
			return errors.New("the standby does not lead")
		}
		if tookOver == 0 {
			tookOver = time.Since(frozen)
		}
		return drained(t, b)()
	})
	published := time.Since(frozen)
	t.Logf("leader frozen: the standby led after %s and had published the backlog after %s (lease %s, retry %s)",
		tookOver.Round(10*time.Millisecond), published.Round(10*time.Millisecond), 6*time.Second, time.Second)

	if err := syscall.Kill(c.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if s := c.said(); len(s) == saidBefore || s[len(s)-1] != "standby" {
			return fmt.Errorf("the woken child has not stepped down; it said %q since", s[saidBefore:])
		}
		return nil
	})
	for i := range 3 {
		sent = append(sent, b.emit(t, fmt.Sprintf("k%d", i), nil))
	}
	testinfra.Eventually(t, 10*time.Second, drained(t, b))
	if !standby.IsLeader() {
		t.Error("the standby lost the leadership to the woken child")
	}
	for _, line := range c.said()[saidBefore:] {
		if strings.HasPrefix(line, "publishing") {
			t.Errorf("the woken child published after its lease ran out: %s", line)
		}
	}
	checkExactlyOnceInOrder(t, sent, b.received(t))
}

// TestLeaderWhoseLockSessionEndsStepsDown: the server ends the leader's
// lock session (here pg_terminate_backend; in production the lease, a
// restart): the keeper notices at its next heartbeat at the latest, the
// relay steps down, leads again on a new session and publishes what
// follows.
func TestLeaderWhoseLockSessionEndsStepsDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	cfg := fast
	cfg.LeaderLease = 900 * time.Millisecond
	cfg.Registerer = prometheus.NewRegistry()
	r := newRelay(t, b, b.sink(), cfg)
	runRelay(t, r)
	sent := []events.Envelope{b.emit(t, "k", nil)}
	testinfra.Eventually(t, 10*time.Second, drained(t, b))

	lockHolder := func() (pid int, err error) {
		err = b.db.Pool.QueryRow(ctx, `SELECT coalesce(min(l.pid), 0) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted AND a.datname = current_database()`).Scan(&pid)
		return pid, err
	}
	first, err := lockHolder()
	if err != nil || first == 0 {
		t.Fatalf("lock holder: %d, %v", first, err)
	}
	if _, err := b.db.Pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, first); err != nil {
		t.Fatal(err)
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		pid, err := lockHolder()
		if err != nil {
			return err
		}
		if pid == 0 || pid == first || !r.IsLeader() {
			return fmt.Errorf("lock held by %d (was %d), leader %v", pid, first, r.IsLeader())
		}
		return nil
	})
	sent = append(sent, b.emit(t, "k", nil))
	testinfra.Eventually(t, 10*time.Second, drained(t, b))
	checkExactlyOnceInOrder(t, sent, b.received(t))

	// The new session's idle timeout is the lease (900ms): the heartbeats
	// keep it alive while the relay has nothing to publish.
	second, err := lockHolder()
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	testinfra.Eventually(t, 10*time.Second, func() error {
		if pid, err := lockHolder(); err != nil || pid != second {
			t.Fatalf("idle leader lost its lock session (holder %d, was %d; %v)", pid, second, err)
		}
		if time.Since(since) < 4*cfg.LeaderLease {
			return errors.New("watching the idle leader for four leases")
		}
		return nil
	})
	var timeout string
	if err := b.db.Pool.QueryRow(ctx, `SELECT setting FROM pg_settings WHERE name = 'idle_session_timeout'`).Scan(&timeout); err != nil || timeout != "0" {
		t.Errorf("the pool's own sessions have idle_session_timeout %q, %v; want 0 (only the lock session has a lease)", timeout, err)
	}
}
