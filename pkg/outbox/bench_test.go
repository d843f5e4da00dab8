package outbox_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
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
			b.Run("keys="+strconv.Itoa(keys)+"/sync_always="+strconv.FormatBool(sync), func(b *testing.B) {
				benchRelay(b, keys, func(b *testing.B) outbox.Sink {
					pub, err := stream.NewPublisher(benchServer(b, sync), "BENCH", 1)
					if err != nil {
						b.Fatal(err)
					}
					return outbox.StreamSink{"BENCH": pub}
				})
			})
		}
	}
}

// BenchmarkRelayToKafka is BenchmarkRelay with the Kafka engine's
// publisher (ADR 0046) against kfake, franz-go's in-process Kafka (memory,
// one broker, no replication): a figure of the relay and franz-go's
// producer, not of a Kafka cluster.
func BenchmarkRelayToKafka(b *testing.B) {
	for _, keys := range []int{64, 10000} {
		b.Run("keys="+strconv.Itoa(keys), func(b *testing.B) {
			benchRelay(b, keys, func(b *testing.B) outbox.Sink {
				c, err := kfake.NewCluster(kfake.NumBrokers(1))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(c.Close)
				cl, err := kgo.NewClient(kafkastream.ClientOpts(c.ListenAddrs())...)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(cl.Close)
				if err := kafkastream.EnsureTopic(context.Background(), cl, kafkastream.TopicConfig{Name: "BENCH", Partitions: 1}); err != nil {
					b.Fatal(err)
				}
				pub, err := kafkastream.NewPublisher(cl, "BENCH")
				if err != nil {
					b.Fatal(err)
				}
				return outbox.StreamSink{"BENCH": pub}
			})
		})
	}
}

func benchRelay(b *testing.B, keys int, newSink func(*testing.B) outbox.Sink) {
	{
		{
			ctx := context.Background()
			sink := newSink(b)
			db := testinfra.Postgres(b, migrations)
			ob := outbox.New("BENCH")
			evs := benchEvents(b, b.N, keys)
			for i := 0; i < len(evs); i += 500 {
				chunk := evs[i:min(i+500, len(evs))]
				if err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error { return ob.Publish(ctx, tx, chunk...) }); err != nil {
					b.Fatal(err)
				}
			}
			// Completion is read from the relay's own counter, not by
			// counting the backlog in PostgreSQL: polling count(*) every
			// few milliseconds would load the database under test.
			reg := prometheus.NewRegistry()
			r, err := outbox.NewRelay(db.Pool, sink, outbox.RelayConfig{BatchSize: 1000, PollInterval: 10 * time.Millisecond, Registerer: reg}, quiet)
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
			for published(b, reg) < float64(b.N) {
				<-tick.C
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			b.StopTimer()
			if n, _, err := outbox.Backlog(ctx, db.Pool); err != nil || n != 0 {
				b.Fatalf("backlog after the relay counted every event published: %d (%v)", n, err)
			}
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	}
}

// published reads outbox_published_total from reg.
func published(b *testing.B, reg *prometheus.Registry) float64 {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "outbox_published_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
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
				// The message the relay sends for this event: the same
				// subject, payload and headers (the event's metadata, the
				// dedup id, pkg/stream's event id and key headers).
				m := nats.NewMsg(stream.SubjectForKey("BENCH", ev.Subject, 1))
				m.Data = body
				for k, v := range ev.Metadata() {
					m.Header.Set(k, v)
				}
				m.Header.Set(jetstream.MsgIDHeader, ev.ID)
				m.Header.Set(stream.HeaderEventID, ev.ID)
				m.Header.Set(stream.HeaderKey, ev.Subject)
				msgs[i] = m
			}
			b.ResetTimer()
			start := time.Now()
			for _, m := range msgs {
				if _, err := js.PublishMsgAsync(m, jetstream.WithExpectStream("BENCH"), jetstream.WithStallWait(time.Minute)); err != nil {
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

// BenchmarkCommitToAck: events committed at a steady 500/s through the
// outbox; latency from commit to the broker storing the message (its stream
// timestamp), p50 and p99.
//
//	go test -run '^$' -bench CommitToAck -benchtime 2000x ./pkg/outbox
func BenchmarkCommitToAck(b *testing.B) {
	ctx := context.Background()
	js := benchServer(b, true)
	db := testinfra.Postgres(b, migrations)
	ob := outbox.New("BENCH")
	pub, err := stream.NewPublisher(js, "BENCH", 1)
	if err != nil {
		b.Fatal(err)
	}
	r, err := outbox.NewRelay(db.Pool, outbox.StreamSink{"BENCH": pub}, outbox.RelayConfig{}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	committed := make(map[string]time.Time, b.N)
	evs := benchEvents(b, b.N, 1000)
	tick := time.NewTicker(2 * time.Millisecond) // 500 events/s
	defer tick.Stop()
	b.ResetTimer()
	for _, ev := range evs {
		<-tick.C
		if err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error { return ob.Publish(ctx, tx, ev) }); err != nil {
			b.Fatal(err)
		}
		committed[ev.ID] = time.Now()
	}
	cons, err := js.OrderedConsumer(ctx, "BENCH", jetstream.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	for len(lat) < b.N {
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			b.Fatal(err)
		}
		md, err := msg.Metadata()
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, md.Timestamp.Sub(committed[msg.Headers().Get(jetstream.MsgIDHeader)]))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
}

// BenchmarkDrainAfterOutage: writers commit 200 events/s; the broker is
// down for SHOPFLOOR_BENCH_OUTAGE (default 10s; the figure uses
// 60s); the relay's drain rate after the broker returns, against the write
// rate.
//
//	SHOPFLOOR_BENCH_OUTAGE=60s go test -run '^$' -bench DrainAfterOutage -benchtime 1x -timeout 10m ./pkg/outbox
func BenchmarkDrainAfterOutage(b *testing.B) {
	outage := 10 * time.Second
	if v := os.Getenv("SHOPFLOOR_BENCH_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		outage = d
	}
	const rate = 200
	ctx := context.Background()
	srv := testinfra.NewNATSServer(b, testinfra.NATSServerOptions{SyncAlways: true})
	_, js := srv.Connect()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"BENCH.>"}, Duplicates: 2 * time.Minute}); err != nil {
		b.Fatal(err)
	}
	db := testinfra.Postgres(b, migrations)
	ob := outbox.New("BENCH")
	pub, err := stream.NewPublisher(js, "BENCH", 1, stream.WithAckTimeout(time.Second))
	if err != nil {
		b.Fatal(err)
	}
	r, err := outbox.NewRelay(db.Pool, outbox.StreamSink{"BENCH": pub}, outbox.RelayConfig{BatchSize: 1000,
		Backoff: backoff.Policy{Initial: 100 * time.Millisecond, Max: time.Second}}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = r.Run(rctx) }()

	wctx, stopWriters := context.WithCancel(ctx)
	defer stopWriters()
	go func() {
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
			ev, err := events.New("bench", "widget.changed", "key-"+strconv.Itoa(i%100), 1, int64(i/100+1), map[string]any{"i": i}, time.Now())
			if err == nil {
				err = pgdb.InTx(wctx, db.Pool, func(tx pgx.Tx) error { return ob.Publish(wctx, tx, ev) })
			}
			if err != nil && wctx.Err() == nil {
				b.Error(err)
				return
			}
		}
	}()
	b.ResetTimer()
	srv.Stop()
	t := time.NewTimer(outage)
	<-t.C
	backlog, _, err := outbox.Backlog(ctx, db.Pool)
	if err != nil {
		b.Fatal(err)
	}
	srv.Start()
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		n, _, err := outbox.Backlog(ctx, db.Pool)
		if err != nil {
			b.Fatal(err)
		}
		if n < rate/10 { // caught up: what is left is the live trickle
			break
		}
		<-tick.C
	}
	took := time.Since(start)
	drained := float64(backlog) + rate*took.Seconds() // the backlog plus what arrived meanwhile
	b.ReportMetric(float64(backlog), "backlog_rows")
	b.ReportMetric(took.Seconds(), "drain_s")
	b.ReportMetric(drained/took.Seconds()/rate, "drain_x_write_rate")
}
