package jobqueue_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// Throughput benchmarks, compared in docs/benchmarks.md with River's
// `river bench` on the same PostgreSQL (loadtests/river/bench.sh). They
// report jobs/s with b.ReportMetric; ns/op means nothing here.
//
//	go test -run '^$' -bench . -benchtime 20000x ./pkg/jobqueue
//	SHOPFLOOR_BENCH_ASYNC_ACKS=true go test ...     # with Options.AsyncAcks
//	SHOPFLOOR_BENCH_NO_COALESCING=true go test ...  # with Options.NoCoalescing

// benchBody is every benchmark job's payload: a no-op.
var benchBody = []byte(`{"job":"noop"}`)

// benchQueue is a fresh database holding the queue "bench", with a client
// on a pool of its own (the harness's pool has 4 connections, too few for
// 16 receivers) that counts the statements it sends.
type benchQueue struct {
	db    *testinfra.Database
	pool  *pgxpool.Pool
	c     *jobqueue.Client
	stmts *stmtCounter
}

// stmtCounter is a pgx tracer counting statements (round trips; outside
// an explicit transaction each is also a commit).
type stmtCounter struct{ n atomic.Int64 }

func (s *stmtCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	s.n.Add(1)
	return ctx
}

func (*stmtCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceBatchStart counts a batch (Options.AsyncAcks sends each
// acknowledgement as one) as one statement: one round trip, one commit.
func (s *stmtCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	s.n.Add(1)
	return ctx
}

func (*stmtCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (*stmtCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// perJob reports the statements sent since the last reset per job.
func (s *stmtCounter) perJob(b *testing.B, jobs int) {
	b.ReportMetric(float64(s.n.Load())/float64(jobs), "stmts/job")
}

func newBenchQueue(b *testing.B, conns int) *benchQueue {
	b.Helper()
	ctx := context.Background()
	db := testinfra.Postgres(b, migrations)
	pc, err := pgdb.Config{URL: db.URL, MaxConns: int32(conns)}.PoolConfig()
	if err != nil {
		b.Fatal(err)
	}
	stmts := &stmtCounter{}
	pc.ConnConfig.Tracer = stmts
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	// SHOPFLOOR_BENCH_ASYNC_ACKS=true measures Options.AsyncAcks.
	// SHOPFLOOR_BENCH_NO_COALESCING=true sends every receive and delete
	// as its own statement.
	c, err := jobqueue.New(pool, jobqueue.Options{
		AsyncAcks:    os.Getenv("SHOPFLOOR_BENCH_ASYNC_ACKS") == "true",
		NoCoalescing: os.Getenv("SHOPFLOOR_BENCH_NO_COALESCING") == "true",
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	if err := c.CreateQueue(ctx, jobqueue.Queue{Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	return &benchQueue{db: db, pool: pool, c: c, stmts: stmts}
}

// send enqueues n no-op jobs: SendBatch of 10, perTx messages per
// transaction.
func (q *benchQueue) send(ctx context.Context, n, perTx int) error {
	ins := make([]jobqueue.SendInput, jobqueue.MaxReceiveBatch)
	for i := range ins {
		ins[i] = jobqueue.SendInput{Body: benchBody}
	}
	for sent := 0; sent < n; sent += perTx {
		err := pgdb.InTx(ctx, q.pool, func(tx pgx.Tx) error {
			for i := 0; i < perTx && sent+i < n; i += len(ins) {
				if _, err := q.c.SendBatch(ctx, tx, "bench", ins[:min(len(ins), n-sent-i, perTx-i)]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// work receives up to batch messages and deletes them: DeleteMessage for
// batch 1, DeleteMessageBatch otherwise. It returns how many it deleted.
func (q *benchQueue) work(ctx context.Context, batch int, wait time.Duration) (int, error) {
	msgs, err := q.c.Receive(ctx, "bench", jobqueue.ReceiveInput{MaxMessages: batch, WaitTime: wait})
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	if batch == 1 {
		return 1, q.c.DeleteMessage(ctx, q.pool, msgs[0].ReceiptHandle)
	}
	handles := make([]string, len(msgs))
	for i, m := range msgs {
		handles[i] = m.ReceiptHandle
	}
	errs, err := q.c.DeleteMessageBatch(ctx, q.pool, handles)
	if err != nil {
		return 0, err
	}
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return len(msgs), nil
}

// burnDown runs receivers that work the queue until it is empty and
// returns how long they took.
func (q *benchQueue) burnDown(b *testing.B, batch, receivers int) time.Duration {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	for range receivers {
		wg.Go(func() {
			for {
				n, err := q.work(ctx, batch, 0)
				if err != nil {
					b.Error(err)
					return
				}
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

func (q *benchQueue) count(b *testing.B) int {
	b.Helper()
	var n int
	if err := q.pool.QueryRow(context.Background(), `SELECT count(*) FROM jobqueue_messages`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// Burn-down throughput, as `river bench --num-total-jobs`: b.N no-op jobs
// are sent first, then the receivers take and delete them until the queue
// is empty, batch 1 (Receive of 1 + DeleteMessage) or 10 (Receive of 10 +
// DeleteMessageBatch). Batch 1 runs with 4, 8, 16 and 64 receivers: the
// client coalesces concurrent calls (Options.NoCoalescing turns it off),
// so more receivers mean fuller statements.
func BenchmarkBurnDown(b *testing.B) {
	for _, tc := range []struct {
		batch     int
		receivers []int
	}{{1, []int{4, 8, 16, 64}}, {10, []int{4}}} {
		b.Run(fmt.Sprintf("batch=%d", tc.batch), func(b *testing.B) {
			for _, receivers := range tc.receivers {
				b.Run(fmt.Sprintf("receivers=%d", receivers), func(b *testing.B) {
					q := newBenchQueue(b, min(receivers+1, 40))
					if err := q.send(context.Background(), b.N, 500); err != nil {
						b.Fatal(err)
					}
					q.stmts.n.Store(0)
					b.ResetTimer()
					elapsed := q.burnDown(b, tc.batch, receivers)
					b.StopTimer()
					b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
					q.stmts.perJob(b, b.N)
					if left := q.count(b); left != 0 {
						b.Errorf("%d jobs left after the burn-down", left)
					}
				})
			}
		})
	}
}

// Burn-down through a Worker (what services run): b.N no-op jobs are sent
// first, then one Worker with a no-op handler works them until the queue is
// empty. The Worker receives up to min(free slots, 10) messages at a time
// and deletes each message after its handler returns.
func BenchmarkWorkerBurnDown(b *testing.B) {
	for _, concurrency := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("concurrency=%d", concurrency), func(b *testing.B) {
			q := newBenchQueue(b, concurrency+2)
			if err := q.send(context.Background(), b.N, 500); err != nil {
				b.Fatal(err)
			}
			var handled atomic.Int64
			all := make(chan struct{})
			w := q.c.NewWorker(jobqueue.WorkerConfig{Queue: "bench", Concurrency: concurrency},
				func(context.Context, jobqueue.Message) error {
					if handled.Add(1) == int64(b.N) {
						close(all)
					}
					return nil
				})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			q.stmts.n.Store(0)
			b.ResetTimer()
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			<-all
			// Run returns once the in-flight handlers and their deletes are
			// done.
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
			q.stmts.perJob(b, b.N)
			if left := q.count(b); left != 0 {
				b.Errorf("%d jobs left after the burn-down", left)
			}
		})
	}
}

// Burn-down while another connection to the same database holds a
// REPEATABLE READ transaction open (after a SELECT, so it holds a snapshot
// and pins the xmin horizon) for the whole run: no row version deleted or
// updated during the run can be removed, so index scans for the oldest
// visible message walk over every job already done. The same burn-down
// without the pin runs first on a fresh database (not timed); both rates,
// their ratio and the dead tuples left in jobqueue_messages are reported.
func BenchmarkBurnDownXminPinned(b *testing.B) {
	const receivers = 4
	for _, batch := range []int{1, 10} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			ctx := context.Background()
			b.StopTimer()
			free := newBenchQueue(b, receivers+1)
			if err := free.send(ctx, b.N, 500); err != nil {
				b.Fatal(err)
			}
			freeElapsed := free.burnDown(b, batch, receivers)
			freeDead := deadTuples(b, free.pool)

			q := newBenchQueue(b, receivers+1)
			if err := q.send(ctx, b.N, 500); err != nil {
				b.Fatal(err)
			}
			pin := pinXmin(b, q.db.URL)
			b.StartTimer()
			elapsed := q.burnDown(b, batch, receivers)
			b.StopTimer()
			dead := deadTuples(b, q.pool)
			pin()

			unpinned := float64(b.N) / freeElapsed.Seconds()
			pinned := float64(b.N) / elapsed.Seconds()
			b.ReportMetric(pinned, "jobs/s")
			b.ReportMetric(unpinned, "unpinned_jobs/s")
			b.ReportMetric(pinned/unpinned, "pinned/unpinned")
			b.ReportMetric(float64(dead), "dead_tuples")
			b.ReportMetric(float64(freeDead), "unpinned_dead_tuples")
		})
	}
}

// pinXmin opens a connection to url, begins a REPEATABLE READ transaction
// and takes its snapshot with a SELECT. It returns the function that ends
// it.
func pinXmin(b *testing.B, url string) (release func()) {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		_ = conn.Close(ctx)
		b.Fatal(err)
	}
	var xmin *string
	err = tx.QueryRow(ctx, `SELECT count(*) FROM jobqueue_messages`).Scan(new(int))
	if err == nil {
		err = tx.QueryRow(ctx, `SELECT backend_xmin::text FROM pg_stat_activity WHERE pid = pg_backend_pid()`).Scan(&xmin)
	}
	if err != nil || xmin == nil {
		_ = conn.Close(ctx)
		b.Fatalf("pin the xmin horizon: %v (backend_xmin %v)", err, xmin)
	}
	return func() {
		_ = tx.Rollback(ctx)
		_ = conn.Close(ctx)
	}
}

// deadTuples counts the dead row versions in jobqueue_messages with
// pgstattuple (exact, a full scan), or from the statistics collector when
// the extension is not installed (approximate; -1: unknown).
func deadTuples(b *testing.B, pool *pgxpool.Pool) int64 {
	b.Helper()
	ctx := context.Background()
	var n int64
	if _, err := pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pgstattuple`); err == nil {
		if err := pool.QueryRow(ctx, `SELECT dead_tuple_count FROM pgstattuple('jobqueue_messages')`).Scan(&n); err == nil {
			return n
		}
	}
	if err := pool.QueryRow(ctx, `SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'jobqueue_messages'`).Scan(&n); err != nil {
		b.Logf("dead tuples: %v", err)
		return -1
	}
	return n
}

// Producers and receivers at once, as `river bench --duration`: 2
// producers send no-op jobs (transactions of 100, SendBatch of 10) while
// the backlog is under 20 000, and 4 receivers receive (long poll) and
// delete, batch 1 or 10 (also with 64 and 16 receivers, whose calls the
// client coalesces). 5 000 jobs are sent before the clock starts, as
// River waits for its first insert batch. The run lasts b.N × 0.5 ms (10 s
// at -benchtime 20000x). Reports jobs/s completed, sent/s and the backlog
// left at the end (jobs sent and not yet deleted).
func BenchmarkConcurrentInserts(b *testing.B) {
	const (
		producers  = 2
		perTx      = 100
		maxBacklog = 20_000
		preload    = 5_000
	)
	for _, tc := range []struct{ batch, receivers int }{{1, 4}, {1, 64}, {10, 4}, {10, 16}} {
		batch, receivers := tc.batch, tc.receivers
		b.Run(fmt.Sprintf("batch=%d/receivers=%d", batch, receivers), func(b *testing.B) {
			ctx := context.Background()
			// Coalesced receivers share a few connections; without
			// coalescing 40 keep the server under its connection limit.
			q := newBenchQueue(b, min(producers+receivers+1, 40))
			if err := q.send(ctx, min(preload, b.N), 500); err != nil {
				b.Fatal(err)
			}
			var sent, done atomic.Int64
			sent.Store(int64(min(preload, b.N)))
			runFor := time.Duration(b.N) * 500 * time.Microsecond
			q.stmts.n.Store(0)
			b.ResetTimer()
			start := time.Now()
			deadline := start.Add(runFor)
			var wg sync.WaitGroup
			for range producers {
				wg.Go(func() {
					for time.Now().Before(deadline) {
						if sent.Load()-done.Load() >= maxBacklog {
							time.Sleep(5 * time.Millisecond)
							continue
						}
						if err := q.send(ctx, perTx, perTx); err != nil {
							b.Error(err)
							return
						}
						sent.Add(perTx)
					}
				})
			}
			for range receivers {
				wg.Go(func() {
					for time.Now().Before(deadline) {
						n, err := q.work(ctx, batch, 100*time.Millisecond)
						if err != nil {
							b.Error(err)
							return
						}
						done.Add(int64(n))
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(done.Load())/elapsed.Seconds(), "jobs/s")
			b.ReportMetric(float64(sent.Load()-int64(min(preload, b.N)))/elapsed.Seconds(), "sent/s")
			b.ReportMetric(float64(q.count(b)), "backlog")
			q.stmts.perJob(b, int(done.Load()))
		})
	}
}

// Receive latency from send through a long poll: one receiver waits, one
// sender commits a message every few milliseconds.
func BenchmarkLongPollLatency(b *testing.B) {
	ctx := context.Background()
	bd := setup(b, jobqueue.Options{}, jobqueue.Queue{Name: "lat"})
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		got := make(chan time.Time, 1)
		go func() {
			msgs, err := bd.c.Receive(ctx, "lat", jobqueue.ReceiveInput{WaitTime: 20 * time.Second})
			if err != nil || len(msgs) != 1 {
				b.Error(err, len(msgs))
			} else if err := bd.c.DeleteMessage(ctx, bd.db.Pool, msgs[0].ReceiptHandle); err != nil {
				b.Error(err)
			}
			got <- time.Now()
		}()
		var sent time.Time
		err := pgdb.InTx(ctx, bd.db.Pool, func(tx pgx.Tx) error {
			_, err := bd.c.Send(ctx, tx, "lat", jobqueue.SendInput{Body: []byte("x")})
			sent = time.Now()
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-got).Sub(sent))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
}
