package testinfra_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestPgBouncerPoolsTransactions: the helper's pgbouncer shares server
// sessions between clients (transaction pooling), works with pgx in exec
// mode, and breaks pgx's default statement cache (named prepared
// statements live in one server session; PgBouncer 1.18 does not carry
// them), which is what ADR 0042 tells deployments to avoid.
func TestPgBouncerPoolsTransactions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, nil)
	url := testinfra.PgBouncer(t, db, testinfra.PgBouncerConfig{PoolSize: 1})

	connect := func(mode string) *pgx.Conn {
		t.Helper()
		u := url
		if mode != "" {
			u += "&default_query_exec_mode=" + mode
		}
		c, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(ctx) })
		return c
	}
	a, b := connect("exec"), connect("exec")
	var pa, pb int
	if err := a.QueryRow(ctx, `SELECT pg_backend_pid() + $1`, 0).Scan(&pa); err != nil {
		t.Fatal(err)
	}
	if err := b.QueryRow(ctx, `SELECT pg_backend_pid() + $1`, 0).Scan(&pb); err != nil {
		t.Fatal(err)
	}
	if pa != pb {
		t.Errorf("two clients got server sessions %d and %d; one server connection (PoolSize 1) should serve both", pa, pb)
	}

	// The default mode prepares "stmtcache_…" on the server session it
	// happens to get; a second client on that session prepares the same
	// name again, or a client's next execute lands on a session without it.
	c1, c2 := connect(""), connect("")
	var failed error
	for i := range 10 {
		for _, c := range []*pgx.Conn{c1, c2} {
			var n int
			if err := c.QueryRow(ctx, `SELECT $1::int`, i).Scan(&n); err != nil && failed == nil {
				failed = err
			}
		}
	}
	if failed == nil {
		t.Error("pgx's statement cache worked through PgBouncer 1.18 in transaction mode; ADR 0042 says it does not")
	} else {
		t.Logf("default exec mode through PgBouncer: %v", failed)
	}
}
