package jobqueue_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

var fastRetry = backoff.Policy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}

func runWorker(t *testing.T, w *jobqueue.Worker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func count(t *testing.T, b *bundle, sql string) int {
	t.Helper()
	var n int
	if err := b.db.Pool.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWorkerRetriesThenSucceeds: transient failures are retried with
// backoff; success records the result and deletes the job in one
// transaction; a permanent failure goes to the DLQ at once.
func TestWorkerRetriesThenSucceeds(t *testing.T) { bothAckModes(t, testWorkerRetriesThenSucceeds) }

func testWorkerRetriesThenSucceeds(t *testing.T, opts jobqueue.Options) {
	b := setup(t, opts,
		jobqueue.Queue{Name: "dlq"},
		jobqueue.Queue{Name: "q", DeadLetterQueue: "dlq", MaxReceiveCount: 10})
	for _, body := range []string{"flaky", "retry-after", "poison", "ok"} {
		b.send(t, "q", jobqueue.SendInput{Body: []byte(body)})
	}
	var attempts sync.Map
	w := b.c.NewWorker(jobqueue.WorkerConfig{Queue: "q", Concurrency: 2, Backoff: fastRetry}, func(ctx context.Context, m jobqueue.Message) error {
		n, _ := attempts.LoadOrStore(string(m.Body), new(atomic.Int32))
		k := n.(*atomic.Int32).Add(1)
		switch string(m.Body) {
		case "flaky":
			if k < 3 {
				return errors.New("provider 503")
			}
		case "retry-after":
			if k < 2 {
				return &jobqueue.RetryError{After: 20 * time.Millisecond, Err: errors.New("429")}
			}
		case "poison":
			return &jobqueue.PermanentError{Err: errors.New("card declined")}
		}
		err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO results VALUES ($1)`, string(m.Body)); err != nil {
				return err
			}
			return b.c.DeleteMessage(ctx, tx, m.ReceiptHandle)
		})
		if err != nil {
			return err
		}
		return jobqueue.ErrHandled
	})
	runWorker(t, w)
	testinfra.Eventually(t, 20*time.Second, func() error {
		if n := count(t, b, `SELECT count(*) FROM results`); n != 3 {
			return fmt.Errorf("%d results", n)
		}
		if n := count(t, b, `SELECT count(*) FROM jobqueue_messages WHERE queue = 'q'`); n != 0 {
			return fmt.Errorf("%d jobs left", n)
		}
		return nil
	})
	dl, err := b.c.ListDeadLetters(context.Background(), "dlq", 10)
	if err != nil || len(dl) != 1 || string(dl[0].Body) != "poison" || dl[0].DeadLetterReason != "permanent: card declined" {
		t.Fatalf("DLQ = %+v, %v", dl, err)
	}
	for body, want := range map[string]int32{"flaky": 3, "retry-after": 2, "poison": 1, "ok": 1} {
		n, _ := attempts.Load(body)
		if got := n.(*atomic.Int32).Load(); got != want {
			t.Errorf("%s ran %d times, want %d", body, got, want)
		}
	}
}

// TestWorkerHeartbeatKeepsLongJobsInvisible: a job running longer than the
// visibility timeout is not delivered to anyone else.
func TestWorkerHeartbeatKeepsLongJobsInvisible(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobqueue.Options{}, jobqueue.Queue{Name: "q"})
	b.send(t, "q", jobqueue.SendInput{Body: []byte("long")})
	started, release := make(chan struct{}), make(chan struct{})
	w := b.c.NewWorker(jobqueue.WorkerConfig{Queue: "q", Concurrency: 1, VisibilityTimeout: 300 * time.Millisecond, Backoff: fastRetry},
		func(ctx context.Context, m jobqueue.Message) error {
			close(started)
			<-release
			return nil
		})
	runWorker(t, w)
	<-started
	// Wait three visibility timeouts for a redelivery that must not come.
	msgs, err := b.c.Receive(ctx, "q", jobqueue.ReceiveInput{WaitTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 0 {
		t.Fatalf("a running job was delivered again: %+v", msgs)
	}
	close(release)
	testinfra.Eventually(t, 10*time.Second, func() error {
		if n := count(t, b, `SELECT count(*) FROM jobqueue_messages`); n != 0 {
			return fmt.Errorf("%d jobs left", n)
		}
		return nil
	})
}

// TestWorkerShutdownReleasesJobs: on shutdown in-flight jobs finish within
// the grace period, or are released for another worker at once.
func TestWorkerShutdownReleasesJobs(t *testing.T) { bothAckModes(t, testWorkerShutdownReleasesJobs) }

func testWorkerShutdownReleasesJobs(t *testing.T, opts jobqueue.Options) {
	ctx := context.Background()
	b := setup(t, opts, jobqueue.Queue{Name: "q", VisibilityTimeout: time.Hour})
	b.send(t, "q", jobqueue.SendInput{Body: []byte("stuck")})
	started := make(chan struct{})
	w := b.c.NewWorker(jobqueue.WorkerConfig{Queue: "q", Concurrency: 1, ShutdownGrace: 100 * time.Millisecond, Backoff: fastRetry},
		func(ctx context.Context, m jobqueue.Message) error {
			close(started)
			<-ctx.Done() // ignores everything but cancellation
			return ctx.Err()
		})
	stop := runWorker(t, w)
	<-started
	stop()
	msgs, err := b.c.Receive(ctx, "q", jobqueue.ReceiveInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].ReceiveCount != 2 {
		t.Fatalf("after shutdown: %+v, want the job released at once (not after its 1h visibility)", msgs)
	}
}

// TestWorkerBacksOffWhileTheDatabaseIsDown cuts the link between a worker
// and PostgreSQL: its receives fail, and it retries them with capped
// exponential backoff, so the failures in a window are a handful, not the
// thousands of a busy loop; it warns once when the outage starts, and says
// when it is over. Once the link is back it takes the job sent meanwhile.
func TestWorkerBacksOffWhileTheDatabaseIsDown(t *testing.T) {
	t.Parallel()
	b := setup(t, jobqueue.Options{}, jobqueue.Queue{Name: "q"})
	pool, proxy := poolThroughProxy(t, b.db)
	reg := prometheus.NewRegistry()
	var logs testinfra.Buffer
	c, err := jobqueue.New(pool, jobqueue.Options{Registerer: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	done := make(chan string, 10)
	w := c.NewWorker(jobqueue.WorkerConfig{Queue: "q", Concurrency: 1, Backoff: fastRetry,
		ReceiveBackoff: backoff.Policy{Initial: 50 * time.Millisecond, Max: time.Second}},
		func(_ context.Context, m jobqueue.Message) error {
			done <- string(m.Body)
			return nil
		})
	runWorker(t, w)
	waitJob := func(want string) {
		t.Helper()
		select {
		case got := <-done:
			if got != want {
				t.Fatalf("worker took %q, want %q", got, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("worker did not take %q", want)
		}
	}
	b.send(t, "q", jobqueue.SendInput{Body: []byte("before")})
	waitJob("before")

	proxy.Down()
	testinfra.Eventually(t, 10*time.Second, func() error {
		if n := receiveErrors(t, reg); n == 0 {
			return errors.New("no failed receive yet")
		}
		return nil
	})
	// Watch a window of the outage. With the backoff (50ms doubling to
	// 1s, full jitter) about ten receives fail in it; without, a worker
	// retries as fast as connections are refused, thousands of times.
	const window, bound = 3 * time.Second, 40
	start := receiveErrors(t, reg)
	<-time.After(window)
	if n := receiveErrors(t, reg) - start; n > bound {
		t.Fatalf("%v receives failed in %s of outage, want at most %d: the worker does not back off", n, window, bound)
	}
	b.send(t, "q", jobqueue.SendInput{Body: []byte("during")}) // another instance's send, on its own link

	proxy.Up()
	waitJob("during")
	out := logs.String()
	if n := strings.Count(out, "receive failed"); n != 1 {
		t.Errorf("%d warnings of failed receives, want one for the outage:\n%s", n, out)
	}
	if !strings.Contains(out, "receives resumed") {
		t.Errorf("no line saying the receives resumed:\n%s", out)
	}
}

// poolThroughProxy returns a pool on db whose connections pass a
// testinfra.Proxy, to cut the link.
func poolThroughProxy(t *testing.T, db *testinfra.Database) (*pgxpool.Pool, *testinfra.Proxy) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testinfra.NewProxy(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	host, port, _ := net.SplitHostPort(proxy.Addr())
	p, _ := strconv.Atoi(port)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = host, uint16(p)
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, proxy
}

// receiveErrors returns jobqueue_receive_errors_total of queue q in reg.
func receiveErrors(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "jobqueue_receive_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == "q" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
