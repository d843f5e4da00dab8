package kafkastream_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
)

// Publish and consumer-group throughput against kfake, an in-process Kafka:
// the figures measure this package and franz-go over loopback TCP with a
// broker that keeps everything in memory and does not replicate. They are
// not a Kafka cluster's figures.
//
//	go test -run '^$' -bench Kafka -benchtime 3s ./pkg/stream/kafka

// BenchmarkKafkaPublish: one message at a time, waiting for each ack
// (the outbox relay's worst case).
func BenchmarkKafkaPublish(b *testing.B) {
	k := setup(b, 8)
	ctx := context.Background()
	payload := make([]byte, 256)
	i := 0
	for b.Loop() {
		i++
		id := strconv.Itoa(i)
		if _, err := k.pub.Publish(ctx, stream.Message{ID: id, Key: "order-" + strconv.Itoa(i%1000), Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkKafkaPublishAsync: rounds of 100 messages, as the outbox relay
// publishes a batch of rows.
func BenchmarkKafkaPublishAsync(b *testing.B) {
	k := setup(b, 8)
	ctx := context.Background()
	payload := make([]byte, 256)
	msgs := make([]stream.Message, 100)
	n := 0
	for b.Loop() {
		for j := range msgs {
			n++
			msgs[j] = stream.Message{ID: strconv.Itoa(n), Key: "order-" + strconv.Itoa(n%1000), Payload: payload}
		}
		for _, r := range k.pub.PublishAsync(ctx, msgs) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkKafkaGroup: one member of a group handles b.N records over 8
// partitions with a handler that does nothing; each record costs one
// synchronous offset commit.
func BenchmarkKafkaGroup(b *testing.B) {
	k := setup(b, 8)
	ctx := context.Background()
	msgs := make([]stream.Message, b.N)
	for i := range msgs {
		msgs[i] = stream.Message{ID: strconv.Itoa(i), Key: "order-" + strconv.Itoa(i%1000), Payload: make([]byte, 256)}
	}
	for _, r := range k.pub.PublishAsync(ctx, msgs) {
		if r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	var handled atomic.Int64
	done := make(chan struct{})
	g, err := kafkastream.NewGroup(k.seeds, testGroup(k.topic, "bench"), func(context.Context, stream.Delivery) error {
		if handled.Add(1) == int64(b.N) {
			close(done)
		}
		return nil
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	b.ResetTimer()
	go func() { stopped <- g.Run(runCtx) }()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("handled %d of %d", handled.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	cancel()
	if err := <-stopped; err != nil {
		b.Fatal(err)
	}
}
