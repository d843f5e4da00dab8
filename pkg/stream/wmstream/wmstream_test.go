package wmstream_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/inbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/stream/wmstream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// forEachEngine runs test once per engine, in parallel, each on a broker
// of its own.
func forEachEngine(t *testing.T, test func(t *testing.T, b broker)) {
	t.Helper()
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			test(t, e.start(t))
		})
	}
}

type bundle struct {
	topic string
	pub   *wmstream.Publisher
	sub   *wmstream.Subscriber
}

// setup returns a publisher and a subscriber of group on a fresh topic of
// two partitions, closed when the test ends.
func setup(t *testing.T, b broker, group string, maxDeliver int) bundle {
	t.Helper()
	pub, sub := pubSub(t, b, subConfig{group: group, partitions: 2, maxDeliver: maxDeliver})
	return bundle{topic: b.topic("WM"), pub: pub, sub: sub}
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
	forEachEngine(t, func(t *testing.T, b broker) {
		s := setup(t, b, "budget", 2)
		poison := message.NewMessage(watermill.NewUUID(), []byte("poison"))
		next := message.NewMessage(watermill.NewUUID(), []byte("next"))
		for _, m := range []*message.Message{poison, next} {
			m.Metadata.Set(wmstream.MetadataPartitionKey, "order-1") // one partition, in this order
		}
		if err := s.pub.Publish(s.topic, poison, next); err != nil {
			t.Fatal(err)
		}
		msgs, err := s.sub.Subscribe(t.Context(), s.topic)
		if err != nil {
			t.Fatal(err)
		}

		// The key's next message waits while the poison one is retried;
		// after MaxDeliver nacks the poison one goes to the dead-letter
		// stream (topic) and the partition moves on.
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

		letters := b.deadLetters(t, s.topic, "budget", 1)
		if len(letters) != 1 {
			t.Fatalf("dead letters = %d, want 1", len(letters))
		}
		dl := letters[0]
		if dl.EventID != poison.UUID || dl.Key != "order-1" || dl.ErrorClass != "exhausted" || dl.Attempts != 2 ||
			string(dl.Payload) != "poison" || !strings.Contains(dl.Error, "nacked") {
			t.Errorf("dead letter = %+v, want event %s of key order-1, exhausted after 2 attempts, error naming the nack", dl, poison.UUID)
		}
	})
}

func TestMessagesCarryKeyMetadataAndUUID(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, b broker) {
		s := setup(t, b, "meta", 0)
		keyed := message.NewMessage(watermill.NewUUID(), []byte("keyed"))
		keyed.Metadata.Set(wmstream.MetadataPartitionKey, "order-7")
		keyed.Metadata.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		plain := message.NewMessage(watermill.NewUUID(), []byte("plain"))
		if err := s.pub.Publish(s.topic, keyed, plain); err != nil {
			t.Fatal(err)
		}
		msgs, err := s.sub.Subscribe(t.Context(), s.topic)
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
	})
}

// inboxMigrations: pkg/inbox's table.
var inboxMigrations = fstest.MapFS{
	"00001_inbox.sql": {Data: []byte("-- +goose Up\n" + inbox.Schema + "\n-- +goose Down\nDROP TABLE inbox;\n")},
}

// TestRepublishedUUIDTakesEffectOnce publishes one message three times (a
// relay that crashed before marking its outbox row, twice). JetStream
// stores it once (Nats-Msg-Id inside the duplicate window); Kafka has no
// broker-side de-duplication and stores and delivers it three times. On
// both, the consumer's inbox (real PostgreSQL) lets it take effect once.
func TestRepublishedUUIDTakesEffectOnce(t *testing.T) {
	t.Parallel()
	wantStored := map[string]int{"jetstream": 1, "kafka": 3}
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			db := testinfra.Postgres(t, inboxMigrations).Pool
			b := e.start(t)
			s := setup(t, b, "dedup", 0)
			msg := message.NewMessage(watermill.NewUUID(), []byte("once"))
			for range 3 {
				if err := s.pub.Publish(s.topic, msg); err != nil {
					t.Fatal(err)
				}
			}
			want := wantStored[e.name]
			if n := b.stored(t, s.topic); n != want {
				t.Fatalf("topic holds %d messages after 3 publishes of one UUID, want %d", n, want)
			}

			msgs, err := s.sub.Subscribe(t.Context(), s.topic)
			if err != nil {
				t.Fatal(err)
			}
			applied := 0
			for range want {
				m := receive(t, msgs)
				if m.UUID != msg.UUID {
					t.Fatalf("got %s, want %s", m.UUID, msg.UUID)
				}
				if applyOnce(m.Context(), t, db, m.UUID) {
					applied++
				}
				m.Ack()
			}
			if applied != 1 {
				t.Errorf("%d deliveries took effect %d times, want once", want, applied)
			}
		})
	}
}

func TestAdapterRefusesBadConfigurationAndTopics(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, b broker) {
		pubErr, subErr := b.unconnected()
		if !errors.Is(pubErr, stream.ErrInvalid) || !errors.Is(subErr, stream.ErrInvalid) {
			t.Errorf("constructors without a broker = %v, %v; want ErrInvalid", pubErr, subErr)
		}
		if _, err := b.subscriber(t, subConfig{}); !errors.Is(err, stream.ErrInvalid) {
			t.Errorf("subscriber without a group = %v, want ErrInvalid", err)
		}
		if _, err := b.publisher(t, -1); !errors.Is(err, stream.ErrInvalid) {
			t.Errorf("publisher with -1 partitions = %v, want ErrInvalid", err)
		}

		s := setup(t, b, "errors", 0)
		other, err := b.publisher(t, 3)
		if err != nil {
			t.Fatal(err)
		}
		bad, err := b.badGroup(t)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.pub.Publish(s.topic, message.NewMessage(watermill.NewUUID(), nil)); err != nil {
			t.Fatal(err) // creates the topic with 2 partitions
		}

		tests := []struct {
			name string
			do   func() error
			want error // nil: any error
		}{
			{"topic that is no stream name", func() error {
				return s.pub.Publish("orders.placed", message.NewMessage(watermill.NewUUID(), nil))
			}, nil},
			{"message without UUID", func() error { return s.pub.Publish(s.topic, message.NewMessage("", nil)) }, stream.ErrInvalid},
			{"other partition count", func() error {
				return other.Publish(s.topic, message.NewMessage(watermill.NewUUID(), nil))
			}, stream.ErrPartitionsChanged},
			{"group the engine refuses", func() error { _, err := bad.Subscribe(t.Context(), s.topic); return err }, stream.ErrInvalid},
			{"publish after close", func() error {
				_ = other.Close()
				return other.Publish(s.topic, message.NewMessage(watermill.NewUUID(), nil))
			}, wmstream.ErrClosed},
			{"subscribe after close", func() error {
				_ = bad.Close()
				_, err := bad.Subscribe(t.Context(), s.topic)
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
	})
}

// applyOnce claims id in the inbox of group "dedup" and reports whether it
// was new.
func applyOnce(ctx context.Context, t *testing.T, db pgdb.Beginner, id string) bool {
	t.Helper()
	var applied bool
	err := pgdb.InTx(ctx, db, func(tx pgx.Tx) (err error) {
		applied, err = inbox.Apply(ctx, tx, "dedup", id, func(context.Context, pgx.Tx) error { return nil })
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return applied
}
