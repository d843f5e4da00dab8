package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

var migrations = fstest.MapFS{
	"00001_outbox.sql": {Data: []byte("-- +goose Up\n" + outbox.Schema + outbox.PositionSchema + outbox.ParkSchema + outbox.LeaseSchema + `
-- an aggregate: its row lock orders same-key transactions, as an order row does
CREATE TABLE counters (key text PRIMARY KEY, version bigint NOT NULL);
-- +goose Down
DROP TABLE counters;
DROP TABLE outbox_leader;
DROP TABLE outbox;
`)},
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type bundle struct {
	db     *testinfra.Database
	js     jetstream.JetStream
	stream string
	ob     *outbox.Outbox
}

func setup(t *testing.T, js jetstream.JetStream, stream string) *bundle {
	t.Helper()
	ctx := context.Background()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{stream + ".>"}, Duplicates: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	return &bundle{db: testinfra.Postgres(t, migrations), js: js, stream: stream, ob: outbox.New(stream)}
}

func (b *bundle) sink() outbox.Sink {
	pub, err := stream.NewPublisher(b.js, b.stream, 4, stream.WithAckTimeout(2*time.Second))
	if err != nil {
		panic(err)
	}
	return outbox.StreamSink{b.stream: pub}
}

// emit writes one event for key in its own transaction, bumping the key's
// version under the counter's row lock, as a service bumps an aggregate.
func (b *bundle) emit(t *testing.T, key string, hold <-chan struct{}) events.Envelope {
	t.Helper()
	ctx := context.Background()
	var ev events.Envelope
	err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
		var v int64
		if err := tx.QueryRow(ctx, `INSERT INTO counters VALUES ($1, 1)
			ON CONFLICT (key) DO UPDATE SET version = counters.version + 1 RETURNING version`, key).Scan(&v); err != nil {
			return err
		}
		var err error
		ev, err = events.New("test", "widget.changed", key, 1, v, map[string]any{"key": key, "v": v}, time.Now())
		if err != nil {
			return err
		}
		if err := b.ob.Publish(ctx, tx, ev); err != nil {
			return err
		}
		if hold != nil {
			<-hold
		}
		return nil
	})
	if err != nil {
		t.Errorf("emit %s: %v", key, err)
	}
	return ev
}

// received reads the whole stream: event ids in stream order.
func (b *bundle) received(t *testing.T) []events.Envelope {
	t.Helper()
	ctx := context.Background()
	cons, err := b.js.OrderedConsumer(ctx, b.stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		t.Fatal(err)
	}
	n := int(info.CachedInfo().State.Msgs)
	var out []events.Envelope
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			ev, err := events.Unmarshal(m.Data())
			if err != nil {
				t.Fatalf("message %q: %v", m.Data(), err)
			}
			if m.Headers().Get(jetstream.MsgIDHeader) != ev.ID || m.Headers().Get(stream.HeaderEventID) != ev.ID {
				t.Fatalf("Nats-Msg-Id %q, want the event id %s", m.Headers().Get(jetstream.MsgIDHeader), ev.ID)
			}
			if want := stream.SubjectForKey(b.stream, ev.Subject, 4); m.Subject() != want {
				t.Fatalf("event for key %s on %s, want its partition %s", ev.Subject, m.Subject(), want)
			}
			out = append(out, ev)
		}
		if batch.Error() != nil {
			t.Fatal(batch.Error())
		}
	}
	return out
}

func runRelay(t *testing.T, r *outbox.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func backlog(t *testing.T, b *bundle) int64 {
	t.Helper()
	n, _, err := outbox.Backlog(context.Background(), b.db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func drained(t *testing.T, b *bundle) func() error {
	return func() error {
		if n := backlog(t, b); n != 0 {
			return fmt.Errorf("backlog %d", n)
		}
		return nil
	}
}

// checkExactlyOnceInOrder: every sent event arrived exactly once and each
// key's versions arrived strictly increasing.
func checkExactlyOnceInOrder(t *testing.T, sent []events.Envelope, got []events.Envelope) {
	t.Helper()
	want := map[string]bool{}
	for _, ev := range sent {
		want[ev.ID] = true
	}
	seen := map[string]bool{}
	last := map[string]int64{}
	for _, ev := range got {
		if seen[ev.ID] {
			t.Errorf("event %s (%s v%d) arrived twice", ev.ID, ev.Subject, ev.AggregateVersion)
		}
		seen[ev.ID] = true
		if !want[ev.ID] {
			t.Errorf("unexpected event %s", ev.ID)
		}
		if ev.AggregateVersion <= last[ev.Subject] {
			t.Errorf("key %s: v%d after v%d", ev.Subject, ev.AggregateVersion, last[ev.Subject])
		}
		last[ev.Subject] = ev.AggregateVersion
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("event %s never arrived", id)
		}
	}
}

func TestPublishBelongsToTheTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	ev, err := events.New("test", "widget.changed", "k1", 1, 1, map[string]any{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rollback := errors.New("rollback")
	err = pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
		if err := b.ob.Publish(ctx, tx, ev); err != nil {
			return err
		}
		return rollback
	})
	if !errors.Is(err, rollback) {
		t.Fatal(err)
	}
	if n := backlog(t, b); n != 0 {
		t.Fatalf("rolled-back transaction left %d outbox rows", n)
	}
	if err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error { return b.ob.Publish(ctx, tx, ev) }); err != nil {
		t.Fatal(err)
	}
	if n := backlog(t, b); n != 1 {
		t.Fatalf("committed transaction left %d outbox rows, want 1", n)
	}
	bad := ev
	bad.Type = "Not A Type"
	if err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error { return b.ob.Publish(ctx, tx, bad) }); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("invalid event: err = %v, want events.ErrInvalid", err)
	}
}
