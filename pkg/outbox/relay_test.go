package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

var fast = outbox.RelayConfig{
	PollInterval: 50 * time.Millisecond,
	LeaderRetry:  50 * time.Millisecond,
	Backoff:      backoff.Policy{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	BatchSize:    50,
}

func newRelay(t *testing.T, b *bundle, sink outbox.Sink, cfg outbox.RelayConfig) *outbox.Relay {
	t.Helper()
	return newRelayOn(t, b.db.Pool, sink, cfg)
}

// TestRelayPublishesLateCommits is the classic trap: row 1 is inserted
// first but commits after row 2 was published. A relay that reads
// "id > last published" would skip row 1 forever.
func TestRelayPublishesLateCommits(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	runRelay(t, newRelay(t, b, b.sink(), fast))

	hold := make(chan struct{})
	slow := make(chan events.Envelope)
	go func() { slow <- b.emit(t, "a", hold) }() // id 1, open
	testinfra.Eventually(t, 10*time.Second, func() error {
		// Wait until the slow transaction has its row (id 1) in flight:
		// the identity sequence has advanced past it.
		var last int64
		err := b.db.Pool.QueryRow(context.Background(), `SELECT coalesce(last_value, 0) FROM pg_sequences WHERE sequencename = 'outbox_id_seq'`).Scan(&last)
		if err != nil || last < 1 {
			return fmt.Errorf("slow transaction has not inserted yet (%d): %w", last, err)
		}
		return nil
	})
	fastEv := b.emit(t, "b", nil) // id 2, committed
	testinfra.Eventually(t, 10*time.Second, func() error {
		if got := b.received(t); len(got) != 1 || got[0].ID != fastEv.ID {
			return fmt.Errorf("received %d events, want the committed one", len(got))
		}
		return nil
	})
	close(hold) // id 1 commits now, after id 2 was published
	slowEv := <-slow
	testinfra.Eventually(t, 10*time.Second, drained(t, b))
	checkExactlyOnceInOrder(t, []events.Envelope{fastEv, slowEv}, b.received(t))
}

// TestRelayConcurrentWriters: many writers with interleaved commits on
// shared keys; every event arrives exactly once and in order per key.
func TestRelayConcurrentWriters(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	runRelay(t, newRelay(t, b, b.sink(), fast))

	const writers, perWriter, keys = 8, 40, 12
	var (
		mu   sync.Mutex
		sent []events.Envelope
		wg   sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range perWriter {
				ev := b.emit(t, "key-"+strconv.Itoa(rng.IntN(keys)), nil)
				mu.Lock()
				sent = append(sent, ev)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	testinfra.Eventually(t, 30*time.Second, drained(t, b))
	got := b.received(t)
	if len(got) != writers*perWriter {
		t.Errorf("received %d events, want %d", len(got), writers*perWriter)
	}
	checkExactlyOnceInOrder(t, sent, got)
}

// crashingSink publishes for real, then reports failure for everything, as
// if the relay crashed after the broker's ack and before marking the rows.
type crashingSink struct {
	outbox.Sink
	mu      sync.Mutex
	crashes int
}

func (s *crashingSink) PublishAll(ctx context.Context, msgs []outbox.Message) []outbox.Published {
	res := s.Sink.PublishAll(ctx, msgs)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.crashes > 0 {
		s.crashes--
		for i := range res {
			res[i] = outbox.Published{Err: errors.New("relay crashed before marking")}
		}
	}
	return res
}

// TestRelayCrashAfterPublishDuplicatesAreDropped: rows published but not
// marked are published again; the broker drops the duplicates.
func TestRelayCrashAfterPublishDuplicatesAreDropped(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	var sent []events.Envelope
	for i := range 30 {
		sent = append(sent, b.emit(t, "k"+strconv.Itoa(i%5), nil))
	}
	reg := prometheus.NewRegistry()
	cfg := fast
	cfg.Registerer = reg
	runRelay(t, newRelay(t, b, &crashingSink{Sink: b.sink(), crashes: 3}, cfg))
	testinfra.Eventually(t, 30*time.Second, drained(t, b))
	checkExactlyOnceInOrder(t, sent, b.received(t))
	if n := metric(t, reg, "outbox_publish_errors_total"); n < 3 {
		t.Errorf("outbox_publish_errors_total = %v, want ≥ 3", n)
	}
}

// TestRelayBrokerOutage: with the broker down rows accumulate and nothing
// is lost; the backlog drains when it returns.
func TestRelayBrokerOutage(t *testing.T) {
	t.Parallel()
	srv := testinfra.NewNATSServer(t, testinfra.NATSServerOptions{SyncAlways: true})
	_, js := srv.Connect()
	b := setup(t, js, "OUT")
	reg := prometheus.NewRegistry()
	cfg := fast
	cfg.Registerer = reg
	runRelay(t, newRelay(t, b, b.sink(), cfg))

	var sent []events.Envelope
	sent = append(sent, b.emit(t, "k1", nil))
	testinfra.Eventually(t, 10*time.Second, drained(t, b))

	srv.Stop()
	for i := range 20 {
		sent = append(sent, b.emit(t, "k"+strconv.Itoa(i%3), nil))
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if n := metric(t, reg, "outbox_backlog_rows"); n != 20 {
			return fmt.Errorf("backlog gauge %v, want 20 while the broker is down", n)
		}
		if metric(t, reg, "outbox_publish_errors_total") == 0 {
			return errors.New("no publish error recorded")
		}
		return nil
	})
	srv.Start()
	testinfra.Eventually(t, 30*time.Second, drained(t, b))
	testinfra.Eventually(t, 10*time.Second, func() error {
		if n := metric(t, reg, "outbox_backlog_rows"); n != 0 {
			return fmt.Errorf("backlog gauge %v after draining", n)
		}
		return nil
	})
	checkExactlyOnceInOrder(t, sent, b.received(t))
}

// TestStandbyRelayTakesOverWhenTheLeaderStops: one leader at a time; when it stops, the standby takes
// over and publishes what follows.
func TestStandbyRelayTakesOverWhenTheLeaderStops(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	r1, r2 := newRelay(t, b, b.sink(), fast), newRelay(t, b, b.sink(), fast)
	stop1 := runRelay(t, r1)
	testinfra.Eventually(t, 10*time.Second, func() error {
		if !r1.IsLeader() {
			return errors.New("first relay not leader")
		}
		return nil
	})
	runRelay(t, r2)
	sent := []events.Envelope{b.emit(t, "k", nil)}
	testinfra.Eventually(t, 10*time.Second, drained(t, b))
	if r2.IsLeader() {
		t.Fatal("two leaders at once")
	}
	stop1()
	testinfra.Eventually(t, 10*time.Second, func() error {
		if !r2.IsLeader() {
			return errors.New("standby did not take over")
		}
		return nil
	})
	sent = append(sent, b.emit(t, "k", nil))
	testinfra.Eventually(t, 10*time.Second, drained(t, b))
	checkExactlyOnceInOrder(t, sent, b.received(t))
}

// TestRelayPrunesAfterRetention: published rows are deleted after the
// retention window, unpublished ones never.
func TestRelayPrunesAfterRetention(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	for i := range 5 {
		b.emit(t, "k"+strconv.Itoa(i), nil)
	}
	cfg := fast
	cfg.Retention = time.Millisecond
	cfg.PruneInterval = time.Millisecond
	cfg.PruneBatch = 2
	runRelay(t, newRelay(t, b, b.sink(), cfg))
	testinfra.Eventually(t, 10*time.Second, func() error {
		var n int
		if err := b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("%d rows left", n)
		}
		return nil
	})
	if got := b.received(t); len(got) != 5 {
		t.Fatalf("received %d events, want 5 before pruning", len(got))
	}
}

func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
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
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// TestRepublishAfterBrokerDataLoss: a broker that lost acknowledged
// messages (here: the stream is purged) gets them again from the outbox's
// retained rows, in order.
func TestRepublishAfterBrokerDataLoss(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	var sent []events.Envelope
	for i := range 10 {
		sent = append(sent, b.emit(t, "k"+strconv.Itoa(i%2), nil))
	}
	since := time.Now().Add(-time.Hour)
	runRelay(t, newRelay(t, b, b.sink(), fast))
	testinfra.Eventually(t, 10*time.Second, drained(t, b))
	// The broker loses its data, dedup state included: delete the stream
	// and create it empty.
	if err := b.js.DeleteStream(ctx, b.stream); err != nil {
		t.Fatal(err)
	}
	// The server removes the old store asynchronously: creating the
	// stream again can fail for a moment ("error creating store").
	testinfra.Eventually(t, 10*time.Second, func() error {
		_, err := b.js.CreateStream(ctx, jetstream.StreamConfig{Name: b.stream, Subjects: []string{b.stream + ".>"}})
		return err
	})
	n, err := outbox.Republish(ctx, b.db.Pool, since)
	if err != nil || n != 10 {
		t.Fatalf("Republish = %d, %v; want 10 rows", n, err)
	}
	testinfra.Eventually(t, 10*time.Second, drained(t, b))
	checkExactlyOnceInOrder(t, sent, b.received(t))
}

// countingSink counts the publishes of each event id.
type countingSink struct {
	outbox.Sink
	mu sync.Mutex
	n  map[string]int
}

func (s *countingSink) PublishAll(ctx context.Context, msgs []outbox.Message) []outbox.Published {
	s.mu.Lock()
	for _, m := range msgs {
		s.n[m.ID]++
	}
	s.mu.Unlock()
	return s.Sink.PublishAll(ctx, msgs)
}

// TestRelayMarkingOverlapsNextBatch: the relay marks a batch published
// while it reads and publishes the next one; the next read must leave the
// rows being marked out, or each would be published twice (the broker
// would drop the copy, which hides the waste from consumers, so this
// counts what the relay sends).
func TestRelayMarkingOverlapsNextBatch(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	var sent []events.Envelope
	for i := range 600 {
		sent = append(sent, b.emit(t, "key-"+strconv.Itoa(i%37), nil))
	}
	sink := &countingSink{Sink: b.sink(), n: map[string]int{}}
	runRelay(t, newRelay(t, b, sink, fast))
	testinfra.Eventually(t, 30*time.Second, drained(t, b))
	checkExactlyOnceInOrder(t, sent, b.received(t))
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for id, n := range sink.n {
		if n != 1 {
			t.Errorf("event %s published %d times in a healthy run, want 1", id, n)
		}
	}
	if len(sink.n) != len(sent) {
		t.Errorf("%d events published, want %d", len(sink.n), len(sent))
	}
}

// flakyKeySink fails the first publish of one key's messages.
type flakyKeySink struct {
	outbox.Sink
	key    string
	mu     sync.Mutex
	failed bool
}

func (s *flakyKeySink) PublishAll(ctx context.Context, msgs []outbox.Message) []outbox.Published {
	s.mu.Lock()
	fail := -1
	if !s.failed {
		for i, m := range msgs {
			if m.Key == s.key {
				fail, s.failed = i, true
				break
			}
		}
	}
	s.mu.Unlock()
	if fail < 0 {
		return s.Sink.PublishAll(ctx, msgs)
	}
	rest := append(append([]outbox.Message{}, msgs[:fail]...), msgs[fail+1:]...)
	res := s.Sink.PublishAll(ctx, rest)
	return append(append(append([]outbox.Published{}, res[:fail]...), outbox.Published{Err: errors.New("broker refused")}), res[fail:]...)
}

// TestRelayFailedKeyKeepsOrderAcrossReadAhead: while a full batch is
// published the relay reads the next one; when a key fails in the batch,
// that read (which holds the key's later rows) must not be published
// before the failed row is, or the key's events would arrive out of order.
func TestRelayFailedKeyKeepsOrderAcrossReadAhead(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	var sent []events.Envelope
	for i := range 400 {
		sent = append(sent, b.emit(t, "key-"+strconv.Itoa(i%7), nil))
	}
	runRelay(t, newRelay(t, b, &flakyKeySink{Sink: b.sink(), key: "key-3"}, fast))
	testinfra.Eventually(t, 30*time.Second, drained(t, b))
	checkExactlyOnceInOrder(t, sent, b.received(t))
}

// TestRelayReaderConnectionLost: the leader's reader connection is
// terminated; the relay leads again on new connections and publishes what
// comes next.
func TestRelayReaderConnectionLost(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	r := newRelay(t, b, b.sink(), fast)
	runRelay(t, r)
	sent := []events.Envelope{b.emit(t, "k", nil)}
	testinfra.Eventually(t, 10*time.Second, drained(t, b))

	var killed int
	if err := b.db.Pool.QueryRow(context.Background(), `
		SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%id <> ALL%'`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d reader sessions, want 1", killed)
	}
	for i := range 3 {
		sent = append(sent, b.emit(t, "k", nil))
		if i == 0 {
			time.Sleep(100 * time.Millisecond) // the relay meets the dead connection
		}
	}
	testinfra.Eventually(t, 10*time.Second, drained(t, b))
	checkExactlyOnceInOrder(t, sent, b.received(t))
	testinfra.Eventually(t, 10*time.Second, func() error {
		if !r.IsLeader() {
			return errors.New("relay is not leader again")
		}
		return nil
	})
}

// TestRelayRecordsWhereEachRowWent: once published, each row knows its
// partition and stream sequence, and the message at that sequence is
// that row's event on that partition's subject (the order timeline's
// "published" step reads this through Events, oldest first).
func TestRelayRecordsWhereEachRowWent(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	sent := map[string][]events.Envelope{}
	for i := range 12 {
		k := "key-" + strconv.Itoa(i%3)
		sent[k] = append(sent[k], b.emit(t, k, nil))
	}
	ctx := context.Background()
	// Before the relay: waiting, no position.
	recs, err := outbox.Events(ctx, b.db.Pool, "key-0", 10)
	if err != nil || len(recs) != 4 || recs[0].PublishedAt != nil || recs[0].Partition != nil || recs[0].Sequence != nil {
		t.Fatalf("before the relay: %+v, %v", recs, err)
	}
	runRelay(t, newRelay(t, b, b.sink(), fast))
	testinfra.Eventually(t, 30*time.Second, drained(t, b))
	st, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		t.Fatal(err)
	}
	for k, evs := range sent {
		recs, err := outbox.Events(ctx, b.db.Pool, k, 10)
		if err != nil || len(recs) != len(evs) {
			t.Fatalf("%s: %d records, %v; want %d", k, len(recs), err, len(evs))
		}
		for i, rec := range recs {
			if rec.EventID != evs[i].ID || rec.Type != "widget.changed" || rec.PublishedAt == nil || rec.Partition == nil || rec.Sequence == nil {
				t.Fatalf("%s #%d: %+v, want event %s published with its position", k, i, rec, evs[i].ID)
			}
			msg, err := st.GetMsg(ctx, uint64(*rec.Sequence))
			if err != nil {
				t.Fatalf("%s #%d: sequence %d: %v", k, i, *rec.Sequence, err)
			}
			if msg.Header.Get(jetstream.MsgIDHeader) != rec.EventID || msg.Subject != stream.Subject(b.stream, *rec.Partition) {
				t.Errorf("%s #%d: sequence %d holds %s on %s, want %s on %s", k, i, *rec.Sequence,
					msg.Header.Get(jetstream.MsgIDHeader), msg.Subject, rec.EventID, stream.Subject(b.stream, *rec.Partition))
			}
			if *rec.Partition != stream.Partition(k, 4) {
				t.Errorf("%s #%d: partition %d, want the key's %d", k, i, *rec.Partition, stream.Partition(k, 4))
			}
		}
	}
}
