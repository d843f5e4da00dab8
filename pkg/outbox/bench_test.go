package outbox_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// The relay against raw JetStream async publish of the same messages, on a
// private nats-server with each durability setting. Run:
//
//	go test -run '^$' -bench . -benchtime 20000x ./pkg/outbox
//
// Figures: docs/adr/0007-jetstream-durability.md.

func benchEvents(b *testing.B, n, keys int) []events.Envelope {
	b.Helper()
	evs := make([]events.Envelope, n)
	for i := range evs {
		ev, err := events.New("bench", "widget.changed", "key-"+strconv.Itoa(i%keys), 1, int64(i/keys+1),
			map[string]any{"i": i, "name": "a widget of moderate size", "price": 1999}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		evs[i] = ev
	}
	return evs
}

func benchServer(b *testing.B, syncAlways bool) jetstream.JetStream {
	b.Helper()
	srv := testinfra.NewNATSServer(b, testinfra.NATSServerOptions{SyncAlways: syncAlways})
	_, js := srv.Connect()
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "BENCH", Subjects: []string{"BENCH.>"}, Duplicates: 2 * time.Minute,
	}); err != nil {
		b.Fatal(err)
	}
	return js
}

func BenchmarkRelay(b *testing.B) {
	for _, keys := range []int{64, 10000} {
		for _, sync := range []bool{false, true} {
			b.Run("keys="+strconv.Itoa(keys)+"/sync_always="+strconv.FormatBool(sync), func(b *testing.B) { benchRelay(b, keys, sync) })
		}
	}
}

func benchRelay(b *testing.B, keys int, sync bool) {
	{
		{
			ctx := context.Background()
			js := benchServer(b, sync)
			db := testinfra.Postgres(b, migrations)
			ob := outbox.New("BENCH")
			evs := benchEvents(b, b.N, keys)
			for i := 0; i < len(evs); i += 500 {
				chunk := evs[i:min(i+500, len(evs))]
				if err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error { return ob.Publish(ctx, tx, chunk...) }); err != nil {
					b.Fatal(err)
				}
			}
			pub, err := stream.NewPublisher(js, "BENCH", 1)
			if err != nil {
				b.Fatal(err)
			}
			sink := outbox.StreamSink{"BENCH": pub}
			r, err := outbox.NewRelay(db.Pool, sink, outbox.RelayConfig{BatchSize: 1000, PollInterval: 10 * time.Millisecond}, quiet)
			if err != nil {
				b.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			b.ResetTimer()
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- r.Run(rctx) }()
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				n, _, err := outbox.Backlog(ctx, db.Pool)
				if err != nil {
					b.Fatal(err)
				}
				if n == 0 {
					break
				}
				<-tick.C
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			b.StopTimer()
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkRawAsyncPublish(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run("sync_always="+strconv.FormatBool(sync), func(b *testing.B) {
			js := benchServer(b, sync)
			evs := benchEvents(b, b.N, 64)
			msgs := make([]*nats.Msg, len(evs))
			for i, ev := range evs {
				body, err := events.Marshal(ev)
				if err != nil {
					b.Fatal(err)
				}
				m := nats.NewMsg("BENCH.events.0")
				m.Data = body
				m.Header.Set(jetstream.MsgIDHeader, ev.ID)
				msgs[i] = m
			}
			b.ResetTimer()
			start := time.Now()
			for _, m := range msgs {
				if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("acks did not arrive within a minute")
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}
