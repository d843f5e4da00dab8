package main

import (
	"context"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestRefundAndAuditCommands: `payments refund list|abandon` and `payments
// audit` on a migrated database: an open refund is listed, abandoning it
// needs a reason and a name, the abandon is in the audit log, and bad
// arguments answer with the usage.
func TestRefundAndAuditCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, nil)
	env := map[string]string{"DATABASE_URL": db.URL, "LOG_LEVEL": "WARN"}
	getenv := func(k string) string { return env[k] }
	cli := func(args ...string) (string, error) {
		out := &testinfra.Buffer{}
		err := run(ctx, append([]string{"payments"}, args...), getenv, out)
		return out.String(), err
	}
	if _, err := cli("migrate"); err != nil {
		t.Fatal(err)
	}
	if out, err := cli("refund", "list"); err != nil || !strings.Contains(out, "no open refunds") {
		t.Fatalf("refund list on an empty database: %s %v", out, err)
	}
	const payment, order, refund = "0193a5b0-0000-7000-8000-000000000001", "0193a5b0-0000-7000-8000-000000000002", "0193a5b0-0000-7000-8000-000000000003"
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO payments (id, order_id, idempotency_key, amount_minor, currency, payment_method, status, charge_id, created_at, updated_at)
		VALUES ($1, $2, 'k', 1500, 'EUR', 'tok_visa', 'succeeded', 'ch_1', now(), now());
		`, payment, order); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO refunds (id, payment_id, order_id, amount_minor, status, failure_reason, created_at, updated_at)
		VALUES ($1, $2, $3, 1500, 'failed', 'charge_disputed', now(), now())`, refund, payment, order); err != nil {
		t.Fatal(err)
	}
	if out, err := cli("refund", "list"); err != nil || !strings.Contains(out, refund) || !strings.Contains(out, "charge_disputed") {
		t.Fatalf("refund list: %s %v", out, err)
	}
	for _, args := range [][]string{{"refund"}, {"refund", "fly"}, {"refund", "abandon"}, {"refund", "abandon", refund, "--by", "oscar"},
		{"refund", "abandon", refund, "--reason", "x"}, {"audit", "extra"}} {
		if _, err := cli(args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	if out, err := cli("refund", "abandon", refund, "--reason", "refunded by bank transfer", "--by", "oscar"); err != nil || !strings.Contains(out, "abandoned by oscar") {
		t.Fatalf("abandon: %s %v", out, err)
	}
	if out, err := cli("audit", "--action", "refund."); err != nil || !strings.Contains(out, "refund.abandon") || !strings.Contains(out, "refunded by bank transfer") {
		t.Fatalf("audit: %s %v", out, err)
	}
	if out, err := cli("refund", "list"); err != nil || !strings.Contains(out, "no open refunds") {
		t.Fatalf("refund list after the abandon: %s %v", out, err)
	}
}
