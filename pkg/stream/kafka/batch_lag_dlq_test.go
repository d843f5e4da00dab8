package kafkastream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
	"github.com/shopfloor/shopfloor/pkg/stream/streamtest"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestGroupLagCountsAndAgesWhatIsNotCommitted: GroupLag reports, per
// partition, the records a group has not committed and the age of the
// oldest of them (its timestamp), and 0 and 0 once it has caught up. A
// group the broker does not know is an error (as a missing consumer is
// on JetStream: the lag is unknown, not zero).
func TestGroupLagCountsAndAgesWhatIsNotCommitted(t *testing.T) {
	t.Parallel()
	k := setup(t, 3)
	keys := streamtest.Keys(5)
	if _, err := kafkastream.GroupLag(t.Context(), k.cl, k.topic, "g", nil); !errors.Is(err, kerr.GroupIDNotFound) {
		t.Fatalf("lag of a group that never ran: %v, want GROUP_ID_NOT_FOUND", err)
	}
	check := streamtest.NewOrderCheck()
	first := k.start(t, testGroup(k.topic, "g"), func(_ context.Context, d stream.Delivery) error { check.Apply(d); return nil })
	versions(t, k, keys, 1, 2)
	testinfra.Eventually(t, 30*time.Second, func() error { return check.Done(keys, 2) })
	first.stop() // commits what it handled
	versions(t, k, keys, 3, 4)
	published := time.Now()
	later := published.Add(time.Hour)
	lags, err := kafkastream.GroupLag(t.Context(), k.cl, k.topic, "g", func() time.Time { return later })
	if err != nil {
		t.Fatal(err)
	}
	if len(lags) != 3 {
		t.Fatalf("%d partitions, want 3: %+v", len(lags), lags)
	}
	var total uint64
	for p, l := range lags {
		if l.Partition != p {
			t.Errorf("lags[%d] is partition %d", p, l.Partition)
		}
		total += l.Messages
		if l.Messages > 0 && (l.OldestUnacked < 59*time.Minute || l.OldestUnacked > 61*time.Minute) {
			t.Errorf("partition %d: %d records, oldest %s old, want about 1h (the clock is an hour ahead)", p, l.Messages, l.OldestUnacked)
		}
		if l.Messages == 0 && l.OldestUnacked != 0 {
			t.Errorf("partition %d: no records, oldest %s", p, l.OldestUnacked)
		}
	}
	if total != uint64(len(keys)*2) {
		t.Errorf("lag %d records, want %d (versions 3 and 4 of each key)", total, len(keys)*2)
	}

	k.start(t, testGroup(k.topic, "g"), func(_ context.Context, d stream.Delivery) error { check.Apply(d); return nil })
	testinfra.Eventually(t, 30*time.Second, func() error { return check.Done(keys, 4) })
	testinfra.Eventually(t, 30*time.Second, func() error {
		lags, err := kafkastream.GroupLag(t.Context(), k.cl, k.topic, "g", nil)
		if err != nil {
			return err
		}
		for _, l := range lags {
			if l.Messages != 0 || l.OldestUnacked != 0 {
				return fmt.Errorf("not caught up: %+v", lags)
			}
		}
		return nil
	})
}

// TestBatchGroupHandsReadyRecordsTogetherAndSplitsAFailedBatch: a batch
// group hands a partition's ready records to one call (a backlog makes
// calls of several records, never more than MaxBatch); a call that fails
// is followed by the same records one at a time, so one poison record is
// dead-lettered alone and every other record takes effect once, in order
// per key.
func TestBatchGroupHandsReadyRecordsTogetherAndSplitsAFailedBatch(t *testing.T) {
	t.Parallel()
	k := setup(t, 2)
	keys := streamtest.Keys(8)
	versions(t, k, keys, 1, 50) // a backlog before the group starts
	poison := stream.Message{ID: "poison", Key: keys[0], Payload: []byte("poison")}
	if _, err := k.pub.Publish(context.Background(), poison); err != nil {
		t.Fatal(err)
	}
	versions(t, k, keys, 51, 60)
	check := streamtest.NewOrderCheck()
	var (
		mu          sync.Mutex
		sizes       = map[int]int{}
		failedBatch bool
	)
	cfg := testGroup(k.topic, "g")
	cfg.MaxBatch = 16
	g, err := kafkastream.NewBatchGroup(k.seeds, cfg, func(_ context.Context, ds []stream.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		sizes[len(ds)]++
		for _, d := range ds {
			if d.ID == poison.ID {
				failedBatch = failedBatch || len(ds) > 1
				return stream.Permanent(errors.New("poison"))
			}
		}
		for _, d := range ds {
			check.Apply(d)
		}
		return nil
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	testinfra.Eventually(t, 30*time.Second, func() error { return check.Done(keys, 60) })
	mu.Lock()
	defer mu.Unlock()
	largest, calls := 0, 0
	for n, c := range sizes {
		largest = max(largest, n)
		calls += c
	}
	t.Logf("%d calls for %d records, batch sizes %v", calls, len(keys)*60+1, sizes)
	if largest < 2 || largest > 16 {
		t.Errorf("largest batch %d, want 2..16 (MaxBatch) from a backlog", largest)
	}
	if !failedBatch {
		t.Error("the poison record never came in a batch of several (the test did not test the split)")
	}
	if dead := dlqHeaders(t, k, 1); dead[poison.ID][stream.HeaderDLQErrorClass] != "permanent" || len(dead) != 1 {
		t.Errorf("dead letters %v, want the poison record alone, class permanent", dead)
	}
	if _, err := kafkastream.NewBatchGroup(k.seeds, testGroup(k.topic, "g"), nil, nil); err == nil {
		t.Error("NewBatchGroup with a nil handler succeeded")
	}
	big := testGroup(k.topic, "g")
	big.MaxBatch = stream.MaxBatchLimit + 1
	if _, err := kafkastream.NewBatchGroup(k.seeds, big, func(context.Context, []stream.Delivery) error { return nil }, nil); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("MaxBatch %d: %v, want ErrInvalid", big.MaxBatch, err)
	}
	big.MaxBatch = 2
	if _, err := kafkastream.NewGroup(k.seeds, big, func(context.Context, stream.Delivery) error { return nil }, nil); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("NewGroup with MaxBatch 2: %v, want ErrInvalid", err)
	}
}

// TestDLQReaderListsAndInspectsTheDeadLetterTopic: the operator's dlq
// command on Kafka lists a topic's dead letters (by group, with class,
// attempts and error), inspects one by its offset with the payload's
// personal fields redacted, answers ErrNotFound beyond the topic, and
// refuses to redrive or discard (not built on this engine).
func TestDLQReaderListsAndInspectsTheDeadLetterTopic(t *testing.T) {
	t.Parallel()
	k := setup(t, 2)
	k.publish(t,
		stream.Message{ID: "ok-1", Key: "a", Payload: []byte(`{}`)},
		stream.Message{ID: "bad-1", Key: "a", Payload: []byte(`{"customer_email":"ada@example.com","n":1}`)},
		stream.Message{ID: "bad-2", Key: "b", Payload: []byte(`{"n":2}`)})
	for _, g := range []string{"g1", "g2"} {
		k.start(t, testGroup(k.topic, g), func(_ context.Context, d stream.Delivery) error {
			if strings.HasPrefix(d.ID, "bad") && (g == "g1" || d.ID == "bad-2") {
				return stream.Permanent(fmt.Errorf("cannot apply %s", d.ID))
			}
			return nil
		})
	}
	q, err := kafkastream.NewDLQReader(k.seeds, k.topic)
	if err != nil {
		t.Fatal(err)
	}
	testinfra.Eventually(t, 20*time.Second, func() error {
		all, err := q.List(t.Context(), "", 0)
		if err != nil || len(all) != 3 {
			return fmt.Errorf("%d dead letters (%w), want 3", len(all), err)
		}
		return nil
	})
	g1, err := q.List(t.Context(), "g1", 10)
	if err != nil || len(g1) != 2 {
		t.Fatalf("group g1: %+v %v, want its 2", g1, err)
	}
	for _, dl := range g1 {
		if dl.Group != "g1" || dl.ErrorClass != "permanent" || dl.Attempts != 1 || !strings.Contains(dl.Error, dl.EventID) {
			t.Errorf("dead letter %+v", dl)
		}
	}
	var out bytes.Buffer
	if err := stream.DLQCommand(t.Context(), q, []string{"list", "--group", "g2"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "bad-2") || strings.Contains(out.String(), "bad-1") {
		t.Errorf("dlq list --group g2:\n%s", out.String())
	}
	out.Reset()
	seq := strconv.FormatUint(g1[0].Seq, 10)
	if err := stream.DLQCommand(t.Context(), q, []string{"inspect", seq}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"event_id": "`+g1[0].EventID+`"`) || strings.Contains(out.String(), "ada@example.com") {
		t.Errorf("dlq inspect %s:\n%s\nwant the dead letter, personal fields redacted", seq, out.String())
	}
	for _, seq := range []uint64{0, 4, 99} { // numbered 1..3
		if _, err := q.Inspect(t.Context(), seq); !errors.Is(err, stream.ErrNotFound) {
			t.Errorf("inspect %d: %v, want ErrNotFound", seq, err)
		}
	}
	if dl, err := q.Inspect(t.Context(), 1); err != nil || dl.Seq != 1 {
		t.Errorf("inspect 1: %+v %v, want the first dead letter, numbered 1", dl, err)
	}
	if err := stream.DLQCommand(t.Context(), q, []string{"redrive", "--group", "g1"}, &out); !errors.Is(err, kafkastream.ErrNotBuilt) {
		t.Errorf("redrive: %v, want ErrNotBuilt", err)
	}
	if err := stream.DLQCommand(t.Context(), q, []string{"discard", seq, "--reason", "x", "--by", "y"}, &out); !errors.Is(err, kafkastream.ErrNotBuilt) {
		t.Errorf("discard: %v, want ErrNotBuilt", err)
	}
}
