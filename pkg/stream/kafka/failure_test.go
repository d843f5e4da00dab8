package kafkastream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// handled collects the deliveries a handler saw, by event ID.
type handled struct {
	mu  sync.Mutex
	got map[string][]stream.Delivery
}

func newHandled() *handled { return &handled{got: map[string][]stream.Delivery{}} }

func (h *handled) add(d stream.Delivery) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got[d.ID] = append(h.got[d.ID], d)
}

func (h *handled) of(id string) []stream.Delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]stream.Delivery(nil), h.got[id]...)
}

// waitFor polls until id was handled at least n times.
func (h *handled) waitFor(t *testing.T, id string, n int) []stream.Delivery {
	t.Helper()
	testinfra.Eventually(t, 20*time.Second, func() error {
		if got := len(h.of(id)); got < n {
			return fmt.Errorf("%s handled %d times, want %d", id, got, n)
		}
		return nil
	})
	return h.of(id)
}

// dlqHeaders reads n dead letters and returns their headers by event ID.
func dlqHeaders(t *testing.T, k kafka, n int) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, r := range consumeAll(t, k, kafkastream.DLQTopic(k.topic), n) {
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		out[h[stream.HeaderEventID]] = h
	}
	return out
}

// TestPoisonMessageGoesToDLQ: a Permanent error dead-letters the record at
// once (one call) with the reason headers, and the partition moves on: the
// next record of the same key is handled.
func TestPoisonMessageGoesToDLQ(t *testing.T) {
	t.Parallel()
	k := setup(t, 2)
	seen := newHandled()
	k.start(t, testGroup(k.topic, "g"), func(_ context.Context, d stream.Delivery) error {
		seen.add(d)
		if d.ID == "poison" {
			return stream.Permanent(errors.New("cannot decode\nline two"))
		}
		return nil
	})
	acks := k.publish(t, stream.Message{ID: "poison", Key: "k", Payload: []byte("x"), Headers: map[string]string{"traceparent": "tp"}},
		stream.Message{ID: "next", Key: "k"})
	seen.waitFor(t, "next", 1)
	if n := len(seen.of("poison")); n != 1 {
		t.Errorf("poison handled %d times, want 1", n)
	}
	h := dlqHeaders(t, k, 1)["poison"]
	want := map[string]string{
		stream.HeaderDLQGroup: "g", stream.HeaderDLQErrorClass: "permanent", stream.HeaderDLQAttempts: "1",
		stream.HeaderDLQError: "permanent: cannot decode | line two", stream.HeaderKey: "k", "traceparent": "tp",
		stream.HeaderDLQOriginalSequence:       strconv.FormatUint(acks[0].Sequence, 10),
		stream.HeaderDLQOriginalSubject:        fmt.Sprintf("%s.%d", k.topic, acks[0].Partition),
		kafkastream.HeaderDLQOriginalPartition: strconv.Itoa(acks[0].Partition),
	}
	for name, v := range want {
		if h[name] != v {
			t.Errorf("dead letter header %s = %q, want %q", name, h[name], v)
		}
	}
	if _, err := time.Parse(time.RFC3339, h[stream.HeaderDLQFirstFailure]); err != nil {
		t.Errorf("first failure header %q: %v", h[stream.HeaderDLQFirstFailure], err)
	}
}

// TestExhaustedBudgetGoesToDLQ: an error that is neither permanent nor
// infrastructure is retried up to MaxDeliver calls (NumDelivered 1..N),
// then dead-lettered as "exhausted"; the counters say so.
func TestExhaustedBudgetGoesToDLQ(t *testing.T) {
	t.Parallel()
	k := setup(t, 1)
	seen := newHandled()
	reg := prometheus.NewRegistry()
	cfg := testGroup(k.topic, "g")
	cfg.MaxDeliver = 3
	cfg.Registerer = reg
	k.start(t, cfg, func(_ context.Context, d stream.Delivery) error {
		seen.add(d)
		if d.ID == "bad" {
			return fmt.Errorf("downstream refused attempt %d", d.NumDelivered)
		}
		return nil
	})
	k.publish(t, stream.Message{ID: "bad", Key: "k"}, stream.Message{ID: "after", Key: "k"})
	seen.waitFor(t, "after", 1)
	got := seen.of("bad")
	if len(got) != 3 {
		t.Fatalf("bad handled %d times, want MaxDeliver = 3", len(got))
	}
	for i, d := range got {
		if d.NumDelivered != i+1 {
			t.Errorf("call %d: NumDelivered %d", i+1, d.NumDelivered)
		}
	}
	h := dlqHeaders(t, k, 1)["bad"]
	if h[stream.HeaderDLQErrorClass] != "exhausted" || h[stream.HeaderDLQAttempts] != "3" || h[stream.HeaderDLQError] != "downstream refused attempt 3" {
		t.Errorf("dead letter headers %v", h)
	}
	if v := metric(t, reg, "stream_kafka_dead_lettered_total", "class", "exhausted"); v != 1 {
		t.Errorf("dead_lettered_total{class=exhausted} = %v, want 1", v)
	}
	if v := metric(t, reg, "stream_kafka_redeliveries_total", "", ""); v != 2 {
		t.Errorf("redeliveries_total = %v, want 2", v)
	}
}

// metric returns the value of the series of name whose label has value
// (any series when label is empty).
func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || labelValue(m, label) == value {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestInfrastructureErrorsDoNotSpendBudget: a refused connection, many
// more times than MaxDeliver, keeps the record (NumDelivered stays 1) and
// holds the partition (the next record of the key waits); once the
// dependency is back the record is handled and nothing is dead-lettered.
func TestInfrastructureErrorsDoNotSpendBudget(t *testing.T) {
	t.Parallel()
	k := setup(t, 1)
	seen := newHandled()
	var mu sync.Mutex
	down := true
	cfg := testGroup(k.topic, "g")
	cfg.MaxDeliver = 2
	cfg.InfrastructureBackoff = cfg.Backoff
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	k.start(t, cfg, func(_ context.Context, d stream.Delivery) error {
		seen.add(d)
		mu.Lock()
		defer mu.Unlock()
		if d.ID == "first" && down {
			return fmt.Errorf("connect to database: %w", syscall.ECONNREFUSED)
		}
		return nil
	})
	k.publish(t, stream.Message{ID: "first", Key: "k"}, stream.Message{ID: "second", Key: "k"})
	calls := seen.waitFor(t, "first", 10)
	if n := len(seen.of("second")); n != 0 {
		t.Fatalf("second handled %d times while first waits on its dependency", n)
	}
	if v := metric(t, reg, "stream_kafka_partitions_waiting", "", ""); v != 1 {
		t.Errorf("partitions_waiting = %v, want 1", v)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	seen.waitFor(t, "second", 1)
	for _, d := range append(calls, seen.of("first")...) {
		if d.NumDelivered != 1 {
			t.Fatalf("NumDelivered %d: an infrastructure error spent budget", d.NumDelivered)
		}
	}
	if v := metric(t, reg, "stream_kafka_dead_lettered_total", "class", "exhausted"); v != 0 {
		t.Errorf("dead_lettered_total = %v, want 0", v)
	}
	testinfra.Eventually(t, 5*time.Second, func() error {
		if v := metric(t, reg, "stream_kafka_partitions_waiting", "", ""); v != 0 {
			return fmt.Errorf("partitions_waiting = %v", v)
		}
		return nil
	})
}

// TestRedeliveryAfterCrash: member A takes a record and never finishes it
// (its handler hangs until its ctx ends, as a process that dies would
// leave it); A stops without committing, and member B of the same group
// gets the same record again and finishes it, but only after A's handler
// has returned: the revoke waits for the in-flight record, so no record is
// handled by two members at once.
func TestRedeliveryAfterCrash(t *testing.T) {
	t.Parallel()
	k := setup(t, 1)
	seen := newHandled()
	taken := make(chan struct{})
	var once sync.Once
	var aReturned, overlap atomic.Bool
	cfg := testGroup(k.topic, "g")
	cfg.HandlerTimeout = 500 * time.Millisecond
	a := k.start(t, cfg, func(ctx context.Context, d stream.Delivery) error {
		defer aReturned.Store(true)
		seen.add(d)
		once.Do(func() { close(taken) })
		<-ctx.Done()
		return ctx.Err()
	})
	k.publish(t, stream.Message{ID: "e1", Key: "k"})
	<-taken
	b := newHandled()
	k.start(t, cfg, func(_ context.Context, d stream.Delivery) error {
		if !aReturned.Load() {
			overlap.Store(true)
		}
		b.add(d)
		return nil
	})
	a.stop()
	got := b.waitFor(t, "e1", 1)
	if got[0].Sequence != 0 || got[0].Partition != 0 || got[0].Key != "k" {
		t.Errorf("B's delivery %+v", got[0])
	}
	if overlap.Load() {
		t.Errorf("B handled the record while A's handler was still running on it")
	}
	if n := len(seen.of("e1")); n != 1 {
		t.Errorf("A handled the record %d times, want 1", n)
	}
}

// TestDeadLetterWaitsForItsTopic: while the dead-letter topic cannot take
// a dead letter (deleted under the running group, longer than one
// publish's timeout), the poison record is neither committed nor passed:
// the group tries the dead letter again and the key's next record waits.
// Once the topic is back, the dead letter is stored and the partition
// moves on.
func TestDeadLetterWaitsForItsTopic(t *testing.T) {
	t.Parallel()
	k := setup(t, 1)
	seen := newHandled()
	cfg := testGroup(k.topic, "g")
	cfg.InfrastructureBackoff = cfg.Backoff
	var logs testinfra.Buffer
	k.startLogging(t, cfg, func(_ context.Context, d stream.Delivery) error {
		seen.add(d)
		if d.ID == "poison" {
			return stream.Permanent(errors.New("cannot decode"))
		}
		return nil
	}, slog.New(slog.NewTextHandler(&logs, nil)))
	k.publish(t, stream.Message{ID: "warm-up", Key: "k"})
	seen.waitFor(t, "warm-up", 1)
	adm := kadm.NewClient(k.cl)
	if _, err := adm.DeleteTopics(context.Background(), kafkastream.DLQTopic(k.topic)); err != nil {
		t.Fatal(err)
	}
	k.publish(t, stream.Message{ID: "poison", Key: "k"}, stream.Message{ID: "next", Key: "k"})
	testinfra.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(logs.String(), "dead-letter publish failed; retrying") {
			return errors.New("no failed dead-letter publish logged yet")
		}
		return nil
	})
	if n := len(seen.of("next")); n != 0 {
		t.Fatalf("next handled while its key's dead letter could not be stored")
	}
	if err := kafkastream.EnsureTopic(context.Background(), k.cl, kafkastream.TopicConfig{Name: k.topic, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	seen.waitFor(t, "next", 1)
	if h := dlqHeaders(t, k, 1)["poison"]; h[stream.HeaderDLQErrorClass] != "permanent" {
		t.Errorf("dead letter headers %v", h)
	}
	if n := len(seen.of("poison")); n != 1 {
		t.Errorf("poison handled %d times, want 1 (the dead letter is retried, not the handler)", n)
	}
}
