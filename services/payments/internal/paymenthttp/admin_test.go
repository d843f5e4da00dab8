package paymenthttp_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// TestOperatorAbandonsARefund: the open refund is listed; abandoning it
// needs a reason (400, nothing changes), answers 404 for an unknown refund
// and 409 when it is closed already; the abandon is recorded in the audit
// log with the operator's token subject, in the same transaction.
func TestOperatorAbandonsARefund(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	p := b.placed(t, owner)
	// A refund whose provider keeps refusing (set up in SQL: this test is
	// about the operator's tool, not the worker).
	refundID := newID()
	if _, err := b.db.Pool.Exec(ctx, `UPDATE payments SET status = 'succeeded', charge_id = 'ch_1' WHERE id = $1`, p.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Pool.Exec(ctx, `INSERT INTO refunds (id, payment_id, order_id, amount_minor, status, failure_reason, created_at, updated_at)
		VALUES ($1, $2, $3, 1500, 'failed', 'charge_disputed', now(), now())`, refundID, p.ID, p.OrderID); err != nil {
		t.Fatal(err)
	}
	op := map[string]string{"Authorization": b.callers[authtest.Operator]}

	list := decode[struct{ Refunds []paymentsapi.OpenRefund }](t, b.do(t, "GET", "/v1/admin/refunds", nil, op))
	if len(list.Refunds) != 1 || list.Refunds[0].ID != refundID || list.Refunds[0].LastError != "charge_disputed" {
		t.Fatalf("open refunds: %+v", list.Refunds)
	}
	for _, tc := range []struct {
		name, path, body string
		want             int
		problem          string
	}{
		{"no reason", "/v1/admin/refunds/" + refundID + "/abandon", `{}`, 400, "invalid-request"},
		{"blank reason", "/v1/admin/refunds/" + refundID + "/abandon", `{"reason":"  "}`, 400, "invalid-request"},
		{"reason too long", "/v1/admin/refunds/" + refundID + "/abandon", `{"reason":"` + strings.Repeat("x", audit.MaxReason+1) + `"}`, 400, "invalid-request"},
		{"unknown field", "/v1/admin/refunds/" + refundID + "/abandon", `{"reason":"x","by":"me"}`, 400, ""},
		{"unknown refund", "/v1/admin/refunds/" + newID() + "/abandon", `{"reason":"x"}`, 404, "not-found"},
		{"not a uuid", "/v1/admin/refunds/nope/abandon", `{"reason":"x"}`, 404, "not-found"},
	} {
		r := b.do(t, "POST", tc.path, []byte(tc.body), op)
		if r.status != tc.want || r.header.Get("Content-Type") != "application/problem+json" ||
			(tc.problem != "" && !strings.Contains(string(r.body), tc.problem)) {
			t.Errorf("%s: %d %s %s, want %d %s", tc.name, r.status, r.header.Get("Content-Type"), r.body, tc.want, tc.problem)
		}
	}
	if got := decode[struct{ Entries []audit.Entry }](t, b.do(t, "GET", "/v1/admin/audit", nil, op)); len(got.Entries) != 0 {
		t.Fatalf("refused abandons were recorded: %+v", got.Entries)
	}

	r := b.do(t, "POST", "/v1/admin/refunds/"+refundID+"/abandon", []byte(`{"reason":"refunded by bank transfer, ticket 4711"}`), op)
	if r.status != http.StatusOK || decode[paymentsapi.OpenRefund](t, r).Status != "abandoned" {
		t.Fatalf("abandon: %d %s", r.status, r.body)
	}
	if r := b.do(t, "POST", "/v1/admin/refunds/"+refundID+"/abandon", []byte(`{"reason":"again"}`), op); r.status != http.StatusConflict {
		t.Fatalf("abandon twice: %d %s", r.status, r.body)
	}
	entries := decode[struct{ Entries []audit.Entry }](t, b.do(t, "GET", "/v1/admin/audit?action=refund.", nil, op)).Entries
	if len(entries) != 1 || entries[0].Actor != "oscar" || entries[0].Action != "refund.abandon" ||
		entries[0].Reason != "refunded by bank transfer, ticket 4711" || entries[0].Detail["status_before"] != "failed" {
		t.Fatalf("audit: %+v", entries)
	}
	if r := b.do(t, "GET", "/v1/admin/audit?limit=0", nil, op); r.status != http.StatusBadRequest {
		t.Fatalf("audit limit=0: %d", r.status)
	}
	if list := decode[struct{ Refunds []paymentsapi.OpenRefund }](t, b.do(t, "GET", "/v1/admin/refunds", nil, op)); len(list.Refunds) != 0 {
		t.Fatalf("abandoned refund still open: %+v", list.Refunds)
	}
}

type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", string(b))
	return http.DefaultTransport.RoundTrip(r)
}

// TestServiceReadsAnOrdersPayment: paymentsapi.Client, as orders' stuck-
// order repair uses it with its service token, reads an order's payment
// and gets ErrNoPayment for an order payments has none for.
func TestServiceReadsAnOrdersPayment(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.placed(t, owner)
	c, err := paymentsapi.NewClient(b.url, &http.Client{Transport: bearer(b.callers[authtest.Service])})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.OrderPayment(context.Background(), p.OrderID)
	if err != nil || got.ID != p.ID || got.Status != paymentsapi.StatusPending || got.AmountMinor != p.AmountMinor {
		t.Fatalf("payment of the order: %+v, %v", got, err)
	}
	if _, err := c.OrderPayment(context.Background(), newID()); !errors.Is(err, paymentsapi.ErrNoPayment) {
		t.Fatalf("order without a payment: %v, want ErrNoPayment", err)
	}
	anon, _ := paymentsapi.NewClient(b.url, nil)
	if _, err := anon.OrderPayment(context.Background(), p.OrderID); err == nil || errors.Is(err, paymentsapi.ErrNoPayment) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("without a token: %v, want an error naming 401", err)
	}
}
