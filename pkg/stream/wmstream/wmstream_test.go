package wmstream_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/stream/wmstream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

type bundle struct {
	nt    *testinfra.NATSPrefix
	topic string
	pub   *wmstream.Publisher
	sub   *wmstream.Subscriber
}

// setup returns a publisher and a subscriber of group on a fresh topic of
// two partitions, closed when the test ends.
func setup(t *testing.T, group string, maxDeliver int) bundle {
	t.Helper()
	nt := testinfra.NATS(t)
	sc := stream.StreamConfig{Partitions: 2}
	pub, err := wmstream.NewPublisher(nt.JS, wmstream.PublisherConfig{Stream: sc})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := wmstream.NewSubscriber(nt.JS, wmstream.SubscriberConfig{
		ConsumerGroup: group,
		Stream:        sc,
		Group: stream.GroupConfig{
			FetchWait:  200 * time.Millisecond,
			Backoff:    backoff.Policy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
			MaxDeliver: maxDeliver,
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = pub.Close()
		_ = sub.Close()
	})
	return bundle{nt: nt, topic: nt.Name("WM"), pub: pub, sub: sub}
}

func receive(t *testing.T, msgs <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-msgs:
		if !ok {
			t.Fatal("messages channel closed")
		}
		return m
	case <-time.After(30 * time.Second):
		t.Fatal("no message within 30s")
	}
	return nil
}

func TestNackBeyondRetryBudgetIsDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t, "budget", 2)
	poison := message.NewMessage(watermill.NewUUID(), []byte("poison"))
	next := message.NewMessage(watermill.NewUUID(), []byte("next"))
	for _, m := range []*message.Message{poison, next} {
		m.Metadata.Set(wmstream.MetadataPartitionKey, "order-1") // one partition, in this order
	}
	if err := b.pub.Publish(b.topic, poison, next); err != nil {
		t.Fatal(err)
	}
	msgs, err := b.sub.Subscribe(t.Context(), b.topic)
	if err != nil {
		t.Fatal(err)
	}

	// The key's next message waits while the poison one is retried; after
	// MaxDeliver nacks the poison one goes to the dead-letter stream and
	// the partition moves on.
	for attempt := 1; attempt <= 2; attempt++ {
		m := receive(t, msgs)
		if m.UUID != poison.UUID {
			t.Fatalf("delivery %d: got %s, want the poison message %s again", attempt, m.UUID, poison.UUID)
		}
		m.Nack()
	}
	if m := receive(t, msgs); m.UUID != next.UUID {
		t.Fatalf("after the retry budget: got %s, want %s", m.UUID, next.UUID)
	} else {
		m.Ack()
	}

	dlq, err := stream.NewDLQ(b.nt.JS, b.topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	letters, err := dlq.List(t.Context(), "budget", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(letters))
	}
	dl := letters[0]
	if dl.EventID != poison.UUID || dl.ErrorClass != "exhausted" || dl.Attempts != 2 || string(dl.Payload) != "poison" ||
		!strings.Contains(dl.Error, "nacked") {
		t.Errorf("dead letter = %+v, want event %s, exhausted after 2 attempts, error naming the nack", dl, poison.UUID)
	}
}

func TestMessagesCarryKeyMetadataAndUUID(t *testing.T) {
	t.Parallel()
	b := setup(t, "meta", 0)
	keyed := message.NewMessage(watermill.NewUUID(), []byte("keyed"))
	keyed.Metadata.Set(wmstream.MetadataPartitionKey, "order-7")
	keyed.Metadata.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	plain := message.NewMessage(watermill.NewUUID(), []byte("plain"))
	if err := b.pub.Publish(b.topic, keyed, plain); err != nil {
		t.Fatal(err)
	}
	msgs, err := b.sub.Subscribe(t.Context(), b.topic)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*message.Message{}
	for range 2 {
		m := receive(t, msgs)
		got[m.UUID] = m
		m.Ack()
	}

	tests := []struct {
		name    string
		sent    *message.Message
		wantKey string
	}{
		{"partition_key metadata is the key", keyed, "order-7"},
		{"without it the UUID is the key", plain, plain.UUID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := got[tt.sent.UUID]
			if m == nil {
				t.Fatalf("message %s not received (got %v)", tt.sent.UUID, got)
			}
			if string(m.Payload) != string(tt.sent.Payload) {
				t.Errorf("payload = %q, want %q", m.Payload, tt.sent.Payload)
			}
			if k := m.Metadata.Get(stream.HeaderKey); k != tt.wantKey {
				t.Errorf("key = %q, want %q", k, tt.wantKey)
			}
			if id := m.Metadata.Get(stream.HeaderEventID); id != tt.sent.UUID {
				t.Errorf("%s = %q, want the UUID %s", stream.HeaderEventID, id, tt.sent.UUID)
			}
			for k, v := range tt.sent.Metadata {
				if m.Metadata.Get(k) != v {
					t.Errorf("metadata %s = %q, want %q", k, m.Metadata.Get(k), v)
				}
			}
		})
	}
}

func TestRepublishedUUIDIsStoredOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, "dedup", 0)
	msg := message.NewMessage(watermill.NewUUID(), []byte("once"))
	for range 3 {
		if err := b.pub.Publish(b.topic, msg); err != nil {
			t.Fatal(err)
		}
	}
	s, err := b.nt.JS.Stream(t.Context(), b.topic)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages after 3 publishes of one UUID, want 1", info.State.Msgs)
	}
}

func TestAdapterRefusesBadConfigurationAndTopics(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	if _, err := wmstream.NewSubscriber(nt.JS, wmstream.SubscriberConfig{}, nil); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("NewSubscriber without a group = %v, want ErrInvalid", err)
	}
	if _, err := wmstream.NewPublisher(nil, wmstream.PublisherConfig{}); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("NewPublisher without JetStream = %v, want ErrInvalid", err)
	}

	b := setup(t, "errors", 0)
	other, err := wmstream.NewPublisher(nt.JS, wmstream.PublisherConfig{Stream: stream.StreamConfig{Partitions: 3}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := wmstream.NewSubscriber(nt.JS, wmstream.SubscriberConfig{ConsumerGroup: "batch", Group: stream.GroupConfig{MaxBatch: 8}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.pub.Publish(b.topic, message.NewMessage(watermill.NewUUID(), nil)); err != nil {
		t.Fatal(err) // creates the topic with 2 partitions
	}

	tests := []struct {
		name string
		do   func() error
		want error // nil: any error
	}{
		{"topic that is no stream name", func() error {
			return b.pub.Publish("orders.placed", message.NewMessage(watermill.NewUUID(), nil))
		}, nil},
		{"message without UUID", func() error { return b.pub.Publish(b.topic, message.NewMessage("", nil)) }, stream.ErrInvalid},
		{"other partition count", func() error {
			return other.Publish(b.topic, message.NewMessage(watermill.NewUUID(), nil))
		}, stream.ErrPartitionsChanged},
		{"batch group", func() error { _, err := batch.Subscribe(t.Context(), b.topic); return err }, stream.ErrInvalid},
		{"publish after close", func() error {
			_ = other.Close()
			return other.Publish(b.topic, message.NewMessage(watermill.NewUUID(), nil))
		}, wmstream.ErrClosed},
		{"subscribe after close", func() error {
			_ = batch.Close()
			_, err := batch.Subscribe(t.Context(), b.topic)
			return err
		}, wmstream.ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}
