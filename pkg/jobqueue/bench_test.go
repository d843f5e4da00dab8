package jobqueue_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
)

// Burn-down throughput: b.N no-op jobs are sent, then 4 receivers take and
// delete them, batch 1 or 10. Compare with River's `river bench` on the
// same PostgreSQL (anchor: about 18.6k jobs/s burn-down on this machine).
//
//	go test -run '^$' -bench . -benchtime 20000x ./pkg/jobqueue
func BenchmarkBurnDown(b *testing.B) {
	for _, batch := range []int{1, 10} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			ctx := context.Background()
			bd := setup(b, jobqueue.Options{}, jobqueue.Queue{Name: "bench"})
			ins := make([]jobqueue.SendInput, 10)
			for i := range ins {
				ins[i] = jobqueue.SendInput{Body: []byte(`{"job":"noop"}`)}
			}
			for sent := 0; sent < b.N; sent += 500 {
				err := pgdb.InTx(ctx, bd.db.Pool, func(tx pgx.Tx) error {
					for i := 0; i < 500 && sent+i < b.N; i += 10 {
						if _, err := bd.c.SendBatch(ctx, tx, "bench", ins[:min(10, b.N-sent-i)]); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for {
						msgs, err := bd.c.Receive(ctx, "bench", jobqueue.ReceiveInput{MaxMessages: batch})
						if err != nil {
							b.Error(err)
							return
						}
						if len(msgs) == 0 {
							return
						}
						if batch == 1 {
							if err := bd.c.DeleteMessage(ctx, bd.db.Pool, msgs[0].ReceiptHandle); err != nil {
								b.Error(err)
								return
							}
							continue
						}
						handles := make([]string, len(msgs))
						for i, m := range msgs {
							handles[i] = m.ReceiptHandle
						}
						if _, err := bd.c.DeleteMessageBatch(ctx, bd.db.Pool, handles); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
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
