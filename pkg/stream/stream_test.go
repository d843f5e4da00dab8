package stream_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestEnsureStreamIsIdempotentAndKeepsPartitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nt := testinfra.NATS(t)
	name := nt.Name("ORDERS")

	cfg := stream.StreamConfig{Name: name, Partitions: 4}
	for range 2 {
		if err := stream.EnsureStream(ctx, nt.JS, cfg); err != nil {
			t.Fatalf("EnsureStream: %v", err)
		}
	}
	s, err := nt.JS.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	if len(sc.Subjects) != 1 || sc.Subjects[0] != name+".events.*" {
		t.Errorf("subjects = %v, want [%s.events.*]", sc.Subjects, name)
	}
	if sc.MaxAge != 7*24*time.Hour || sc.Duplicates != 2*time.Minute || sc.MaxBytes != -1 || sc.Replicas != 1 || sc.Storage != jetstream.FileStorage {
		t.Errorf("defaults not applied: %+v", sc)
	}
	if n, err := stream.StreamPartitions(ctx, nt.JS, name); err != nil || n != 4 {
		t.Errorf("StreamPartitions = %d, %v; want 4", n, err)
	}
	if _, err := nt.JS.Stream(ctx, stream.DLQStream(name)); err != nil {
		t.Errorf("dead-letter stream: %v", err)
	}

	// Limits change in place.
	cfg.MaxAge = time.Hour
	if err := stream.EnsureStream(ctx, nt.JS, cfg); err != nil {
		t.Fatalf("EnsureStream with a new MaxAge: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != time.Hour {
		t.Errorf("MaxAge = %s after update, want 1h", info.Config.MaxAge)
	}

	// The partition count does not.
	for _, n := range []int{8, 3} {
		err := stream.EnsureStream(ctx, nt.JS, stream.StreamConfig{Name: name, Partitions: n})
		if !errors.Is(err, stream.ErrPartitionsChanged) {
			t.Errorf("EnsureStream with %d partitions = %v, want ErrPartitionsChanged", n, err)
		}
	}
	if n, _ := stream.StreamPartitions(ctx, nt.JS, name); n != 4 {
		t.Errorf("partitions after refused change = %d, want 4", n)
	}
}

func TestBindStreamChecksWithoutCreating(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nt := testinfra.NATS(t)
	name := nt.Name("ORDERS")
	if err := stream.BindStream(ctx, nt.JS, name, 4); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("BindStream before the owner created the stream = %v, want ErrStreamNotFound", err)
	}
	if _, err := nt.JS.Stream(ctx, name); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("BindStream created the stream: %v", err)
	}
	if err := stream.EnsureStream(ctx, nt.JS, stream.StreamConfig{Name: name, Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	if err := stream.BindStream(ctx, nt.JS, name, 4); err != nil {
		t.Fatalf("BindStream after the owner created it: %v", err)
	}
	if err := stream.BindStream(ctx, nt.JS, name, 8); !errors.Is(err, stream.ErrPartitionsChanged) {
		t.Fatalf("BindStream with another partition count = %v, want ErrPartitionsChanged", err)
	}
	if err := nt.JS.DeleteStream(ctx, stream.DLQStream(name)); err != nil {
		t.Fatal(err)
	}
	if err := stream.BindStream(ctx, nt.JS, name, 4); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("BindStream without the dead-letter stream = %v, want ErrStreamNotFound", err)
	}
}

func TestEnsureStreamRefusesForeignStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nt := testinfra.NATS(t)
	name := nt.Name("FOREIGN")
	if _, err := nt.JS.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}}); err != nil {
		t.Fatal(err)
	}
	err := stream.EnsureStream(ctx, nt.JS, stream.StreamConfig{Name: name})
	if !errors.Is(err, stream.ErrInvalid) {
		t.Fatalf("EnsureStream on a stream without partition metadata = %v, want ErrInvalid", err)
	}
}

func TestEnsureStreamValidates(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	tests := map[string]stream.StreamConfig{
		"no name":         {},
		"dot in name":     {Name: "A.B"},
		"too many parts":  {Name: nt.Name("X"), Partitions: stream.MaxPartitions + 1},
		"negative parts":  {Name: nt.Name("X"), Partitions: -1},
		"window > maxage": {Name: nt.Name("X"), MaxAge: time.Minute, Duplicates: time.Hour},
		"bad max bytes":   {Name: nt.Name("X"), MaxBytes: -5},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if err := stream.EnsureStream(context.Background(), nt.JS, cfg); !errors.Is(err, stream.ErrInvalid) {
				t.Errorf("EnsureStream(%+v) = %v, want ErrInvalid", cfg, err)
			}
		})
	}
}

// setupStream creates a stream with n partitions and returns it with a
// publisher.
func setupStream(t *testing.T, n int, opts ...stream.PublisherOption) (*testinfra.NATSPrefix, string, *stream.Publisher) {
	t.Helper()
	nt := testinfra.NATS(t)
	name := nt.Name("ORDERS")
	if err := stream.EnsureStream(context.Background(), nt.JS, stream.StreamConfig{Name: name, Partitions: n}); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	pub, err := stream.NewPublisher(nt.JS, name, n, opts...)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	return nt, name, pub
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestPublishDeduplicatesByID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nt, name, pub := setupStream(t, 8)

	m := stream.Message{ID: "evt-1", Key: "order-1", Payload: []byte(`{"v":1}`), Headers: map[string]string{"Event-Type": "order.placed"}}
	first, err := pub.Publish(ctx, m)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if first.Duplicate || first.Partition != 5 || first.Sequence != 1 {
		t.Errorf("first ack = %+v, want partition 5 (vector of order-1), sequence 1, not duplicate", first)
	}
	second, err := pub.Publish(ctx, m)
	if err != nil {
		t.Fatalf("Publish again: %v", err)
	}
	if !second.Duplicate {
		t.Errorf("second ack = %+v, want Duplicate", second)
	}
	if n := streamMsgs(t, nt.JS, name); n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}

	s, _ := nt.JS.Stream(ctx, name)
	raw, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Subject != stream.Subject(name, 5) {
		t.Errorf("subject = %s, want %s", raw.Subject, stream.Subject(name, 5))
	}
	for k, want := range map[string]string{
		jetstream.MsgIDHeader: "evt-1", stream.HeaderEventID: "evt-1", stream.HeaderKey: "order-1", "Event-Type": "order.placed",
	} {
		if got := raw.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
}

func TestPublishRejectsMessagesWithoutIDOrKey(t *testing.T) {
	t.Parallel()
	_, _, pub := setupStream(t, 2)
	for _, m := range []stream.Message{{Key: "k"}, {ID: "id"}} {
		if _, err := pub.Publish(context.Background(), m); !errors.Is(err, stream.ErrInvalid) {
			t.Errorf("Publish(%+v) = %v, want ErrInvalid", m, err)
		}
	}
}

func TestPublishAsyncReportsEachMessage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inject := func(_ context.Context, h map[string]string) {
		h["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	}
	nt, name, pub := setupStream(t, 4, stream.WithInject(inject), stream.WithAckTimeout(3*time.Second))

	var msgs []stream.Message
	for i := range 10 {
		msgs = append(msgs, stream.Message{ID: fmt.Sprintf("evt-%d", i), Key: fmt.Sprintf("order-%d", i%3), Payload: []byte{byte(i)}})
	}
	msgs[4].ID = "" // invalid: only this one fails
	res := pub.PublishAsync(ctx, msgs)
	if len(res) != len(msgs) {
		t.Fatalf("%d results for %d messages", len(res), len(msgs))
	}
	var last uint64
	for i, r := range res {
		if i == 4 {
			if !errors.Is(r.Err, stream.ErrInvalid) {
				t.Errorf("result 4 = %v, want ErrInvalid", r.Err)
			}
			continue
		}
		if r.Err != nil || r.Ack.Duplicate || r.Ack.Sequence <= last {
			t.Errorf("result %d = %+v, want acknowledged after sequence %d", i, r, last)
		}
		if want := stream.Partition(msgs[i].Key, 4); r.Ack.Partition != want {
			t.Errorf("result %d partition %d, want %d", i, r.Ack.Partition, want)
		}
		last = r.Ack.Sequence
	}

	// The same batch again: every valid message is a duplicate.
	for i, r := range pub.PublishAsync(ctx, msgs) {
		if i != 4 && (r.Err != nil || !r.Ack.Duplicate) {
			t.Errorf("republished result %d = %+v, want duplicate", i, r)
		}
	}
	if n := streamMsgs(t, nt.JS, name); n != 9 {
		t.Errorf("stream holds %d messages, want 9", n)
	}
	s, _ := nt.JS.Stream(ctx, name)
	raw, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get("traceparent") == "" {
		t.Error("inject hook did not set traceparent")
	}
}
