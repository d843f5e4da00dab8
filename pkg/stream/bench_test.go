package stream_test

import (
	"context"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/inbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// Consumer throughput: a group whose handler claims the event in the inbox
// and writes its effect in one PostgreSQL transaction (per message, or per
// batch for a batch group), against a raw pull consumer that only acks, on
// the same stream (8 partitions).
//
//	go test -run '^$' -bench Consume -benchtime 20000x ./pkg/stream
//
// benchPartitions: the group's parallelism is one message (one batch) per
// partition. benchMaxBatch: the batch group's MaxBatch
// (SHOPFLOOR_BENCH_MAX_BATCH).
var (
	benchPartitions = 8
	benchMaxBatch   = 256
)

func BenchmarkConsume(b *testing.B) {
	if v := os.Getenv("SHOPFLOOR_BENCH_PARTITIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		benchPartitions = n
	}
	if v := os.Getenv("SHOPFLOOR_BENCH_MAX_BATCH"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		benchMaxBatch = n
	}
	ctx := context.Background()
	schema := fstest.MapFS{"00001_inbox.sql": {Data: []byte("-- +goose Up\n" + inbox.Schema +
		"\nCREATE TABLE effects (order_id text PRIMARY KEY, n int NOT NULL);\n-- +goose Down\nDROP TABLE effects;\nDROP TABLE inbox;\n")}}
	nt := testinfra.NATS(b)
	// fill creates a fresh stream holding n messages over 1 000 keys.
	fill := func(b *testing.B, n int) string {
		b.Helper()
		name := nt.Name("BENCH" + strconv.Itoa(int(time.Now().UnixNano()%1e9)))
		if err := stream.EnsureStream(ctx, nt.JS, stream.StreamConfig{Name: name, Partitions: benchPartitions}); err != nil {
			b.Fatal(err)
		}
		pub, err := stream.NewPublisher(nt.JS, name, benchPartitions)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < n; i += 500 {
			batch := make([]stream.Message, 0, 500)
			for j := i; j < min(i+500, n); j++ {
				batch = append(batch, stream.Message{ID: "e" + strconv.Itoa(j), Key: "order-" + strconv.Itoa(j%1000), Payload: []byte(`{"order":"x","status":"paid"}`)})
			}
			for _, r := range pub.PublishAsync(ctx, batch) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		}
		return name
	}

	b.Run("raw-pull-ack", func(b *testing.B) {
		name := fill(b, b.N)
		cons, err := nt.JS.CreateConsumer(ctx, name, jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		start := time.Now()
		for n := 0; n < b.N; {
			batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
			if err != nil {
				b.Fatal(err)
			}
			for m := range batch.Messages() {
				if err := m.Ack(); err != nil {
					b.Fatal(err)
				}
				n++
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	})

	b.Run("group-inbox-effect", func(b *testing.B) {
		name := fill(b, b.N)
		db := testinfra.Postgres(b, schema)
		var done atomic.Int64
		finished := make(chan struct{})
		g, err := stream.NewGroup(nt.JS, stream.GroupConfig{Stream: name, Name: "bench", FetchWait: 200 * time.Millisecond},
			func(ctx context.Context, d stream.Delivery) error {
				err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
					_, err := inbox.Apply(ctx, tx, "bench", d.ID, func(ctx context.Context, tx pgx.Tx) error {
						_, err := tx.Exec(ctx, `INSERT INTO effects VALUES ($1, 1) ON CONFLICT (order_id) DO UPDATE SET n = effects.n + 1`, d.Key)
						return err
					})
					return err
				})
				if err == nil && done.Add(1) == int64(b.N) {
					close(finished)
				}
				return err
			}, nil)
		if err != nil {
			b.Fatal(err)
		}
		gctx, cancel := context.WithCancel(ctx)
		defer cancel()
		b.ResetTimer()
		start := time.Now()
		go func() { _ = g.Run(gctx) }()
		<-finished
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	})

	// The same effect per message, applied per batch: one transaction that
	// claims the batch's event IDs and applies the effect of the first-seen
	// ones with one statement.
	b.Run("group-batch-inbox-effect", func(b *testing.B) {
		name := fill(b, b.N)
		db := testinfra.Postgres(b, schema)
		var (
			done  atomic.Int64
			once  sync.Once
			sizes atomic.Int64
			calls atomic.Int64
		)
		finished := make(chan struct{})
		g, err := stream.NewBatchGroup(nt.JS, stream.GroupConfig{Stream: name, Name: "bench", FetchWait: 200 * time.Millisecond, MaxBatch: benchMaxBatch},
			func(ctx context.Context, ds []stream.Delivery) error {
				ids := make([]string, len(ds))
				for i, d := range ds {
					ids[i] = d.ID
				}
				err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
					first, err := inbox.ClaimBatch(ctx, tx, "bench", ids)
					if err != nil {
						return err
					}
					keys := make([]string, 0, len(ds))
					for i, d := range ds {
						if first[i] {
							keys = append(keys, d.Key)
						}
					}
					_, err = tx.Exec(ctx, `
						INSERT INTO effects SELECT k, count(*) FROM unnest($1::text[]) AS t(k) GROUP BY k
						ON CONFLICT (order_id) DO UPDATE SET n = effects.n + EXCLUDED.n`, keys)
					return err
				})
				if err == nil {
					calls.Add(1)
					sizes.Add(int64(len(ds)))
					if done.Add(int64(len(ds))) >= int64(b.N) {
						once.Do(func() { close(finished) })
					}
				}
				return err
			}, nil)
		if err != nil {
			b.Fatal(err)
		}
		gctx, cancel := context.WithCancel(ctx)
		stopped := make(chan struct{})
		b.ResetTimer()
		start := time.Now()
		go func() {
			defer close(stopped)
			_ = g.Run(gctx)
		}()
		<-finished
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		b.ReportMetric(float64(sizes.Load())/float64(max(calls.Load(), 1)), "msgs/batch")
		b.StopTimer()
		cancel()
		<-stopped
	})
}
