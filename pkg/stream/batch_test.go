package stream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopfloor/shopfloor/pkg/inbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// batchMigrations are the inbox and an effect table that records every
// applied event in the order it was applied (n).
var batchMigrations = fstest.MapFS{"00001_batch.sql": {Data: []byte("-- +goose Up\n" + inbox.Schema + `
CREATE TABLE effects (
	n        bigserial PRIMARY KEY,
	key      text NOT NULL,
	version  int  NOT NULL,
	event_id text NOT NULL,
	instance text NOT NULL
);
-- +goose Down
DROP TABLE effects;
DROP TABLE inbox;
`)}}

// batchGroup is testGroup with batches of up to 32 messages.
func batchGroup(streamName, group string) stream.GroupConfig {
	cfg := testGroup(streamName, group)
	cfg.MaxBatch = 32
	return cfg
}

func newBatchGroup(t *testing.T, js jetstream.JetStream, cfg stream.GroupConfig, h stream.BatchHandler) *stream.Group {
	t.Helper()
	g, err := stream.NewBatchGroup(js, cfg, h, testLogger(t))
	if err != nil {
		t.Fatalf("NewBatchGroup: %v", err)
	}
	return g
}

// connect opens another connection to the server, as another process
// would have.
func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// batchCall is one call of a batch handler.
type batchCall struct {
	instance string
	ids      []string
	attempts []int
	err      error
}

func (c batchCall) String() string {
	parts := make([]string, len(c.ids))
	for i, id := range c.ids {
		parts[i] = fmt.Sprintf("%s#%d", id, c.attempts[i])
	}
	s := c.instance + "[" + strings.Join(parts, " ") + "]"
	if c.err != nil {
		s += " failed"
	}
	return s
}

// recorder keeps the calls of batch handlers.
type recorder struct {
	mu    sync.Mutex
	calls []batchCall
}

func (r *recorder) add(instance string, ds []stream.Delivery, err error) {
	c := batchCall{instance: instance, err: err}
	for _, d := range ds {
		c.ids = append(c.ids, d.ID)
		c.attempts = append(c.attempts, d.NumDelivered)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

func (r *recorder) snapshot() []batchCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// applier is the handler of a well-made batch consumer: one transaction
// per batch that claims the event IDs in the inbox and applies the effect
// of each first-seen event with one statement. fail, if set, may fail a
// batch before anything is written.
func applier(db *pgxpool.Pool, group, instance string, rec *recorder, fail func([]stream.Delivery) error) stream.BatchHandler {
	return func(ctx context.Context, ds []stream.Delivery) error {
		err := func() error {
			if fail != nil {
				if err := fail(ds); err != nil {
					return err
				}
			}
			return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
				ids := make([]string, len(ds))
				for i, d := range ds {
					ids[i] = d.ID
				}
				first, err := inbox.ClaimBatch(ctx, tx, group, ids)
				if err != nil {
					return err
				}
				var keys, events []string
				var versions []int
				for i, d := range ds {
					if !first[i] {
						continue
					}
					v, err := strconv.Atoi(d.Headers["Version"])
					if err != nil {
						return stream.Permanent(err)
					}
					keys, versions, events = append(keys, d.Key), append(versions, v), append(events, d.ID)
				}
				_, err = tx.Exec(ctx, `
					INSERT INTO effects (key, version, event_id, instance)
					SELECT k, v, e, $4 FROM unnest($1::text[], $2::int[], $3::text[]) WITH ORDINALITY AS t(k, v, e, i)
					ORDER BY i`, keys, versions, events, instance)
				return err
			})
		}()
		if rec != nil {
			rec.add(instance, ds, err)
		}
		return err
	}
}

// published is what a test published, in the order of the stream per key.
type published struct {
	ids  []string
	keys map[string]string // id → key
	acks map[string]stream.Ack
}

// publishVersions publishes versions from..to of keys "order-0".. in
// rounds (every key's version v, then v+1), each round acknowledged
// before the next, so the stream holds every key's versions in order.
func publishVersions(t *testing.T, pub *stream.Publisher, p *published, keys, from, to int) {
	t.Helper()
	if p.keys == nil {
		p.keys, p.acks = map[string]string{}, map[string]stream.Ack{}
	}
	for v := from; v <= to; v++ {
		batch := make([]stream.Message, 0, keys)
		for k := range keys {
			key := fmt.Sprintf("order-%d", k)
			id := fmt.Sprintf("%s-v%d", key, v)
			batch = append(batch, stream.Message{
				ID: id, Key: key, Payload: []byte("payload of " + id),
				Headers: map[string]string{"Version": strconv.Itoa(v), "Event-Type": "order.updated",
					"traceparent": fmt.Sprintf("00-%032x-%016x-01", v*1000+k+1, k+1)},
			})
		}
		for i, r := range pub.PublishAsync(context.Background(), batch) {
			if r.Err != nil {
				t.Fatalf("publish %s: %v", batch[i].ID, r.Err)
			}
			p.ids = append(p.ids, batch[i].ID)
			p.keys[batch[i].ID] = batch[i].Key
			p.acks[batch[i].ID] = r.Ack
		}
	}
}

type effect struct {
	key, eventID, instance string
	version                int
}

func effects(t *testing.T, db *pgxpool.Pool) []effect {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT key, version, event_id, instance FROM effects ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (effect, error) {
		var e effect
		err := r.Scan(&e.key, &e.version, &e.eventID, &e.instance)
		return e, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitEffects waits until n effects are applied.
func waitEffects(t *testing.T, db *pgxpool.Pool, n int, within time.Duration) {
	t.Helper()
	testinfra.Eventually(t, within, func() error {
		var got int
		if err := db.QueryRow(context.Background(), `SELECT count(*) FROM effects`).Scan(&got); err != nil {
			return err
		}
		if got < n {
			return fmt.Errorf("%d of %d effects applied", got, n)
		}
		return nil
	})
}

// checkEffects: every published event but the skipped ones is applied
// exactly once, and each key's events in the order they were published.
func checkEffects(t *testing.T, db *pgxpool.Pool, p *published, skipped ...string) []effect {
	t.Helper()
	want := map[string][]string{}
	for _, id := range p.ids {
		if !slices.Contains(skipped, id) {
			want[p.keys[id]] = append(want[p.keys[id]], id)
		}
	}
	got := map[string][]string{}
	es := effects(t, db)
	for _, e := range es {
		got[e.key] = append(got[e.key], e.eventID)
	}
	for key, ids := range want {
		if !slices.Equal(got[key], ids) {
			t.Errorf("effects of %s applied as\n  %v\nwant\n  %v", key, got[key], ids)
		}
	}
	for key := range got {
		if _, ok := want[key]; !ok {
			t.Errorf("effects of unexpected key %s: %v", key, got[key])
		}
	}
	return es
}

func consumerInfo(t *testing.T, js jetstream.JetStream, streamName, group string, p int) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(context.Background(), streamName, stream.ConsumerName(group, p))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// histogram returns the sample count and sum of a histogram (summed over
// label sets that include want).
func histogram(t *testing.T, reg *prometheus.Registry, metric string, want map[string]string) (count uint64, sum float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
					continue next
				}
			}
			count += m.GetHistogram().GetSampleCount()
			sum += m.GetHistogram().GetSampleSum()
		}
	}
	return count, sum
}

func TestNewBatchGroupValidates(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	h := func(context.Context, []stream.Delivery) error { return nil }
	for _, n := range []int{-1, stream.MaxBatchLimit + 1} {
		if _, err := stream.NewBatchGroup(nt.JS, stream.GroupConfig{Stream: "S", Name: "g", MaxBatch: n}, h, nil); !errors.Is(err, stream.ErrInvalid) {
			t.Errorf("MaxBatch %d: NewBatchGroup = %v, want ErrInvalid", n, err)
		}
	}
	if _, err := stream.NewBatchGroup(nt.JS, stream.GroupConfig{Stream: "S", Name: "g", MaxBatch: 8}, nil, nil); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("nil handler: NewBatchGroup = %v, want ErrInvalid", err)
	}
	if _, err := stream.NewBatchGroup(nil, stream.GroupConfig{Stream: "S", Name: "g"}, h, nil); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("nil JetStream: NewBatchGroup = %v, want ErrInvalid", err)
	}
	one := func(context.Context, stream.Delivery) error { return nil }
	if _, err := stream.NewGroup(nt.JS, stream.GroupConfig{Stream: "S", Name: "g", MaxBatch: 2}, one, nil); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("NewGroup with MaxBatch 2 = %v, want ErrInvalid", err)
	}
	for _, n := range []int{0, 1, stream.MaxBatchLimit} {
		if _, err := stream.NewBatchGroup(nt.JS, stream.GroupConfig{Stream: "S", Name: "g", MaxBatch: n}, h, nil); err != nil {
			t.Errorf("MaxBatch %d: NewBatchGroup = %v", n, err)
		}
	}
}

// TestBatchGroupKeepsPerKeyOrderAcrossInstances runs two instances of a
// batch group on 4 partitions while many keys' events are published
// interleaved, and checks that every event is applied once, each key's in
// order, and that the handler really got batches.
func TestBatchGroupKeepsPerKeyOrderAcrossInstances(t *testing.T) {
	t.Parallel()
	const keys, versions, partitions = 40, 25, 4
	nt, name, pub := setupStream(t, partitions)
	db := testinfra.Postgres(t, batchMigrations)
	reg := prometheus.NewRegistry()
	rec := &recorder{}
	_, js2 := connect(t, nt.URL)
	for _, inst := range []struct {
		name string
		js   jetstream.JetStream
	}{{"A", nt.JS}, {"B", js2}} {
		cfg := batchGroup(name, "proj")
		cfg.Registerer = reg
		start(t, newBatchGroup(t, inst.js, cfg, applier(db.Pool, "proj", inst.name, rec, nil)))
	}
	var p published
	publishVersions(t, pub, &p, keys, 1, versions)
	waitEffects(t, db.Pool, keys*versions, 60*time.Second)
	checkEffects(t, db.Pool, &p)

	largest := 0
	for _, c := range rec.snapshot() {
		largest = max(largest, len(c.ids))
	}
	if largest < 2 {
		t.Errorf("largest batch %d: the handler never got more than one message", largest)
	}
	if largest > 32 {
		t.Errorf("largest batch %d, above MaxBatch 32", largest)
	}
	labels := map[string]string{"group": "proj"}
	if got := counter(t, reg, "stream_handler_duration_seconds", map[string]string{"group": "proj", "outcome": "ack"}); got < keys*versions {
		t.Errorf("ack outcomes = %v, want at least one per message (%d)", got, keys*versions)
	}
	calls, msgs := histogram(t, reg, "stream_handler_batch_size_messages", labels)
	if msgs < keys*versions || float64(calls) >= msgs {
		t.Errorf("batch size histogram: %d calls for %v messages; want batches of more than one", calls, msgs)
	}
	for p := range partitions {
		info := consumerInfo(t, nt.JS, name, "proj", p)
		if c := info.Config; c.MaxAckPending != 32 || c.PriorityPolicy != jetstream.PriorityPolicyPinned {
			t.Errorf("consumer %s: MaxAckPending %d, priority policy %v; want 32, pinned", info.Name, c.MaxAckPending, c.PriorityPolicy)
		}
	}
}

// TestBatchTransientFailureIsRetriedInProcess: one message in the middle of
// a batch fails twice. The batch is handled again one message at a time;
// the messages before it are applied and acknowledged once, it is retried
// in-process (no broker redelivery) and then applied, and the messages
// after it are applied after it, never before.
func TestBatchTransientFailureIsRetriedInProcess(t *testing.T) {
	t.Parallel()
	nt, name, pub := setupStream(t, 1)
	db := testinfra.Postgres(t, batchMigrations)
	reg := prometheus.NewRegistry()
	rec := &recorder{}
	var p published
	publishVersions(t, pub, &p, 4, 1, 5) // 20 messages, one partition
	failing := p.ids[9]
	cfg := batchGroup(name, "proj")
	cfg.Registerer = reg
	start(t, newBatchGroup(t, nt.JS, cfg, applier(db.Pool, "proj", "A", rec, func(ds []stream.Delivery) error {
		for _, d := range ds {
			if d.ID == failing && d.NumDelivered < 3 {
				return errors.New("database unavailable")
			}
		}
		return nil
	})))
	waitEffects(t, db.Pool, len(p.ids), 30*time.Second)
	es := checkEffects(t, db.Pool, &p)
	if len(es) != len(p.ids) {
		t.Fatalf("%d effects for %d events", len(es), len(p.ids))
	}
	// One partition: the effects are in stream order.
	for i, e := range es {
		if e.eventID != p.ids[i] {
			t.Fatalf("effect %d is %s, want %s (stream order)", i, e.eventID, p.ids[i])
		}
	}

	calls := rec.snapshot()
	t.Logf("calls: %v", calls)
	batchFailed, done := false, false
	var alone []int
	for _, c := range calls {
		i := slices.Index(c.ids, failing)
		switch {
		case i >= 0 && len(c.ids) > 1 && c.err != nil:
			batchFailed = true
		case i >= 0 && len(c.ids) > 1:
			t.Errorf("%v: the failing message was applied in a batch, not alone", c)
		case i == 0:
			alone = append(alone, c.attempts[0])
			done = c.err == nil
		case !done && c.err == nil && slices.ContainsFunc(c.ids, func(id string) bool { return slices.Index(p.ids, id) > 9 }):
			t.Errorf("%v: a later message was applied before %s", c, failing)
		}
	}
	if !batchFailed {
		t.Errorf("the failing message was never in a batch of more than one message: %v", calls)
	}
	if !slices.Equal(alone, []int{1, 2, 3}) || !done {
		t.Errorf("the failing message was handled alone with attempts %v (done %v), want [1 2 3]", alone, done)
	}
	testinfra.Eventually(t, 5*time.Second, func() error {
		info := consumerInfo(t, nt.JS, name, "proj", 0)
		if info.NumAckPending != 0 || info.NumRedelivered != 0 || info.AckFloor.Stream != p.acks[p.ids[len(p.ids)-1]].Sequence {
			return fmt.Errorf("consumer: %d ack pending, %d redelivered, ack floor %d", info.NumAckPending, info.NumRedelivered, info.AckFloor.Stream)
		}
		return nil
	})
	if got := counter(t, reg, "stream_redeliveries_total", map[string]string{"group": "proj"}); got != 2 {
		t.Errorf("stream_redeliveries_total = %v, want 2 (the in-process retries)", got)
	}
	if got := counter(t, reg, "stream_handler_duration_seconds", map[string]string{"outcome": "retry"}); got != 2 {
		t.Errorf("retry outcomes = %v, want 2", got)
	}
	if got := counter(t, reg, "stream_handler_duration_seconds", map[string]string{"outcome": "ack"}); got != float64(len(p.ids)) {
		t.Errorf("ack outcomes = %v, want %d (one per message)", got, len(p.ids))
	}
}

// TestBatchGroupContinuesAnExistingGroup: a group switches from NewGroup to
// NewBatchGroup and back (all instances stopped in between). The broker
// accepts the changed consumers (MaxAckPending, priority policy) and the
// group keeps its position each time.
func TestBatchGroupContinuesAnExistingGroup(t *testing.T) {
	t.Parallel()
	nt, name, pub := setupStream(t, 2)
	var (
		mu   sync.Mutex
		seen []string
	)
	record := func(ids ...string) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, ids...)
	}
	waitSeen := func(want []string) {
		t.Helper()
		testinfra.Eventually(t, 15*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			got := slices.Sorted(slices.Values(seen))
			if !slices.Equal(got, slices.Sorted(slices.Values(want))) {
				return fmt.Errorf("seen %v, want %v", got, want)
			}
			return nil
		})
		mu.Lock()
		seen = nil
		mu.Unlock()
	}
	publish := func(from, to int) []string {
		var ids []string
		for i := from; i <= to; i++ {
			id := "e" + strconv.Itoa(i)
			publishOne(t, pub, id, "order-"+strconv.Itoa(i%3), nil)
			ids = append(ids, id)
		}
		return ids
	}
	checkConsumers := func(maxAckPending int, policy jetstream.PriorityPolicy) {
		t.Helper()
		for p := range 2 {
			c := consumerInfo(t, nt.JS, name, "proj", p).Config
			if c.MaxAckPending != maxAckPending || c.PriorityPolicy != policy {
				t.Errorf("partition %d: MaxAckPending %d, policy %v; want %d, %v", p, c.MaxAckPending, c.PriorityPolicy, maxAckPending, policy)
			}
		}
	}
	single := func(_ context.Context, d stream.Delivery) error { record(d.ID); return nil }
	batch := func(_ context.Context, ds []stream.Delivery) error {
		for _, d := range ds {
			record(d.ID)
		}
		return nil
	}

	r := start(t, newGroup(t, nt.JS, testGroup(name, "proj"), single))
	waitSeen(publish(1, 6))
	r.stop()
	checkConsumers(1, jetstream.PriorityPolicyNone)

	cfg := batchGroup(name, "proj")
	cfg.MaxBatch = 8
	r = start(t, newBatchGroup(t, nt.JS, cfg, batch))
	waitSeen(publish(7, 12))
	checkConsumers(8, jetstream.PriorityPolicyPinned)
	r.stop()

	r = start(t, newGroup(t, nt.JS, testGroup(name, "proj"), single))
	waitSeen(publish(13, 15))
	checkConsumers(1, jetstream.PriorityPolicyNone)
	r.stop()
}

// TestBatchGroupTracing: a call with several messages gets a new trace whose
// span links to every message's trace context; a call with one message a
// child span of the message's trace.
func TestBatchGroupTracing(t *testing.T) {
	t.Parallel()
	nt, name, pub := setupStream(t, 1)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	prop := propagation.TraceContext{}
	traceOf := map[string]trace.TraceID{} // event ID → trace
	msg := func(i int) stream.Message {
		id := "e" + strconv.Itoa(i)
		tid := trace.TraceID{0xab, byte(i)}
		traceOf[id] = tid
		return stream.Message{ID: id, Key: "order-1", Headers: map[string]string{"traceparent": fmt.Sprintf("00-%s-%016x-01", tid, i)}}
	}
	for i := 1; i <= 5; i++ {
		if _, err := pub.Publish(context.Background(), msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := batchGroup(name, "traced")
	cfg.Tracer = tp.Tracer("test")
	cfg.Extract = func(ctx context.Context, h map[string]string) context.Context {
		return prop.Extract(ctx, propagation.MapCarrier(h))
	}
	var (
		mu    sync.Mutex
		calls [][]string
	)
	start(t, newBatchGroup(t, nt.JS, cfg, func(_ context.Context, ds []stream.Delivery) error {
		ids := make([]string, len(ds))
		for i, d := range ds {
			ids[i] = d.ID
		}
		mu.Lock()
		calls = append(calls, ids)
		mu.Unlock()
		return nil
	}))
	last := msg(6)
	waitCalls := func(n int) {
		testinfra.Eventually(t, 15*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if got := len(slices.Concat(calls...)); got < n {
				return fmt.Errorf("%d of %d messages handled", got, n)
			}
			return nil
		})
	}
	waitCalls(5)
	if _, err := pub.Publish(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	waitCalls(6)
	testinfra.Eventually(t, 5*time.Second, func() error {
		if n := len(spans.Ended()); n != len(calls) {
			return fmt.Errorf("%d spans for %d calls", n, len(calls))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	batched := false
	for i, s := range spans.Ended() {
		ids := calls[i]
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		if s.Name() != "process "+name || s.SpanKind() != trace.SpanKindConsumer || attrs["messaging.consumer.group.name"] != "traced" {
			t.Errorf("span %q kind %v attrs %v", s.Name(), s.SpanKind(), attrs)
		}
		if len(ids) == 1 {
			if s.Parent().TraceID() != traceOf[ids[0]] || attrs["messaging.message.id"] != ids[0] {
				t.Errorf("span of %s: parent trace %s, attrs %v; want a child of %s", ids[0], s.Parent().TraceID(), attrs, traceOf[ids[0]])
			}
			continue
		}
		batched = true
		var linked []trace.TraceID
		for _, l := range s.Links() {
			linked = append(linked, l.SpanContext.TraceID())
		}
		var want []trace.TraceID
		for _, id := range ids {
			want = append(want, traceOf[id])
		}
		if !slices.Equal(linked, want) || s.Parent().IsValid() || attrs["messaging.batch.message_count"] != strconv.Itoa(len(ids)) {
			t.Errorf("span of %v: links %v, parent %v, attrs %v; want a root with links %v", ids, linked, s.Parent(), attrs, want)
		}
	}
	if !batched {
		t.Errorf("no call with several messages: %v", calls)
	}
}
