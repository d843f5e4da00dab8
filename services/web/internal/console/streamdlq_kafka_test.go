package console

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestStreamDeadLettersOnKafka: with the streams on Kafka (ADR 0046) the
// console lists a topic's dead letters (group, error, key) with the
// payload's personal fields redacted, shows one by its offset, and
// answers a redrive that it is not built on Kafka.
func TestStreamDeadLettersOnKafka(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	seeds := c.ListenAddrs()
	cl, err := kgo.NewClient(kafkastream.ClientOpts(seeds)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := kafkastream.EnsureTopic(ctx, cl, kafkastream.TopicConfig{Name: "ORDERS", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	pub, err := kafkastream.NewPublisher(cl, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, stream.Message{ID: "ev-1", Key: "order-1",
		Payload: []byte(`{"order_id":"order-1","customer_email":"ada@example.com"}`)}); err != nil {
		t.Fatal(err)
	}
	g, err := kafkastream.NewGroup(seeds, kafkastream.GroupConfig{Topic: "ORDERS", Name: "mailer", SessionTimeout: time.Second, RebalanceTimeout: 5 * time.Second, HandlerTimeout: 2 * time.Second},
		func(context.Context, stream.Delivery) error { return stream.Permanent(errors.New("template missing")) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	gctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("group: %v", err)
		}
	}()

	con := New(&target.System{})
	con.EnableKafkaStreamDLQs(seeds, "ORDERS")
	if !con.StreamDLQsEnabled() {
		t.Fatal("stream dead letters not enabled")
	}
	var got []StreamDeadLetters
	testinfra.Eventually(t, 20*time.Second, func() error {
		got = con.StreamDeadLetterQueues(ctx)
		if len(got) != 1 || len(got[0].Letters) != 1 {
			return errors.New("no dead letter listed yet")
		}
		return nil
	})
	d := got[0].Letters[0]
	if d.Group != "mailer" || d.EventID != "ev-1" || d.Key != "order-1" || !strings.Contains(d.Error, "template missing") {
		t.Errorf("dead letter %+v", d.DeadLetter)
	}
	if strings.Contains(string(d.Redacted), "ada@example.com") || d.Payload != nil || !strings.Contains(string(d.Redacted), "order-1") {
		t.Errorf("payload shown as %s (raw %q), want redacted", d.Redacted, d.Payload)
	}
	one, err := con.StreamDeadLetter(ctx, "ORDERS", d.Seq)
	if err != nil || one.EventID != "ev-1" {
		t.Errorf("dead letter %d: %+v, %v", d.Seq, one.DeadLetter, err)
	}
	if _, err := con.RedriveStream(ctx, "ORDERS", "mailer", nil); !errors.Is(err, kafkastream.ErrNotBuilt) {
		t.Errorf("redrive on Kafka: %v, want ErrNotBuilt", err)
	}
}
