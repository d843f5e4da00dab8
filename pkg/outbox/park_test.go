package outbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// refusingSink refuses every message of one key while refusing is set
// (with err), and passes the rest to the broker.
type refusingSink struct {
	outbox.Sink
	key      string
	err      error
	refusing atomic.Bool
	refused  atomic.Int64
}

func (s *refusingSink) PublishAll(ctx context.Context, msgs []outbox.Message) []outbox.Published {
	var pass []outbox.Message
	var at []int
	out := make([]outbox.Published, len(msgs))
	for i, m := range msgs {
		if m.Key == s.key && s.refusing.Load() {
			out[i].Err = s.err
			s.refused.Add(1)
			continue
		}
		pass, at = append(pass, m), append(at, i)
	}
	for j, r := range s.Sink.PublishAll(ctx, pass) {
		out[at[j]] = r
	}
	return out
}

// rowState is an outbox row's relay state.
type rowState struct {
	published, parked bool
	attempts          int
	lastError         string
}

func rowOf(t *testing.T, b *bundle, eventID string) rowState {
	t.Helper()
	var s rowState
	if err := b.db.Pool.QueryRow(context.Background(), `SELECT published_at IS NOT NULL, parked_at IS NOT NULL, attempts, coalesce(last_error, '')
		FROM outbox WHERE event_id = $1`, eventID).Scan(&s.published, &s.parked, &s.attempts, &s.lastError); err != nil {
		t.Fatal(err)
	}
	return s
}

// allPublished: every event of evs is marked published.
func allPublished(t *testing.T, b *bundle, evs []events.Envelope) error {
	t.Helper()
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	var waiting int
	if err := b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE event_id = ANY($1) AND published_at IS NULL`, ids).Scan(&waiting); err != nil {
		return err
	}
	if waiting > 0 {
		return fmt.Errorf("%d of %d events not published", waiting, len(evs))
	}
	return nil
}

func publishedIDs(t *testing.T, b *bundle) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	for _, ev := range b.received(t) {
		got[ev.ID] = true
	}
	return got
}

// TestRelayParksARowTheBrokerKeepsRefusing: a row the broker refuses
// ParkAfter times while it accepts other keys' rows is parked; the later
// rows of its key are held (not published before it), other keys keep
// flowing, outbox_parked_rows says 1. Unparked once the broker accepts it,
// the row and then the held ones are published, in order.
func TestRelayParksARowTheBrokerKeepsRefusing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	sink := &refusingSink{Sink: b.sink(), key: "poison", err: errors.New("broker says no")}
	sink.refusing.Store(true)
	reg := prometheus.NewRegistry()
	cfg := fast
	cfg.ParkAfter = 3
	cfg.Registerer = reg
	runRelay(t, newRelay(t, b, sink, cfg))

	var sent, poison []events.Envelope
	for i := range 3 {
		sent = append(sent, b.emit(t, "k"+strconv.Itoa(i), nil))
		poison = append(poison, b.emit(t, "poison", nil))
	}
	// Other keys keep arriving: the broker accepts rows, this one is the problem.
	testinfra.Eventually(t, 30*time.Second, func() error {
		sent = append(sent, b.emit(t, "k"+strconv.Itoa(len(sent)%3), nil))
		if s := rowOf(t, b, poison[0].ID); !s.parked {
			return fmt.Errorf("poison row not parked: %+v (refused %d times)", s, sink.refused.Load())
		}
		return nil
	})
	testinfra.Eventually(t, 10*time.Second, func() error { return allPublished(t, b, sent) })
	got := publishedIDs(t, b)
	for _, ev := range sent {
		if !got[ev.ID] {
			t.Errorf("event %s of key %s not published while another key was parked", ev.ID, ev.Subject)
		}
	}
	for _, ev := range poison {
		if got[ev.ID] {
			t.Errorf("poison key's event v%d published while its first event is parked", ev.AggregateVersion)
		}
	}
	// Attempts count every refusal; ParkAfter only those while other keys
	// were accepted in the same batch.
	if s := rowOf(t, b, poison[0].ID); s.attempts < cfg.ParkAfter || !strings.Contains(s.lastError, "broker says no") {
		t.Errorf("parked row: %+v, want at least %d attempts and the broker's error", s, cfg.ParkAfter)
	}
	if s := rowOf(t, b, poison[1].ID); s.parked || s.published || s.attempts != 0 {
		t.Errorf("held row: %+v, want waiting, never tried", s)
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if n := metric(t, reg, "outbox_parked_rows"); n != 1 {
			return fmt.Errorf("outbox_parked_rows = %v, want 1", n)
		}
		return nil
	})
	parked, err := outbox.Parked(ctx, b.db.Pool, 10)
	if err != nil || len(parked) != 1 || parked[0].EventID != poison[0].ID || parked[0].Held != 2 {
		t.Fatalf("Parked = %+v, %v; want the poison row holding 2", parked, err)
	}

	sink.refusing.Store(false) // the cause is fixed
	ids, err := outbox.Unpark(ctx, b.db.Pool, parked[0].ID, false)
	if err != nil || len(ids) != 1 {
		t.Fatalf("Unpark = %v, %v", ids, err)
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if s := rowOf(t, b, poison[2].ID); !s.published {
			return errors.New("the held rows are not published after unpark")
		}
		return nil
	})
	checkExactlyOnceInOrder(t, append(sent, poison...), b.received(t))
	testinfra.Eventually(t, 10*time.Second, func() error {
		if n := metric(t, reg, "outbox_parked_rows"); n != 0 {
			return fmt.Errorf("outbox_parked_rows = %v after unpark, want 0", n)
		}
		return nil
	})
}

// TestRelayDoesNotParkDuringABrokerOutage: when the broker refuses every
// row (it is down, the stream is missing) nothing is parked, however
// often it refuses: parking would empty the outbox into the parked list.
func TestRelayDoesNotParkDuringABrokerOutage(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	sink := &refusingSink{Sink: b.sink(), key: "only", err: errors.New("no responders")}
	sink.refusing.Store(true)
	cfg := fast
	cfg.ParkAfter = 2
	runRelay(t, newRelay(t, b, sink, cfg))
	ev := b.emit(t, "only", nil)
	testinfra.Eventually(t, 30*time.Second, func() error {
		if s := rowOf(t, b, ev.ID); s.parked {
			t.Fatalf("row parked while the broker accepted nothing: %+v", s)
		}
		if n := sink.refused.Load(); n < 5 {
			return fmt.Errorf("refused %d times", n)
		}
		return nil
	})
	sink.refusing.Store(false)
	testinfra.Eventually(t, 10*time.Second, drained(t, b))
	checkExactlyOnceInOrder(t, []events.Envelope{ev}, b.received(t))
}

// TestRelayParksAMessageJetStreamRefuses: the real broker refuses a
// message larger than the stream's max_msg_size (JetStream API error
// 10054); the row is parked at the first refusal (ErrPermanent), the
// later row of its key is held, other keys flow. The operator raises the
// limit and unparks it through the CLI; both go out, in order.
func TestRelayParksAMessageJetStreamRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	if _, err := b.js.UpdateStream(ctx, jetstream.StreamConfig{Name: b.stream, Subjects: []string{b.stream + ".>"},
		Duplicates: time.Minute, MaxMsgSize: 4096}); err != nil {
		t.Fatal(err)
	}
	runRelay(t, newRelay(t, b, b.sink(), fast))

	big, err := events.New("test", "widget.changed", "big", 1, 1, map[string]any{"blob": strings.Repeat("x", 8192), "email": "someone@example.com"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error { return b.ob.Publish(ctx, tx, big) }); err != nil {
		t.Fatal(err)
	}
	after := b.emit(t, "big", nil) // the key's next event (emit's own version count)
	small := b.emit(t, "small", nil)
	testinfra.Eventually(t, 10*time.Second, func() error {
		if s := rowOf(t, b, big.ID); !s.parked {
			return fmt.Errorf("oversize row not parked: %+v", s)
		}
		return allPublished(t, b, []events.Envelope{small})
	})
	if s := rowOf(t, b, big.ID); s.attempts != 1 || !strings.Contains(s.lastError, "exceeds maximum") {
		t.Errorf("parked row %+v: want parked at the first refusal with the broker's error", s)
	}
	if s := rowOf(t, b, after.ID); s.published || s.parked {
		t.Errorf("the big key's next event: %+v, want held", s)
	}

	var out bytes.Buffer
	if err := outbox.Command(ctx, b.db.Pool, []string{"parked"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "big") || !strings.Contains(out.String(), "exceeds maximum") || strings.Contains(out.String(), "example.com") {
		t.Errorf("outbox parked printed:\n%s\nwant the row's key and error, never its payload", out.String())
	}

	if _, err := b.js.UpdateStream(ctx, jetstream.StreamConfig{Name: b.stream, Subjects: []string{b.stream + ".>"},
		Duplicates: time.Minute, MaxMsgSize: -1}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := outbox.Command(ctx, b.db.Pool, []string{"unpark", "--all"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "unparked 1 row(s)") {
		t.Errorf("outbox unpark --all printed %q", out.String())
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if s := rowOf(t, b, after.ID); !s.published {
			return errors.New("the held row is not published after unpark")
		}
		return nil
	})
	// big and after both say v1 (emit counts its own versions): compare
	// their stream positions.
	got := b.received(t)
	pos := map[string]int{}
	for i, ev := range got {
		pos[ev.ID] = i
	}
	if len(got) != 3 || pos[big.ID] > pos[after.ID] {
		t.Errorf("stream holds %d events, big at %d and its successor at %d; want 3, big first", len(got), pos[big.ID], pos[after.ID])
	}
}

// TestOutboxCommandRejectsBadArguments: every mistake is named, with the
// usage, and changes nothing.
func TestOutboxCommandRejectsBadArguments(t *testing.T) {
	t.Parallel()
	db := testinfra.Postgres(t, migrations)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"list"}, `unknown command "list"`},
		{[]string{"unpark"}, "one row ID or --all"},
		{[]string{"unpark", "1", "2"}, "one row ID or --all"},
		{[]string{"unpark", "--all", "3"}, "one row ID or --all"},
		{[]string{"unpark", "abc"}, `ID "abc" is not a row id`},
		{[]string{"parked", "--limit", "0"}, "--limit N"},
		{[]string{"parked", "--bogus"}, "flag provided but not defined"},
		{[]string{"republish"}, "--since"},
		{[]string{"republish", "--since", "yesterday"}, "neither an RFC 3339 time nor a positive duration"},
	} {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			var out bytes.Buffer
			err := outbox.Command(context.Background(), db.Pool, tc.args, &out)
			if !errors.Is(err, outbox.ErrUsage) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "outbox unpark ID | --all") {
				t.Errorf("err = %v, want ErrUsage saying %q, with the usage", err, tc.want)
			}
		})
	}
	if _, err := outbox.Unpark(context.Background(), db.Pool, 42, false); !errors.Is(err, outbox.ErrNotParked) {
		t.Errorf("Unpark of a row that is not parked: %v, want ErrNotParked", err)
	}
}
