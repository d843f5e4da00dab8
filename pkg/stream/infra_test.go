package stream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestIsInfrastructureSeesMarkedAndConnectionErrorsThroughWrapping(t *testing.T) {
	t.Parallel()
	refused := deadDependency(t)(context.Background())
	var opErr *net.OpError
	if !errors.As(refused, &opErr) {
		t.Fatalf("connect to a closed port = %T %v, want a *net.OpError inside", refused, refused)
	}
	pg := func(code string) error { return &pgconn.PgError{Code: code, Message: "x"} }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", errors.New("smtp: 451 try again later"), false},
		{"decode", fmt.Errorf("decode: %w", stream.Permanent(errors.New("bad json"))), false},
		{"marked", fmt.Errorf("call payments: %w", stream.Infrastructure(errors.New("503 Service Unavailable"))), true},
		{"pg connect refused, wrapped", fmt.Errorf("claim inbox: %w", refused), true},
		{"wrapped without %w hides the cause", fmt.Errorf("claim inbox: %v", refused), false}, //nolint:errorlint // the case under test: a cause hidden by %v,
		{"connection refused", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true},
		{"connection reset", syscall.ECONNRESET, true},
		{"unexpected EOF", fmt.Errorf("idempotency: look up key: %w", io.ErrUnexpectedEOF), true},
		{"pgconn closed", pgconn.ErrConnClosed, true},
		{"net timeout", &net.OpError{Op: "read", Err: timeoutErr{}}, true},
		{"dependency deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), true},
		{"canceled", context.Canceled, false},
		{"statement timeout", pg("57014"), true},
		{"lock timeout", pg("55P03"), true},
		{"too many connections", pg("53300"), true},
		{"admin shutdown", pg("57P01"), true},
		{"cannot connect now", pg("57P03"), true},
		{"connection failure", pg("08006"), true},
		{"unique violation", pg("23505"), false},
		{"check violation", pg("23514"), false},
		{"nats closed", fmt.Errorf("publish: %w", nats.ErrConnectionClosed), true},
		{"nats timeout", nats.ErrTimeout, true},
		{"no responders", nats.ErrNoResponders, true},
		{"no stream response", jetstream.ErrNoStreamResponse, true},
		{"jetstream 503", &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "jetstream temporarily unavailable"}, true},
		{"stream not found", jetstream.ErrStreamNotFound, false},
	}
	for _, tt := range tests {
		if got := stream.IsInfrastructure(tt.err); got != tt.want {
			t.Errorf("%s: IsInfrastructure(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
	if stream.Infrastructure(nil) != nil {
		t.Errorf("Infrastructure(nil) != nil")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// deadDependency returns a function that tries to reach a PostgreSQL
// server on a port nothing listens on: the real error a handler gets while
// its database is down (a *pgconn.ConnectError around "connection
// refused").
func deadDependency(t *testing.T) func(ctx context.Context) error {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context) error {
		conn, err := pgconn.Connect(ctx, "postgres://postgres@"+addr+"/shop?sslmode=disable&connect_timeout=2")
		if err == nil {
			_ = conn.Close(ctx)
			return errors.New("something listens on the dead port")
		}
		return fmt.Errorf("claim inbox: %w", err)
	}
}

// outage is a dependency that is down until the test brings it back.
type outage struct {
	down     atomic.Bool
	failures atomic.Int64
	dial     func(context.Context) error
}

func newOutage(t *testing.T) *outage {
	o := &outage{dial: deadDependency(t)}
	o.down.Store(true)
	return o
}

// call fails with a real connection error while the dependency is down.
func (o *outage) call(ctx context.Context) error {
	if !o.down.Load() {
		return nil
	}
	o.failures.Add(1)
	return o.dial(ctx)
}

// last waits until the outage has made the handler fail many times more
// than the delivery budget, for at least atLeast (a few AckWaits, so only
// the progress heartbeats keep the message), with the waiting gauge at 1;
// then the dependency comes back.
func (o *outage) last(t *testing.T, s dlqSetup, group string, budget int, atLeast time.Duration) {
	t.Helper()
	began := time.Now()
	testinfra.Eventually(t, atLeast+30*time.Second, func() error {
		failures := o.failures.Load()
		waiting := counter(t, s.reg, "stream_partitions_waiting", map[string]string{"stream": s.name, "group": group})
		if failures < int64(10*budget) || time.Since(began) < atLeast || waiting != 1 {
			return fmt.Errorf("outage: %d handler failures, %s, %v partitions waiting (want >= %d failures, >= %s, 1 waiting)",
				failures, time.Since(began).Round(time.Millisecond), waiting, 10*budget, atLeast)
		}
		return nil
	})
	o.down.Store(false)
}

// infraGroup is testGroup with a budget of 2, a short AckWait and a short
// infrastructure backoff: a dependency outage of a few seconds is many
// times the budget and the ack deadline.
func infraGroup(s dlqSetup, group string) stream.GroupConfig {
	cfg := testGroup(s.name, group)
	cfg.MaxDeliver = 2
	cfg.AckWait = time.Second
	cfg.InfrastructureBackoff = backoff.Policy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond}
	cfg.Registerer = s.reg
	return cfg
}

// checkWaitedWithoutBudget: no dead letters, the gauge back at 0, one
// infrastructure retry counted per failure, and the broker never
// redelivered anything (the head message kept its first delivery).
func checkWaitedWithoutBudget(t *testing.T, s dlqSetup, group string, o *outage, lastSeq uint64) {
	t.Helper()
	if dls, err := s.dlq.List(context.Background(), "", 0); err != nil || len(dls) != 0 {
		t.Errorf("dead letters after a dependency outage = %+v, %v; want none", dls, err)
	}
	labels := map[string]string{"stream": s.name, "group": group}
	testinfra.Eventually(t, 5*time.Second, func() error {
		if got := counter(t, s.reg, "stream_partitions_waiting", labels); got != 0 {
			return fmt.Errorf("stream_partitions_waiting = %v after the outage, want 0", got)
		}
		return nil
	})
	if got, want := counter(t, s.reg, "stream_infrastructure_retries_total", labels), float64(o.failures.Load()); got != want {
		t.Errorf("stream_infrastructure_retries_total = %v, want %v (one per failed call)", got, want)
	}
	if got := counter(t, s.reg, "stream_dead_lettered_total", labels); got != 0 {
		t.Errorf("stream_dead_lettered_total = %v, want 0", got)
	}
	if got := counter(t, s.reg, "stream_redeliveries_total", labels); got != 0 {
		t.Errorf("stream_redeliveries_total = %v, want 0", got)
	}
	testinfra.Eventually(t, 5*time.Second, func() error {
		info := consumerInfo(t, s.nt.JS, s.name, group, 0)
		if info.NumAckPending != 0 || info.NumRedelivered != 0 || info.AckFloor.Stream != lastSeq {
			return fmt.Errorf("consumer: %d ack pending, %d redelivered, ack floor %d (want 0, 0, %d)",
				info.NumAckPending, info.NumRedelivered, info.AckFloor.Stream, lastSeq)
		}
		return nil
	})
}

// TestInfrastructureErrorWaitsInsteadOfDeadLettering: the database of a
// group's handler (two instances) is down (real "connection refused" errors) for ten times
// the delivery budget and three times AckWait. The partition waits with
// its head message in hand: no dead letter, the head message's
// NumDelivered stays 1, nothing behind it overtakes it, and after the
// outage every message is handled once, in per-key order. The waiting
// gauge shows the wait.
func TestInfrastructureErrorWaitsInsteadOfDeadLettering(t *testing.T) {
	t.Parallel()
	s := newDLQSetup(t, 1)
	o := newOutage(t)
	var (
		mu    sync.Mutex
		calls []string // id#NumDelivered of every call
		done  []string // ids handled, in order
	)
	cfg := infraGroup(s, "payments")
	handler := func(ctx context.Context, d stream.Delivery) error {
		mu.Lock()
		calls = append(calls, fmt.Sprintf("%s#%d", d.ID, d.NumDelivered))
		mu.Unlock()
		if err := o.call(ctx); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		done = append(done, d.ID)
		return nil
	}
	// Two instances: should the waiting one let its ack deadline pass, the
	// broker would hand the head message to the other.
	_, js2 := connect(t, s.nt.URL)
	a, b := newGroup(t, s.nt.JS, cfg, handler), newGroup(t, js2, cfg, handler)
	var ids []string
	var lastSeq uint64
	for v := 1; v <= 3; v++ {
		for _, key := range []string{"order-a", "order-b"} {
			id := fmt.Sprintf("%s-v%d", key, v)
			ids = append(ids, id)
			lastSeq = publishOne(t, s.pub, id, key, nil).Sequence
		}
	}
	start(t, a)
	start(t, b)
	// Longer than the 5s a settle may take, too: the ack after a long wait
	// must still be sent.
	o.last(t, s, "payments", cfg.MaxDeliver, 6*time.Second)

	testinfra.Eventually(t, 15*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(done) < len(ids) {
			return fmt.Errorf("handled %v of %v", done, ids)
		}
		return nil
	})
	mu.Lock()
	if !slices.Equal(done, ids) {
		t.Errorf("handled %v, want each once in stream order %v", done, ids)
	}
	// Every call during the outage was the head message's first delivery.
	for i, c := range calls[:o.failures.Load()] {
		if c != ids[0]+"#1" {
			t.Errorf("call %d during the outage = %s, want %s#1", i, c, ids[0])
			break
		}
	}
	mu.Unlock()
	checkWaitedWithoutBudget(t, s, "payments", o, lastSeq)
}

// TestBatchInfrastructureErrorWaitsInsteadOfDeadLettering: the same
// outage for a batch group. The failing batch is offered again whole (a
// dependency failed, there is no message to single out), attempts stay 1,
// and after the outage every event is applied once, in stream order.
func TestBatchInfrastructureErrorWaitsInsteadOfDeadLettering(t *testing.T) {
	t.Parallel()
	s := newDLQSetup(t, 1)
	db := testinfra.Postgres(t, batchMigrations)
	o := newOutage(t)
	rec := &recorder{}
	var p published
	publishVersions(t, s.pub, &p, 4, 1, 5) // 20 messages, one partition
	cfg := infraGroup(s, "notify")
	cfg.MaxBatch = 8
	start(t, newBatchGroup(t, s.nt.JS, cfg, applier(db.Pool, "notify", "A", rec, func(ds []stream.Delivery) error {
		return o.call(context.Background())
	})))
	o.last(t, s, "notify", cfg.MaxDeliver, 3*cfg.AckWait)

	waitEffects(t, db.Pool, len(p.ids), 30*time.Second)
	es := checkEffects(t, db.Pool, &p)
	for i, e := range es {
		if e.eventID != p.ids[i] {
			t.Fatalf("effect %d is %s, want %s (stream order)", i, e.eventID, p.ids[i])
		}
	}
	for _, c := range rec.snapshot() {
		if slices.ContainsFunc(c.attempts, func(a int) bool { return a != 1 }) {
			t.Errorf("%v: an attempt other than 1 (infrastructure retries must not spend attempts)", c)
		}
		if c.err != nil && len(c.ids) == 1 {
			t.Errorf("%v: a failed batch was split to one message (infrastructure errors are no message's fault)", c)
		}
	}
	checkWaitedWithoutBudget(t, s, "notify", o, p.acks[p.ids[len(p.ids)-1]].Sequence)
}

// TestStopWhileWaitingHandsBack: a group stopping while its partition
// waits on a dependency hands the message back at once (another instance
// gets it without waiting for AckWait) and the gauge returns to 0.
func TestStopWhileWaitingHandsBack(t *testing.T) {
	t.Parallel()
	s := newDLQSetup(t, 1)
	o := newOutage(t)
	cfg := infraGroup(s, "search")
	cfg.AckWait = 30 * time.Second // a hand-back that did not happen would show
	a := start(t, newGroup(t, s.nt.JS, cfg, func(ctx context.Context, _ stream.Delivery) error { return o.call(ctx) }))
	publishOne(t, s.pub, "e1", "order-1", nil)
	labels := map[string]string{"stream": s.name, "group": "search"}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if got := counter(t, s.reg, "stream_partitions_waiting", labels); got != 1 {
			return fmt.Errorf("stream_partitions_waiting = %v, want 1", got)
		}
		return nil
	})
	a.stop()
	if got := counter(t, s.reg, "stream_partitions_waiting", labels); got != 0 {
		t.Errorf("stream_partitions_waiting after stop = %v, want 0", got)
	}
	o.down.Store(false)
	got := make(chan int, 1)
	_, js2 := connect(t, s.nt.URL)
	cfg.Registerer = nil
	start(t, newGroup(t, js2, cfg, func(_ context.Context, d stream.Delivery) error {
		select {
		case got <- d.NumDelivered:
		default:
		}
		return nil
	}))
	select {
	case n := <-got:
		if n != 2 {
			t.Errorf("NumDelivered after the hand-back = %d, want 2", n)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the handed-back message did not reach the other instance within 15s (AckWait is 30s)")
	}
}

// TestHandlerTimeoutSpendsTheBudget: a handler that runs out of
// HandlerTimeout spends the budget although its error is
// context.DeadlineExceeded, so a message that makes the handler hang
// cannot hold its partition forever.
func TestHandlerTimeoutSpendsTheBudget(t *testing.T) {
	t.Parallel()
	s := newDLQSetup(t, 1)
	cfg := infraGroup(s, "orders")
	cfg.HandlerTimeout = 100 * time.Millisecond
	start(t, newGroup(t, s.nt.JS, cfg, func(ctx context.Context, _ stream.Delivery) error {
		<-ctx.Done()
		return fmt.Errorf("query: %w", ctx.Err())
	}))
	publishOne(t, s.pub, "slow", "order-1", nil)
	var dls []stream.DeadLetter
	testinfra.Eventually(t, 15*time.Second, func() error {
		var err error
		dls, err = s.dlq.List(context.Background(), "orders", 10)
		if err == nil && len(dls) != 1 {
			err = fmt.Errorf("%d dead letters", len(dls))
		}
		return err
	})
	if dl := dls[0]; dl.ErrorClass != "exhausted" || dl.Attempts != 2 || dl.Error != "handler timed out (HandlerTimeout 100ms): query: context deadline exceeded" {
		t.Errorf("dead letter = %+v", dl)
	}
	if got := counter(t, s.reg, "stream_infrastructure_retries_total", map[string]string{"group": "orders"}); got != 0 {
		t.Errorf("stream_infrastructure_retries_total = %v, want 0", got)
	}
}
