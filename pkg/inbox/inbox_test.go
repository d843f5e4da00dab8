package inbox_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/inbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// migrations is how a service includes the inbox in its own migrations,
// with a table for the effect the tests apply.
var migrations = fstest.MapFS{
	"00001_inbox.sql": {Data: []byte("-- +goose Up\n" + inbox.Schema + `
CREATE TABLE effects (id text NOT NULL, group_name text NOT NULL);
-- +goose Down
DROP TABLE effects;
DROP TABLE inbox;
`)},
}

// effect is what a consumer does with message id: one row in effects.
func effect(group, id string) func(ctx context.Context, tx pgx.Tx) error {
	return func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO effects (id, group_name) VALUES ($1, $2)`, id, group)
		return err
	}
}

// apply is a consumer's delivery: Apply in its own committed transaction.
func apply(t *testing.T, db *pgxpool.Pool, group, id string) bool {
	t.Helper()
	var applied bool
	if err := pgdb.InTx(context.Background(), db, func(tx pgx.Tx) error {
		var err error
		applied, err = inbox.Apply(context.Background(), tx, group, id, effect(group, id))
		return err
	}); err != nil {
		t.Fatalf("Apply %s/%s: %v", group, id, err)
	}
	return applied
}

// effects counts the effects of id applied for group.
func effects(t *testing.T, db *pgxpool.Pool, group, id string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM effects WHERE group_name = $1 AND id = $2`, group, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestApplyAppliesADuplicateOnlyOnce(t *testing.T) {
	t.Parallel()
	db := testinfra.Postgres(t, migrations)
	if !apply(t, db.Pool, "payments", "e1") {
		t.Fatal("first delivery of e1: applied = false, want true")
	}
	for range 3 { // a lost ack, a redrive, a replay
		if apply(t, db.Pool, "payments", "e1") {
			t.Error("redelivery of e1: applied = true, want false")
		}
	}
	if n := effects(t, db.Pool, "payments", "e1"); n != 1 {
		t.Errorf("e1 applied %d times, want once", n)
	}
	if !apply(t, db.Pool, "notifications", "e1") || effects(t, db.Pool, "notifications", "e1") != 1 {
		t.Error("another group's first delivery of e1 was not applied once")
	}
}

// TestApplyUndoesTheClaimWhenTheEffectFails: fn's error rolls back to
// Apply's savepoint, so the claim is gone even when the caller commits
// the transaction anyway, and the retry applies the effect.
func TestApplyUndoesTheClaimWhenTheEffectFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations)
	errEffect := errors.New("effect failed")
	for _, commit := range []bool{false, true} {
		id := map[bool]string{false: "rolled-back", true: "committed-anyway"}[commit]
		err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
			applied, err := inbox.Apply(ctx, tx, "orders", id, func(ctx context.Context, tx pgx.Tx) error {
				if err := effect("orders", id)(ctx, tx); err != nil {
					return err
				}
				return errEffect // after writing part of the effect
			})
			if applied || !errors.Is(err, errEffect) {
				t.Errorf("%s: Apply = %v, %v; want false, the effect's error", id, applied, err)
			}
			if commit {
				return nil // a careless caller: the claim must not commit
			}
			return err
		})
		if commit && err != nil {
			t.Fatalf("%s: commit after the failed Apply: %v", id, err)
		}
		if n := effects(t, db.Pool, "orders", id); n != 0 {
			t.Errorf("%s: the failed effect left %d rows", id, n)
		}
		if !apply(t, db.Pool, "orders", id) {
			t.Errorf("%s: retry after the failed effect: applied = false, want true", id)
		}
		if n := effects(t, db.Pool, "orders", id); n != 1 {
			t.Errorf("%s: applied %d times after the retry, want once", id, n)
		}
	}
}

// TestConcurrentApplyOfOneMessageAppliesOnce: a second delivery whose
// transaction starts while the first one's is still open waits for it and
// skips the effect once it commits.
func TestConcurrentApplyOfOneMessageAppliesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations)

	first, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Rollback(ctx) }()
	if applied, err := inbox.Apply(ctx, first, "payments", "e1", effect("payments", "e1")); err != nil || !applied {
		t.Fatalf("first Apply = %v, %v", applied, err)
	}

	type result struct {
		applied bool
		err     error
	}
	second := make(chan result, 1)
	go func() {
		var r result
		r.err = pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
			var err error
			r.applied, err = inbox.Apply(ctx, tx, "payments", "e1", effect("payments", "e1"))
			return err
		})
		second <- r
	}()
	// The second claim waits on the first transaction's row lock.
	testinfra.Eventually(t, 10*time.Second, func() error {
		var waiting bool
		if err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO inbox%')`).Scan(&waiting); err != nil {
			return err
		}
		if !waiting {
			return errors.New("the second Apply does not wait for the first transaction")
		}
		return nil
	})
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-second
	if r.err != nil || r.applied {
		t.Errorf("second Apply = %v, %v; want false, nil", r.applied, r.err)
	}
	if n := effects(t, db.Pool, "payments", "e1"); n != 1 {
		t.Errorf("e1 applied %d times by two concurrent deliveries, want once", n)
	}
}

func TestApplyRefusesAnEmptyGroupOrID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations)
	for _, in := range [][2]string{{"", "e1"}, {"orders", ""}} {
		err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
			_, err := inbox.Apply(ctx, tx, in[0], in[1], effect(in[0], in[1]))
			return err
		})
		if !errors.Is(err, inbox.ErrInvalid) {
			t.Errorf("Apply(%q, %q) = %v, want ErrInvalid", in[0], in[1], err)
		}
	}
}

func TestClaimBatchReportsWhichMessagesAreNew(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations)
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
	if !apply(t, db.Pool, "search", "e9") { // claimed by Apply: ClaimBatch sees it
		t.Fatal("Apply of e9 not applied")
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
	if apply(t, db.Pool, "search", "e1") { // Apply sees batch claims
		t.Error("Apply of a batch-claimed message: applied = true")
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

	for name, args := range map[string]struct {
		group string
		ids   []string
	}{"no group": {"", []string{"e1"}}, "empty id": {"search", []string{"e1", ""}}} {
		err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
			_, err := inbox.ClaimBatch(ctx, tx, args.group, args.ids)
			return err
		})
		if !errors.Is(err, inbox.ErrInvalid) {
			t.Errorf("%s: ClaimBatch = %v, want ErrInvalid", name, err)
		}
	}
}

func TestPruneDeletesOnlyOlderClaims(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations)
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO inbox (group_name, event_id, processed_at)
		SELECT 'g' || (i % 2), 'old-' || i, now() - interval '10 days' FROM generate_series(1, 5) i
		UNION ALL SELECT 'g', 'recent-' || i, now() - interval '6 days' FROM generate_series(1, 2) i
		UNION ALL SELECT 'g', 'new-' || i, now() FROM generate_series(1, 3) i`); err != nil {
		t.Fatal(err)
	}
	n, err := inbox.Prune(ctx, db.Pool, 7*24*time.Hour, 2) // batches of 2: three statements
	if err != nil || n != 5 {
		t.Fatalf("Prune = %d, %v; want 5", n, err)
	}
	var left []string
	rows, err := db.Pool.Query(ctx, `SELECT event_id FROM inbox ORDER BY event_id`)
	if err == nil {
		left, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if want := []string{"new-1", "new-2", "new-3", "recent-1", "recent-2"}; err != nil || !slices.Equal(left, want) {
		t.Errorf("claims left = %v, %v; want %v", left, err, want)
	}
	if apply(t, db.Pool, "g", "recent-1") {
		t.Error("a kept claim no longer de-duplicates")
	}
	if _, err := inbox.Prune(ctx, db.Pool, 0, 10); !errors.Is(err, inbox.ErrInvalid) {
		t.Errorf("Prune(0) = %v, want ErrInvalid", err)
	}
}

// TestRetentionOutlivesEveryRedelivery: the inbox keeps its claims longer
// than any delivery of an event can come, as stream.EnsureStream creates
// the streams by default: the stream's own retention (redeliveries,
// replays) and the dead-letter stream's (a redrive reaches every group
// again). A claim pruned before would let a redriven event apply twice.
func TestRetentionOutlivesEveryRedelivery(t *testing.T) {
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
		if age := st.CachedInfo().Config.MaxAge; age <= 0 || age >= inbox.Retention {
			t.Errorf("%s keeps messages %s; the inbox keeps claims %s: it must outlive every delivery", s, age, inbox.Retention)
		}
	}
}

// TestApplyInOneTransactionUndoesOnlyTheFailedMessage: a batch handler
// that applies several messages in one transaction loses only the failed
// message's claim and effect; the others commit.
func TestApplyInOneTransactionUndoesOnlyTheFailedMessage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations)
	errEffect := errors.New("effect failed")
	if err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
		for _, id := range []string{"e1", "e2", "e3"} {
			fn := effect("search", id)
			if id == "e2" {
				fn = func(ctx context.Context, tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `SELECT 1/0`); err == nil { // a failed statement aborts tx
						t.Error("1/0 did not fail")
					}
					return errEffect
				}
			}
			if _, err := inbox.Apply(ctx, tx, "search", id, fn); err != nil && !errors.Is(err, errEffect) {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("the batch's transaction: %v", err)
	}
	for id, want := range map[string]int{"e1": 1, "e2": 0, "e3": 1} {
		if n := effects(t, db.Pool, "search", id); n != want {
			t.Errorf("%s applied %d times, want %d", id, n, want)
		}
	}
	if apply(t, db.Pool, "search", "e1") || !apply(t, db.Pool, "search", "e2") {
		t.Error("after the batch: e1 must be a duplicate, e2 new")
	}
}

func TestApplyBatchAppliesEachMessageOnceInOneCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations)
	batch := func(ids ...string) []inbox.Effect {
		es := make([]inbox.Effect, len(ids))
		for i, id := range ids {
			es[i] = inbox.Effect{ID: id, Apply: effect("orders", id)}
		}
		return es
	}
	if !apply(t, db.Pool, "orders", "b0") {
		t.Fatal("Apply of b0 not applied")
	}
	// A redelivered b0, a new message twice, two more new ones.
	got, err := inbox.ApplyBatch(ctx, db.Pool, "orders", batch("b0", "b1", "b1", "b2", "b3"))
	if err != nil {
		t.Fatalf("ApplyBatch: %v", err)
	}
	if want := []bool{false, true, false, true, true}; !slices.Equal(got, want) {
		t.Errorf("applied = %v, want %v", got, want)
	}
	for _, id := range []string{"b0", "b1", "b2", "b3"} {
		if n := effects(t, db.Pool, "orders", id); n != 1 {
			t.Errorf("effects of %s = %d, want 1", id, n)
		}
	}

	// A failing effect keeps nothing of the batch: not its claims, not the
	// effects before it.
	errEffect := errors.New("effect failed")
	bad := batch("b4", "b5", "b6")
	bad[1].Apply = func(context.Context, pgx.Tx) error { return errEffect }
	if _, err := inbox.ApplyBatch(ctx, db.Pool, "orders", bad); !errors.Is(err, errEffect) {
		t.Fatalf("ApplyBatch with a failing effect = %v, want %v", err, errEffect)
	}
	for _, id := range []string{"b4", "b6"} {
		if n := effects(t, db.Pool, "orders", id); n != 0 {
			t.Errorf("effects of %s after a failed batch = %d, want 0", id, n)
		}
	}

	// A panicking effect is rolled back too, and the panic goes on up.
	func() {
		defer func() {
			if recover() == nil {
				t.Error("ApplyBatch swallowed a panic")
			}
		}()
		bad[1].Apply = func(context.Context, pgx.Tx) error { panic("effect panicked") }
		_, _ = inbox.ApplyBatch(ctx, db.Pool, "orders", bad)
	}()

	// The same messages, retried, apply, in one transaction: their claims
	// and effects carry one transaction id (xmin).
	if got, err := inbox.ApplyBatch(ctx, db.Pool, "orders", batch("b4", "b5", "b6")); err != nil || !slices.Equal(got, []bool{true, true, true}) {
		t.Fatalf("ApplyBatch retried = %v, %v; want all applied", got, err)
	}
	var txs int
	if err := db.Pool.QueryRow(ctx, `
		SELECT count(DISTINCT x) FROM (
			SELECT xmin::text AS x FROM effects WHERE id IN ('b4', 'b5', 'b6')
			UNION ALL SELECT xmin::text FROM inbox WHERE event_id IN ('b4', 'b5', 'b6')) t`).Scan(&txs); err != nil {
		t.Fatal(err)
	}
	if txs != 1 {
		t.Errorf("a batch of 3 was written by %d transactions, want 1", txs)
	}
	if n := effects(t, db.Pool, "orders", "b5"); n != 1 {
		t.Errorf("effects of b5 = %d, want 1", n)
	}
	if got, err := inbox.ApplyBatch(ctx, db.Pool, "orders", nil); err != nil || got != nil {
		t.Errorf("ApplyBatch of nothing = %v, %v", got, err)
	}
}
