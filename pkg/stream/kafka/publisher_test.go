package kafkastream_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
)

// TestPublisherPartitionMatchesStreamPartition: a key lands in partition
// stream.Partition(key, n) on Kafka as on JetStream, for several n, and the
// broker stores it there (read back from the partition).
func TestPublisherPartitionMatchesStreamPartition(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3, 8} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			k := setup(t, n)
			var msgs []stream.Message
			for i := range 40 {
				msgs = append(msgs, stream.Message{ID: fmt.Sprintf("e%d", i), Key: fmt.Sprintf("order-%d", i*7919)})
			}
			acks := k.publish(t, msgs...)
			stored := map[string]int{}
			for _, r := range consumeAll(t, k, k.topic, len(msgs)) {
				stored[string(r.Key)] = int(r.Partition)
			}
			for i, m := range msgs {
				want := stream.Partition(m.Key, n)
				if acks[i].Partition != want || stored[m.Key] != want {
					t.Errorf("key %s: ack partition %d, stored in %d, want stream.Partition = %d", m.Key, acks[i].Partition, stored[m.Key], want)
				}
			}
		})
	}
}

// consumeAll reads n records of topic with a plain (groupless) client.
func consumeAll(t *testing.T, k kafka, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.seeds...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records: %v", len(out), n, ctx.Err())
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// TestPublishCarriesIDKeyAndHeaders: the record's key is Message.Key, the
// ID and key travel as Shopfloor-Event-Id and Shopfloor-Key (overriding
// caller values), other headers as given.
func TestPublishCarriesIDKeyAndHeaders(t *testing.T) {
	t.Parallel()
	k := setup(t, 2)
	k.publish(t, stream.Message{ID: "e1", Key: "k1", Payload: []byte("p"),
		Headers: map[string]string{"traceparent": "tp", stream.HeaderEventID: "forged"}})
	r := consumeAll(t, k, k.topic, 1)[0]
	h := map[string]string{}
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	if string(r.Key) != "k1" || string(r.Value) != "p" || h[stream.HeaderEventID] != "e1" || h[stream.HeaderKey] != "k1" || h["traceparent"] != "tp" {
		t.Fatalf("record key %q value %q headers %v", r.Key, r.Value, h)
	}
}

func TestPublishRejectsMessagesWithoutIDOrKey(t *testing.T) {
	t.Parallel()
	k := setup(t, 1)
	for _, m := range []stream.Message{{Key: "k"}, {ID: "e"}} {
		if _, err := k.pub.Publish(context.Background(), m); !errors.Is(err, stream.ErrInvalid) {
			t.Errorf("Publish(%+v) = %v, want ErrInvalid", m, err)
		}
	}
}

// TestPublishAsyncReportsEachMessage: one result per message in order; an
// invalid message fails alone; offsets grow per partition.
func TestPublishAsyncReportsEachMessage(t *testing.T) {
	t.Parallel()
	k := setup(t, 4)
	msgs := []stream.Message{{ID: "a", Key: "k1"}, {ID: "b"}, {ID: "c", Key: "k1"}, {ID: "d", Key: "k2"}}
	res := k.pub.PublishAsync(context.Background(), msgs)
	if len(res) != len(msgs) {
		t.Fatalf("%d results for %d messages", len(res), len(msgs))
	}
	if !errors.Is(res[1].Err, stream.ErrInvalid) {
		t.Errorf("message without key: %v, want ErrInvalid", res[1].Err)
	}
	for _, i := range []int{0, 2, 3} {
		if res[i].Err != nil || res[i].Ack.Partition != stream.Partition(msgs[i].Key, 4) {
			t.Errorf("message %s: %+v", msgs[i].ID, res[i])
		}
	}
	if res[2].Ack.Sequence != res[0].Ack.Sequence+1 {
		t.Errorf("offsets of one key: %d then %d, want consecutive", res[0].Ack.Sequence, res[2].Ack.Sequence)
	}
}

// TestEnsureTopicIsIdempotentAndKeepsPartitions: a second call changes
// nothing; another partition count is refused; the DLQ topic exists.
func TestEnsureTopicIsIdempotentAndKeepsPartitions(t *testing.T) {
	t.Parallel()
	k := setup(t, 4)
	ctx := context.Background()
	if err := kafkastream.EnsureTopic(ctx, k.cl, kafkastream.TopicConfig{Name: k.topic, Partitions: 4}); err != nil {
		t.Fatalf("second EnsureTopic: %v", err)
	}
	if err := kafkastream.EnsureTopic(ctx, k.cl, kafkastream.TopicConfig{Name: k.topic, Partitions: 6}); !errors.Is(err, stream.ErrPartitionsChanged) {
		t.Fatalf("EnsureTopic with 6 partitions = %v, want ErrPartitionsChanged", err)
	}
	adm := kadm.NewClient(k.cl)
	for topic, want := range map[string]int{k.topic: 4, kafkastream.DLQTopic(k.topic): 1} {
		if n, err := kafkastream.TopicPartitions(ctx, adm, topic); err != nil || n != want {
			t.Errorf("%s: %d partitions, %v; want %d", topic, n, err, want)
		}
	}
	if err := kafkastream.EnsureTopic(ctx, k.cl, kafkastream.TopicConfig{Name: "a.b"}); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("EnsureTopic(a.b) = %v, want ErrInvalid", err)
	}
}
