package stream_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// migrations is how a service includes the inbox in its own migrations.
var migrations = fstest.MapFS{
	"00001_inbox.sql": {Data: []byte("-- +goose Up\n" + stream.InboxSchema + "\n-- +goose Down\nDROP TABLE inbox;\n")},
}

func TestInboxClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations)
	var inbox stream.Inbox

	claim := func(group, id string) bool {
		t.Helper()
		var first bool
		if err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
			var err error
			first, err = inbox.Claim(ctx, tx, group, id)
			return err
		}); err != nil {
			t.Fatalf("claim %s/%s: %v", group, id, err)
		}
		return first
	}
	if !claim("search", "e1") {
		t.Error("first claim of e1 = false, want true")
	}
	if claim("search", "e1") {
		t.Error("second claim of e1 = true, want false")
	}
	if !claim("notifications", "e1") {
		t.Error("claim of e1 by another group = false, want true")
	}

	// A claim in a transaction that rolls back does not count.
	errEffect := errors.New("effect failed")
	err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
		first, err := inbox.Claim(ctx, tx, "search", "e2")
		if err != nil || !first {
			t.Errorf("claim in the failing tx = %v, %v", first, err)
		}
		return errEffect
	})
	if !errors.Is(err, errEffect) {
		t.Fatalf("InTx = %v", err)
	}
	if !claim("search", "e2") {
		t.Error("claim after a rolled-back claim = false, want true")
	}

	err = pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
		_, err := inbox.Claim(ctx, tx, "", "e3")
		return err
	})
	if !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("claim without group = %v, want ErrInvalid", err)
	}
}

func TestInboxClaimBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations)
	var inbox stream.Inbox

	claim := func(group string, ids ...string) []bool {
		t.Helper()
		var first []bool
		if err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
			var err error
			first, err = inbox.ClaimBatch(ctx, tx, group, ids)
			return err
		}); err != nil {
			t.Fatalf("claim %s/%v: %v", group, ids, err)
		}
		return first
	}
	if got := claim("search", "e1", "e2", "e3"); !slices.Equal(got, []bool{true, true, true}) {
		t.Errorf("first claim = %v, want all first", got)
	}
	// Claimed before, new, repeated in the same call, and one claimed by
	// the single-event Claim.
	if !claim("search", "e9")[0] {
		t.Fatal("claim of e9 not first")
	}
	if got := claim("search", "e2", "e4", "e4", "e9", "e5"); !slices.Equal(got, []bool{false, true, false, false, true}) {
		t.Errorf("second claim = %v, want [false true false false true]", got)
	}
	if got := claim("notifications", "e1", "e2"); !slices.Equal(got, []bool{true, true}) {
		t.Errorf("claim by another group = %v, want all first", got)
	}
	if got := claim("search"); len(got) != 0 {
		t.Errorf("empty claim = %v", got)
	}

	// A rolled-back batch claims nothing.
	errEffect := errors.New("effect failed")
	err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := inbox.ClaimBatch(ctx, tx, "search", []string{"e6", "e7"}); err != nil {
			return err
		}
		return errEffect
	})
	if !errors.Is(err, errEffect) {
		t.Fatalf("InTx = %v", err)
	}
	if got := claim("search", "e6", "e7"); !slices.Equal(got, []bool{true, true}) {
		t.Errorf("claim after a rolled-back claim = %v, want all first", got)
	}
	// The single-event Claim sees batch claims.
	if err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
		first, err := inbox.Claim(ctx, tx, "search", "e6")
		if err == nil && first {
			t.Error("Claim of a batch-claimed event = true")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	for name, args := range map[string]struct {
		group string
		ids   []string
	}{"no group": {"", []string{"e1"}}, "empty id": {"search", []string{"e1", ""}}} {
		err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
			_, err := inbox.ClaimBatch(ctx, tx, args.group, args.ids)
			return err
		})
		if !errors.Is(err, stream.ErrInvalid) {
			t.Errorf("%s: ClaimBatch = %v, want ErrInvalid", name, err)
		}
	}
}

func TestPruneInbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations)
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO inbox (group_name, event_id, processed_at)
		SELECT 'g', 'old-' || i, now() - interval '10 days' FROM generate_series(1, 5) i
		UNION ALL SELECT 'g', 'new-' || i, now() FROM generate_series(1, 3) i`); err != nil {
		t.Fatal(err)
	}
	n, err := stream.PruneInbox(ctx, db.Pool, 7*24*time.Hour, 2)
	if err != nil || n != 5 {
		t.Fatalf("PruneInbox = %d, %v; want 5", n, err)
	}
	var left int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM inbox WHERE event_id LIKE 'new-%'`).Scan(&left); err != nil || left != 3 {
		t.Errorf("rows left = %d, %v; want the 3 new ones", left, err)
	}
	if _, err := stream.PruneInbox(ctx, db.Pool, 0, 10); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("PruneInbox(0) = %v, want ErrInvalid", err)
	}
}

// TestInboxOutlivesEveryRedelivery: the inbox keeps its claims longer than
// any delivery of an event can come, as EnsureStream creates the streams
// by default: the stream's own retention (redeliveries, replays) and the
// dead-letter stream's (a redrive reaches every group again). A claim
// pruned before would let a redriven event apply twice.
func TestInboxOutlivesEveryRedelivery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nt := testinfra.NATS(t)
	name := nt.Name("ORDERS")
	if err := stream.EnsureStream(ctx, nt.JS, stream.StreamConfig{Name: name}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{name, stream.DLQStream(name)} {
		st, err := nt.JS.Stream(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if age := st.CachedInfo().Config.MaxAge; age <= 0 || age >= stream.InboxRetention {
			t.Errorf("%s keeps messages %s; the inbox keeps claims %s: it must outlive every delivery", s, age, stream.InboxRetention)
		}
	}
}
