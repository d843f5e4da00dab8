package pspsim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

type refundBody struct {
	ChargeID    string `json:"charge_id"`
	AmountMinor *int64 `json:"amount_minor,omitempty"`
}

func amount(n int64) *int64 { return &n }

func (b *bundle) postRefund(t testing.TB, key string, body any) resp {
	t.Helper()
	return b.do(t, request{method: http.MethodPost, path: "/refunds", key: key, body: body})
}

// chargeOf creates a charge of amount with token and returns its id.
func (b *bundle) chargeOf(t testing.TB, key string, amountMinor int64, token string) string {
	t.Helper()
	r := b.postCharge(t, key, charge{AmountMinor: amountMinor, Currency: "EUR", PaymentMethod: token, Reference: "order-" + key})
	if r.status != http.StatusCreated && r.status != http.StatusPaymentRequired {
		t.Fatalf("charge: %d %s", r.status, r.body)
	}
	return decodeCharge(t, r).ID
}

// A sequence on one charge of 1000: each step depends on the ones before.
func TestRefundsOfOneChargeReplayRefuseExcessAndDefaultToTheRest(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Config{})
	ch := b.chargeOf(t, "c", 1000, pspsim.TokenVisa)

	// Partial refund.
	first := b.postRefund(t, "r-1", refundBody{ChargeID: ch, AmountMinor: amount(300)})
	if first.status != http.StatusCreated {
		t.Fatalf("partial: %d %s", first.status, first.body)
	}
	rf := decodeRefund(t, first)
	want := pspsim.Refund{ID: rf.ID, ChargeID: ch, AmountMinor: 300, Status: pspsim.RefundSucceeded, IdempotencyKey: "r-1", CreatedAt: clock}
	if rf != want || len(rf.ID) != len("re_")+32 || rf.ID[:3] != "re_" {
		t.Fatalf("refund %+v, want %+v", rf, want)
	}

	// Replay: same response, nothing new.
	again := b.postRefund(t, "r-1", refundBody{ChargeID: ch, AmountMinor: amount(300)})
	if again.status != http.StatusCreated || !bytes.Equal(again.body, first.body) || again.header.Get(pspsim.HeaderReplayed) != "true" {
		t.Fatalf("replay: %d %v %s", again.status, again.header, again.body)
	}

	// Same key, other amount, or the remaining amount instead of 300.
	problem(t, b.postRefund(t, "r-1", refundBody{ChargeID: ch, AmountMinor: amount(200)}), 422, "idempotency-key-reused")
	problem(t, b.postRefund(t, "r-1", refundBody{ChargeID: ch}), 422, "idempotency-key-reused")

	// More than remains (700).
	p := problem(t, b.postRefund(t, "r-2", refundBody{ChargeID: ch, AmountMinor: amount(701)}), 422, "refund-exceeds-charge")
	if !bytes.Contains([]byte(p.Detail), []byte("refund exceeds charge")) {
		t.Fatalf("detail %q", p.Detail)
	}
	// The refused key stays free: used again for a valid refund it creates one.
	exact := b.postRefund(t, "r-2", refundBody{ChargeID: ch, AmountMinor: amount(200)})
	if exact.status != http.StatusCreated || exact.header.Get(pspsim.HeaderReplayed) != "" {
		t.Fatalf("r-2 after 422: %d %s", exact.status, exact.body)
	}

	// No amount: what remains (500).
	rest := b.postRefund(t, "r-3", refundBody{ChargeID: ch})
	if rest.status != http.StatusCreated || decodeRefund(t, rest).AmountMinor != 500 {
		t.Fatalf("remaining: %d %s", rest.status, rest.body)
	}

	// Fully refunded: nothing remains, with or without an amount.
	problem(t, b.postRefund(t, "r-4", refundBody{ChargeID: ch}), 422, "refund-exceeds-charge")
	problem(t, b.postRefund(t, "r-5", refundBody{ChargeID: ch, AmountMinor: amount(1)}), 422, "refund-exceeds-charge")

	// The list, oldest first.
	list := b.do(t, request{method: http.MethodGet, path: "/refunds?charge_id=" + ch})
	var got struct{ Refunds []pspsim.Refund }
	if err := json.Unmarshal(list.body, &got); err != nil || list.status != http.StatusOK {
		t.Fatalf("list: %d %s (%v)", list.status, list.body, err)
	}
	var amounts []int64
	for _, r := range got.Refunds {
		amounts = append(amounts, r.AmountMinor)
	}
	if fmt.Sprint(amounts) != "[300 200 500]" {
		t.Fatalf("refund amounts %v, want [300 200 500]", amounts)
	}

	s := b.sim.Stats()
	if s.RefundsCreated != 3 || s.RefundedByCharge[ch] != 1000 {
		t.Fatalf("stats %+v", s)
	}
	if requests(s, pspsim.RouteCreateRefund, pspsim.OutcomeCreated) != 3 ||
		requests(s, pspsim.RouteCreateRefund, pspsim.OutcomeReplayed) != 1 ||
		requests(s, pspsim.RouteCreateRefund, pspsim.OutcomeKeyReused) != 2 ||
		requests(s, pspsim.RouteCreateRefund, pspsim.OutcomeRefused) != 3 {
		t.Fatalf("requests %v", s.Requests[pspsim.RouteCreateRefund])
	}
}

func TestRefundRefusesDeclinedUnknownAndMalformedRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		key        string
		body       func(succeeded, declined string) any
		wantStatus int
		wantClass  string
	}{
		{"declined charge", "k", func(_, d string) any { return refundBody{ChargeID: d} }, 422, "charge-not-refundable"},
		{"unknown charge", "k", func(string, string) any { return refundBody{ChargeID: "ch_unknown"} }, 404, "charge-not-found"},
		{"zero amount", "k", func(s, _ string) any { return refundBody{ChargeID: s, AmountMinor: amount(0)} }, 400, "invalid-field"},
		{"negative amount", "k", func(s, _ string) any { return refundBody{ChargeID: s, AmountMinor: amount(-1)} }, 400, "invalid-field"},
		{"no charge id", "k", func(string, string) any { return refundBody{} }, 400, "invalid-field"},
		{"missing key", "", func(s, _ string) any { return refundBody{ChargeID: s} }, 400, "missing-idempotency-key"},
		{"unknown field", "k", func(s, _ string) any { return map[string]any{"charge_id": s, "reason": "x"} }, 400, "unknown-field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, pspsim.Config{})
			ok := b.chargeOf(t, "ok", 100, pspsim.TokenVisa)
			declined := b.chargeOf(t, "no", 100, pspsim.TokenChargeDeclined)
			problem(t, b.postRefund(t, tt.key, tt.body(ok, declined)), tt.wantStatus, tt.wantClass)
			if s := b.sim.Stats(); s.RefundsCreated != 0 || len(s.RefundedByCharge) != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestListRefundsErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Config{})
	ch := b.chargeOf(t, "c", 100, pspsim.TokenVisa)
	r := b.do(t, request{method: http.MethodGet, path: "/refunds?charge_id=" + ch})
	if r.status != http.StatusOK || string(bytes.TrimSpace(r.body)) != `{"refunds":[]}` {
		t.Fatalf("no refunds: %d %s", r.status, r.body)
	}
	problem(t, b.do(t, request{method: http.MethodGet, path: "/refunds?charge_id=ch_x"}), 404, "charge-not-found")
	problem(t, b.do(t, request{method: http.MethodGet, path: "/refunds"}), 400, "missing-parameter")
}

// Concurrent refunds with different keys never refund more than the
// charge: of 20 refunds of 100 on a charge of 1000, exactly 10 succeed.
func TestRefundConcurrentNeverExceeds(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Config{})
	ch := b.chargeOf(t, "c", 1000, pspsim.TokenVisa)
	const n = 20
	reqs := make([]request, n)
	for i := range reqs {
		reqs[i] = request{method: http.MethodPost, path: "/refunds", key: fmt.Sprintf("r-%d", i), body: refundBody{ChargeID: ch, AmountMinor: amount(100)}}
	}
	count := map[int]int{}
	for _, r := range b.concurrently(t, reqs) {
		count[r.status]++
	}
	if count[http.StatusCreated] != 10 || count[http.StatusUnprocessableEntity] != 10 {
		t.Fatalf("statuses %v, want 10×201 and 10×422", count)
	}
	if s := b.sim.Stats(); s.RefundedByCharge[ch] != 1000 || s.RefundsCreated != 10 {
		t.Fatalf("stats %+v", s)
	}
}
