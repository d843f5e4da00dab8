package jobqueue_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
