package stream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// running is a Group's Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	t      *testing.T
}

// start runs g until the test ends or stop is called.
func start(t *testing.T, g *stream.Group) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), t: t}
	go func() { r.done <- g.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

// stop cancels Run and waits for it to return.
func (r *running) stop() {
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				r.t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			r.t.Errorf("Run did not return within 20s of its ctx ending")
		}
	})
}

// testGroup is a GroupConfig with timings short enough for tests.
func testGroup(streamName, group string) stream.GroupConfig {
	return stream.GroupConfig{
		Stream:     streamName,
		Name:       group,
		AckWait:    2 * time.Second,
		MaxDeliver: 5,
		Backoff:    backoff.Policy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		FetchWait:  200 * time.Millisecond,
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func newGroup(t *testing.T, js jetstream.JetStream, cfg stream.GroupConfig, h stream.Handler) *stream.Group {
	t.Helper()
	g, err := stream.NewGroup(js, cfg, h, testLogger(t))
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	return g
}

func publishOne(t *testing.T, pub *stream.Publisher, id, key string, headers map[string]string) stream.Ack {
	t.Helper()
	ack, err := pub.Publish(context.Background(), stream.Message{ID: id, Key: key, Payload: []byte("payload of " + id), Headers: headers})
	if err != nil {
		t.Fatalf("Publish %s: %v", id, err)
	}
	return ack
}

func TestNewGroupValidates(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	h := func(context.Context, stream.Delivery) error { return nil }
	tests := map[string]stream.GroupConfig{
		"no stream":          {Name: "g"},
		"no name":            {Stream: "S"},
		"dot in name":        {Stream: "S", Name: "a.b"},
		"short ack wait":     {Stream: "S", Name: "g", AckWait: time.Millisecond},
		"negative deliver":   {Stream: "S", Name: "g", MaxDeliver: -1},
		"start seq missing":  {Stream: "S", Name: "g", Deliver: stream.DeliverByStartSequence},
		"start time missing": {Stream: "S", Name: "g", Deliver: stream.DeliverByStartTime},
		"unknown policy":     {Stream: "S", Name: "g", Deliver: 42},
	}
	for name, cfg := range tests {
		if _, err := stream.NewGroup(nt.JS, cfg, h, nil); !errors.Is(err, stream.ErrInvalid) {
			t.Errorf("%s: NewGroup = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := stream.NewGroup(nt.JS, stream.GroupConfig{Stream: "S", Name: "g"}, nil, nil); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("nil handler: NewGroup = %v, want ErrInvalid", err)
	}
}

func TestRunRefusesWrongPartitionCount(t *testing.T) {
	t.Parallel()
	nt, name, _ := setupStream(t, 4)
	cfg := testGroup(name, "g")
	cfg.Partitions = 8
	g := newGroup(t, nt.JS, cfg, func(context.Context, stream.Delivery) error { return nil })
	if err := g.Run(context.Background()); !errors.Is(err, stream.ErrPartitionsChanged) {
		t.Fatalf("Run = %v, want ErrPartitionsChanged", err)
	}
}

// TestPerKeyOrderAcrossInstances runs two instances of one group on 8
// partitions, with some deliveries failing once, stops one instance in the
// middle, and checks that every key's versions reach the effect exactly in
// order, and all of them.
func TestPerKeyOrderAcrossInstances(t *testing.T) {
	t.Parallel()
	const keys, versions, partitions = 20, 30, 8
	nt, name, pub := setupStream(t, partitions)

	var (
		mu         sync.Mutex
		seen       = map[string]bool{} // event IDs applied (the inbox)
		last       = map[string]int{}  // key → last version applied
		byInstance = map[string]int{}  // instance → effects applied
		violations []string            // out-of-order effects
		applied    int
	)
	ctxA, cancelA := context.WithCancel(context.Background())
	handler := func(instance string) stream.Handler {
		return func(_ context.Context, d stream.Delivery) error {
			v, err := strconv.Atoi(d.Headers["Version"])
			if err != nil {
				return stream.Permanent(err)
			}
			if v%7 == 0 && d.NumDelivered == 1 {
				// Every 7th version fails once: its retry must not be
				// overtaken by the next version of its key.
				return errors.New("transient")
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[d.ID] {
				return nil // a redelivery: already applied
			}
			if v != last[d.Key]+1 {
				violations = append(violations, fmt.Sprintf("%s: version %d after %d (instance %s)", d.Key, v, last[d.Key], instance))
			}
			if want := stream.Partition(d.Key, partitions); d.Partition != want {
				violations = append(violations, fmt.Sprintf("%s read from partition %d, want %d", d.Key, d.Partition, want))
			}
			seen[d.ID], last[d.Key] = true, v
			applied++
			byInstance[instance]++
			if instance == "A" && byInstance["A"] == 40 {
				cancelA() // instance A stops in the middle of the stream
			}
			return nil
		}
	}

	// Instance B has its own connection, as another process would.
	nc2, err := nats.Connect(nt.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc2.Close)
	js2, err := jetstream.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	groupA := newGroup(t, nt.JS, testGroup(name, "proj"), handler("A"))
	groupB := newGroup(t, js2, testGroup(name, "proj"), handler("B"))
	doneA := make(chan error, 1)
	go func() { doneA <- groupA.Run(ctxA) }()
	t.Cleanup(cancelA)
	start(t, groupB)

	// Publish version by version; each round is acknowledged before the
	// next, so per key the stream holds versions 1..30 in order.
	for v := 1; v <= versions; v++ {
		batch := make([]stream.Message, 0, keys)
		for k := range keys {
			key := fmt.Sprintf("order-%d", k)
			batch = append(batch, stream.Message{
				ID: fmt.Sprintf("%s-v%d", key, v), Key: key,
				Headers: map[string]string{"Version": strconv.Itoa(v)},
			})
		}
		for i, r := range pub.PublishAsync(context.Background(), batch) {
			if r.Err != nil {
				t.Fatalf("publish %s: %v", batch[i].ID, r.Err)
			}
		}
	}

	select {
	case err := <-doneA:
		if err != nil {
			t.Fatalf("instance A: Run = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("instance A did not stop")
	}
	testinfra.Eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if applied < keys*versions {
			return fmt.Errorf("%d of %d effects applied (A %d, B %d)", applied, keys*versions, byInstance["A"], byInstance["B"])
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for _, v := range violations {
		t.Error(v)
	}
	for k := range keys {
		if key := fmt.Sprintf("order-%d", k); last[key] != versions {
			t.Errorf("%s ended at version %d, want %d", key, last[key], versions)
		}
	}
	if byInstance["A"] < 40 || byInstance["B"] == 0 {
		t.Errorf("work not shared: A %d, B %d", byInstance["A"], byInstance["B"])
	}
}

// TestTransientErrorIsRetried: a panic and an error are retried with
// backoff until the handler succeeds; the next event of the key waits.
func TestTransientErrorIsRetried(t *testing.T) {
	t.Parallel()
	nt, name, pub := setupStream(t, 2)
	type call struct {
		id           string
		numDelivered int
		traced       bool
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	type traceKey struct{}
	cfg := testGroup(name, "retry")
	cfg.Extract = func(ctx context.Context, h map[string]string) context.Context {
		return context.WithValue(ctx, traceKey{}, h["traceparent"])
	}
	g := newGroup(t, nt.JS, cfg, func(ctx context.Context, d stream.Delivery) error {
		mu.Lock()
		calls = append(calls, call{d.ID, d.NumDelivered, ctx.Value(traceKey{}) == "tp-1"})
		mu.Unlock()
		if d.ID == "e1" {
			switch d.NumDelivered {
			case 1:
				panic("boom")
			case 2:
				return errors.New("database unavailable")
			}
		}
		return nil
	})
	publishOne(t, pub, "e1", "order-1", map[string]string{"traceparent": "tp-1"})
	publishOne(t, pub, "e2", "order-1", map[string]string{"traceparent": "tp-1"})
	start(t, g)

	testinfra.Eventually(t, 15*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(calls) < 4 {
			return fmt.Errorf("calls so far: %+v", calls)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	want := []call{{"e1", 1, true}, {"e1", 2, true}, {"e1", 3, true}, {"e2", 1, true}}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("calls = %+v, want %+v", calls, want)
	}
}

// dlqSetup is a stream, a group with a metrics registry, and the DLQ tool.
type dlqSetup struct {
	nt   *testinfra.NATSPrefix
	name string
	pub  *stream.Publisher
	reg  *prometheus.Registry
	dlq  *stream.DLQ
}

func newDLQSetup(t *testing.T, partitions int) dlqSetup {
	nt, name, pub := setupStream(t, partitions)
	dlq, err := stream.NewDLQ(nt.JS, name, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return dlqSetup{nt: nt, name: name, pub: pub, reg: prometheus.NewRegistry(), dlq: dlq}
}

// counter returns the value of a counter (summed over label sets that
// include want).
func counter(t *testing.T, reg *prometheus.Registry, metric string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// keysInPartition returns n keys that share key's partition.
func keysInPartition(key string, partitions, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		k := fmt.Sprintf("other-%d", i)
		if stream.Partition(k, partitions) == stream.Partition(key, partitions) {
			out = append(out, k)
		}
	}
	return out
}

// TestPoisonMessageGoesToDLQ: a Permanent error dead-letters the message at
// once with its reason, and the other keys of its partition carry on.
func TestPoisonMessageGoesToDLQ(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newDLQSetup(t, 4)
	var (
		mu     sync.Mutex
		poison int
		done   []string
	)
	cfg := testGroup(s.name, "search")
	cfg.Registerer = s.reg
	g := newGroup(t, s.nt.JS, cfg, func(_ context.Context, d stream.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		if d.Key == "order-poison" {
			poison++
			return fmt.Errorf("decode %s: %w", d.ID, stream.Permanent(errors.New("unexpected end of JSON input\nat line 1")))
		}
		done = append(done, d.ID)
		return nil
	})
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	before := time.Now().Add(-time.Second)
	ack := publishOne(t, s.pub, "bad-1", "order-poison", map[string]string{"traceparent": tp, "Event-Type": "order.placed"})
	others := keysInPartition("order-poison", 4, 5)
	for i, k := range others {
		publishOne(t, s.pub, fmt.Sprintf("good-%d", i), k, nil)
	}
	start(t, g)

	testinfra.Eventually(t, 15*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(done) < len(others) {
			return fmt.Errorf("handled %v behind the poison message", done)
		}
		return nil
	})
	var dls []stream.DeadLetter
	testinfra.Eventually(t, 5*time.Second, func() error {
		var err error
		dls, err = s.dlq.List(ctx, "search", 10)
		if err == nil && len(dls) != 1 {
			err = fmt.Errorf("%d dead letters", len(dls))
		}
		return err
	})
	dl := dls[0]
	if dl.Group != "search" || dl.EventID != "bad-1" || dl.Key != "order-poison" || dl.ErrorClass != "permanent" || dl.Attempts != 1 ||
		dl.OriginalSubject != stream.Subject(s.name, ack.Partition) || dl.OriginalSeq != ack.Sequence ||
		string(dl.Payload) != "payload of bad-1" {
		t.Errorf("dead letter = %+v", dl)
	}
	if dl.Error != "decode bad-1: permanent: unexpected end of JSON input | at line 1" {
		t.Errorf("error header = %q", dl.Error)
	}
	if dl.FirstFailure.Before(before) || dl.FirstFailure.After(time.Now().Add(time.Second)) {
		t.Errorf("first failure %s not around now", dl.FirstFailure)
	}
	for k, want := range map[string]string{
		"traceparent": tp, "Event-Type": "order.placed",
		stream.HeaderDLQGroup: "search", stream.HeaderDLQErrorClass: "permanent", stream.HeaderDLQAttempts: "1",
		stream.HeaderDLQOriginalSequence: strconv.FormatUint(ack.Sequence, 10),
	} {
		if dl.Headers[k] != want {
			t.Errorf("header %s = %q, want %q", k, dl.Headers[k], want)
		}
	}
	if _, err := time.Parse(time.RFC3339, dl.Headers[stream.HeaderDLQFirstFailure]); err != nil {
		t.Errorf("first failure header: %v", err)
	}
	if other, _ := s.dlq.List(ctx, "payments", 10); len(other) != 0 {
		t.Errorf("List of another group = %+v, want empty", other)
	}
	mu.Lock()
	if poison != 1 {
		t.Errorf("poison handled %d times, want 1 (no retries for Permanent)", poison)
	}
	mu.Unlock()
	if got := counter(t, s.reg, "stream_dead_lettered_total", map[string]string{"group": "search", "class": "permanent"}); got != 1 {
		t.Errorf("stream_dead_lettered_total = %v, want 1", got)
	}

	// Inspect and Discard.
	got, err := s.dlq.Inspect(ctx, dl.Seq)
	if err != nil || got.EventID != "bad-1" {
		t.Errorf("Inspect = %+v, %v", got, err)
	}
	if err := s.dlq.Discard(ctx, dl.Seq, "oscar", "no audit log"); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("Discard without an audit log = %v, want ErrInvalid", err)
	}
	// The audit log: a real one is pkg/audit's table (the services wire
	// it); here a recorder, and one that fails.
	var recorded []audit.Entry
	audited := s.dlq.WithAudit(func(_ context.Context, e audit.Entry) error {
		if err := e.Check(); err != nil {
			return err
		}
		recorded = append(recorded, e)
		return nil
	})
	if err := audited.Discard(ctx, dl.Seq, "oscar", " "); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("Discard without reason = %v, want ErrInvalid", err)
	}
	if err := audited.Discard(ctx, dl.Seq, "", "why"); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("Discard without actor = %v, want ErrInvalid", err)
	}
	failing := s.dlq.WithAudit(func(context.Context, audit.Entry) error { return errors.New("database down") })
	if err := failing.Discard(ctx, dl.Seq, "oscar", "why"); err == nil {
		t.Error("Discard whose audit record failed succeeded")
	}
	if _, err := s.dlq.Inspect(ctx, dl.Seq); err != nil {
		t.Fatalf("a discard not recorded deleted the dead letter: %v", err)
	}
	if err := audited.Discard(ctx, dl.Seq, "oscar", "test: payload is garbage"); err != nil {
		t.Fatalf("Discard: %v", err)
	}
	if len(recorded) != 1 || recorded[0].Actor != "oscar" || recorded[0].Action != "stream_dlq.discard" ||
		recorded[0].Reason != "test: payload is garbage" || recorded[0].Detail["event_id"] != "bad-1" || recorded[0].Detail["group"] != "search" {
		t.Errorf("audit records %+v", recorded)
	}
	if _, err := s.dlq.Inspect(ctx, dl.Seq); !errors.Is(err, stream.ErrNotFound) {
		t.Errorf("Inspect after Discard = %v, want ErrNotFound", err)
	}
	if err := audited.Discard(ctx, dl.Seq, "oscar", "again"); !errors.Is(err, stream.ErrNotFound) {
		t.Errorf("second Discard = %v, want ErrNotFound", err)
	}

	// A replay (every partition consumer reset to the start) re-reads the
	// poison message: it fails again, and the operator's discard stands:
	// acknowledged, no second dead letter.
	for p := range 4 {
		if _, err := s.nt.JS.ResetConsumerToSequence(ctx, s.name, fmt.Sprintf("search-p%d", p), 1); err != nil {
			t.Fatalf("reset search-p%d: %v", p, err)
		}
	}
	testinfra.Eventually(t, 15*time.Second, func() error {
		if got := counter(t, s.reg, "stream_discarded_again_total", map[string]string{"group": "search"}); got != 1 {
			return fmt.Errorf("stream_discarded_again_total = %v, want 1", got)
		}
		mu.Lock()
		defer mu.Unlock()
		if poison != 2 || len(done) < 2*len(others) {
			return fmt.Errorf("after the replay: poison handled %d times, %d others", poison, len(done))
		}
		return nil
	})
	if got := counter(t, s.reg, "stream_dead_lettered_total", map[string]string{"group": "search", "class": "permanent"}); got != 1 {
		t.Errorf("stream_dead_lettered_total after the replay = %v, want 1 (the discarded message dead-lettered again)", got)
	}
	if dls, err := s.dlq.List(ctx, "search", 10); err != nil || len(dls) != 0 {
		t.Errorf("dead letters after the replay = %+v, %v; want none", dls, err)
	}
}

// TestExhaustedBudgetThenRedrive: a message that keeps failing goes to the
// DLQ as exhausted after MaxDeliver attempts; a dry-run redrive changes
// nothing; a redrive delivers it once more and empties the DLQ.
func TestExhaustedBudgetThenRedrive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newDLQSetup(t, 2)
	var (
		fixed atomic.Bool
		mu    sync.Mutex
		calls []string
	)
	cfg := testGroup(s.name, "notify")
	cfg.MaxDeliver = 3
	cfg.Registerer = s.reg
	g := newGroup(t, s.nt.JS, cfg, func(_ context.Context, d stream.Delivery) error {
		mu.Lock()
		calls = append(calls, fmt.Sprintf("%s#%d", d.ID, d.NumDelivered))
		mu.Unlock()
		if d.ID == "flaky" && !fixed.Load() {
			return errors.New("smtp: 451 try again later")
		}
		return nil
	})
	ack := publishOne(t, s.pub, "flaky", "order-7", nil)
	publishOne(t, s.pub, "next", "order-7", nil)
	start(t, g)

	waitCalls := func(n int) {
		t.Helper()
		testinfra.Eventually(t, 15*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(calls) < n {
				return fmt.Errorf("calls %v, want %d", calls, n)
			}
			return nil
		})
	}
	waitCalls(4)
	mu.Lock()
	if got, want := fmt.Sprint(calls), "[flaky#1 flaky#2 flaky#3 next#1]"; got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
	mu.Unlock()
	var dls []stream.DeadLetter
	testinfra.Eventually(t, 5*time.Second, func() error {
		var err error
		dls, err = s.dlq.List(ctx, "", 0)
		if err == nil && len(dls) != 1 {
			err = fmt.Errorf("%d dead letters", len(dls))
		}
		return err
	})
	if dl := dls[0]; dl.ErrorClass != "exhausted" || dl.Attempts != 3 || dl.Error != "smtp: 451 try again later" || dl.OriginalSeq != ack.Sequence {
		t.Errorf("dead letter = %+v", dl)
	}
	if got := counter(t, s.reg, "stream_redeliveries_total", map[string]string{"group": "notify"}); got != 2 {
		t.Errorf("stream_redeliveries_total = %v, want 2", got)
	}
	if got := counter(t, s.reg, "stream_dead_lettered_total", map[string]string{"class": "exhausted"}); got != 1 {
		t.Errorf("dead lettered exhausted = %v, want 1", got)
	}

	if _, err := s.dlq.Redrive(ctx, stream.RedriveOptions{}); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("Redrive without group = %v, want ErrInvalid", err)
	}
	msgsBefore := streamMsgs(t, s.nt.JS, s.name)
	rep, err := s.dlq.Redrive(ctx, stream.RedriveOptions{Group: "notify", DryRun: true})
	if err != nil || rep.Matched != 1 || rep.Redriven != 0 || len(rep.Seqs) != 1 || rep.Seqs[0] != dls[0].Seq {
		t.Errorf("dry run = %+v, %v", rep, err)
	}
	if rep, err := s.dlq.Redrive(ctx, stream.RedriveOptions{Group: "notify", Seqs: []uint64{dls[0].Seq + 100}}); err != nil || rep.Matched != 0 {
		t.Errorf("redrive of an unknown seq = %+v, %v", rep, err)
	}
	if after := streamMsgs(t, s.nt.JS, s.name); after != msgsBefore {
		t.Errorf("dry run published: stream went from %d to %d messages", msgsBefore, after)
	}
	if left, _ := s.dlq.List(ctx, "notify", 10); len(left) != 1 {
		t.Errorf("dry run changed the DLQ: %d dead letters", len(left))
	}

	fixed.Store(true)
	rep, err = s.dlq.Redrive(ctx, stream.RedriveOptions{Group: "notify", Seqs: []uint64{dls[0].Seq}, RatePerSecond: 10})
	if err != nil || rep.Matched != 1 || rep.Redriven != 1 {
		t.Fatalf("Redrive = %+v, %v", rep, err)
	}
	waitCalls(5)
	if left, err := s.dlq.List(ctx, "notify", 10); err != nil || len(left) != 0 {
		t.Errorf("DLQ after redrive = %+v, %v", left, err)
	}
	// A second redrive finds nothing; the redriven message kept its event
	// ID and was delivered exactly once more.
	if rep, err := s.dlq.Redrive(ctx, stream.RedriveOptions{Group: "notify"}); err != nil || rep.Matched != 0 {
		t.Errorf("second Redrive = %+v, %v", rep, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got, want := fmt.Sprint(calls), "[flaky#1 flaky#2 flaky#3 next#1 flaky#1]"; got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
	// The redrive left a tombstone for the original: a replay that fails
	// on it again does not bring the dead letter back (the discard path
	// is exercised end to end by TestPoisonMessageGoesToDLQ).
	kv, err := s.nt.JS.KeyValue(ctx, stream.DiscardedBucket(s.name))
	if err != nil {
		t.Fatalf("tombstone bucket after a redrive: %v", err)
	}
	if e, err := kv.Get(ctx, fmt.Sprintf("notify.%d", dls[0].OriginalSeq)); err != nil || !strings.Contains(string(e.Value()), `"action":"redrive"`) {
		t.Errorf("tombstone of the redriven original: %v", err)
	}
}

// TestDeadInstanceMessageMovesOn: an instance that took a message and died
// without acknowledging it (here: a raw fetch on a connection that then
// closes) does not lose it: after AckWait another instance gets it. With a
// budget of one delivery, that second delivery goes straight to the DLQ as
// exhausted, without calling the handler: a message that kills its consumer
// cannot block a partition forever.
func TestDeadInstanceMessageMovesOn(t *testing.T) {
	t.Parallel()
	for _, maxDeliver := range []int{5, 1} {
		t.Run(fmt.Sprintf("MaxDeliver=%d", maxDeliver), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := newDLQSetup(t, 1)
			var (
				mu    sync.Mutex
				calls []int
			)
			cfg := testGroup(s.name, "worker")
			cfg.MaxDeliver = maxDeliver
			g := newGroup(t, s.nt.JS, cfg, func(_ context.Context, d stream.Delivery) error {
				mu.Lock()
				calls = append(calls, d.NumDelivered)
				mu.Unlock()
				return nil
			})
			// Create the group's consumers, then stop it.
			r := start(t, g)
			testinfra.Eventually(t, 10*time.Second, func() error {
				_, err := s.nt.JS.Consumer(ctx, s.name, stream.ConsumerName("worker", 0))
				return err
			})
			r.stop()

			publishOne(t, s.pub, "e1", "k", nil)
			nc, err := nats.Connect(s.nt.URL)
			if err != nil {
				t.Fatal(err)
			}
			js, _ := jetstream.New(nc)
			c, err := js.Consumer(ctx, s.name, stream.ConsumerName("worker", 0))
			if err != nil {
				t.Fatal(err)
			}
			m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
			if err != nil {
				t.Fatalf("dead instance fetch: %v", err)
			}
			if string(m.Data()) != "payload of e1" {
				t.Fatalf("dead instance got %q", m.Data())
			}
			meta, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			// Usually 1; 2 if the stopped group's last pull request
			// outlived it by a moment and took the first delivery.
			next := int(meta.NumDelivered) + 1
			nc.Close() // dies without acknowledging

			took := time.Now()
			start(t, g)
			if maxDeliver == 1 {
				testinfra.Eventually(t, 15*time.Second, func() error {
					dls, err := s.dlq.List(ctx, "worker", 10)
					if err == nil && (len(dls) != 1 || dls[0].ErrorClass != "exhausted" || dls[0].Attempts != next) {
						err = fmt.Errorf("dead letters %+v, want one exhausted after %d attempts", dls, next)
					}
					return err
				})
				mu.Lock()
				defer mu.Unlock()
				if len(calls) != 0 {
					t.Errorf("handler called %v, want never", calls)
				}
				return
			}
			testinfra.Eventually(t, 15*time.Second, func() error {
				mu.Lock()
				defer mu.Unlock()
				if len(calls) == 0 {
					return errors.New("not redelivered yet")
				}
				return nil
			})
			if waited := time.Since(took); waited > 2*cfg.AckWait+time.Second {
				t.Errorf("redelivered after %s, want about AckWait (%s)", waited, cfg.AckWait)
			}
			mu.Lock()
			defer mu.Unlock()
			if fmt.Sprint(calls) != fmt.Sprintf("[%d]", next) {
				t.Errorf("deliveries seen = %v, want [%d]", calls, next)
			}
		})
	}
}
