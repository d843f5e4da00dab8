package outbox_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestRelayPublishesToKafkaAndParksWhatKafkaRefuses: the relay over a
// Kafka publisher (StreamSink on the second engine, ADR 0046) publishes
// each row with its key to the key's partition, and a record larger than
// the producer's limit (kerr.MessageTooLarge, refused before sending) is
// parked at the first refusal while other keys flow.
func TestRelayPublishesToKafkaAndParksWhatKafkaRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT")) // the database and outbox; the JetStream stream stays unused
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(append(kafkastream.ClientOpts(c.ListenAddrs()), kgo.ProducerBatchMaxBytes(4096))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := kafkastream.EnsureTopic(ctx, cl, kafkastream.TopicConfig{Name: b.stream, Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	pub, err := kafkastream.NewPublisher(cl, b.stream)
	if err != nil {
		t.Fatal(err)
	}
	runRelay(t, newRelay(t, b, outbox.StreamSink{b.stream: pub}, fast))

	big, err := events.New("test", "widget.changed", "big", 1, 1, map[string]any{"blob": strings.Repeat("x", 8192)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error { return b.ob.Publish(ctx, tx, big) }); err != nil {
		t.Fatal(err)
	}
	var small []events.Envelope
	for i := range 6 {
		small = append(small, b.emit(t, fmt.Sprintf("small-%d", i%3), nil))
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if s := rowOf(t, b, big.ID); !s.parked {
			return fmt.Errorf("oversize row not parked: %+v", s)
		}
		for _, ev := range small {
			if s := rowOf(t, b, ev.ID); !s.published {
				return fmt.Errorf("row %s not published: %+v", ev.ID, s)
			}
		}
		return nil
	})
	if s := rowOf(t, b, big.ID); s.attempts != 1 || !strings.Contains(s.lastError, "MESSAGE_TOO_LARGE") {
		t.Errorf("parked row %+v: want parked at the first refusal with Kafka's error", s)
	}

	// The topic holds the small rows, each in its key's partition, per key
	// in the order written.
	rd, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(b.stream), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	byKey := map[string][]string{}
	n := 0
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for n < len(small) && pctx.Err() == nil {
		rd.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			n++
			if want := int32(stream.Partition(string(r.Key), 4)); r.Partition != want {
				t.Errorf("key %s in partition %d, want %d", r.Key, r.Partition, want)
			}
			for _, h := range r.Headers {
				if h.Key == "Shopfloor-Event-Id" {
					byKey[string(r.Key)] = append(byKey[string(r.Key)], string(h.Value))
				}
			}
		})
	}
	for _, ev := range small {
		ids := byKey[ev.Subject]
		if len(ids) == 0 || ids[0] != ev.ID {
			t.Errorf("key %s: topic holds %v, want %s next", ev.Subject, ids, ev.ID)
			continue
		}
		byKey[ev.Subject] = ids[1:]
	}
}
