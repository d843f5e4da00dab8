package stream_test

import (
	"context"
	"errors"
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
