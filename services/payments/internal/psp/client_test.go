package psp_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/shopfloor/shopfloor/services/payments/internal/psp"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

func TestChargeSucceedsAndReplays(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Faults{}, 0)
	ctx := context.Background()
	ch, err := b.client.Charge(ctx, "attempt-1", visa("order-1"))
	wantClass(t, err, psp.ClassNone)
	if ch.ID == "" || ch.Status != psp.StatusSucceeded || ch.AmountMinor != 4999 || ch.Currency != "EUR" ||
		ch.Reference != "order-1" || ch.IdempotencyKey != "attempt-1" || ch.PaymentMethod != pspsim.TokenVisa ||
		ch.CreatedAt.IsZero() || ch.Replayed {
		t.Fatalf("charge %+v", ch)
	}
	again, err := b.client.Charge(ctx, "attempt-1", visa("order-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Replayed {
		t.Fatal("second call with the key not marked Replayed")
	}
	again.Replayed = false
	if again != ch {
		t.Fatalf("replay %+v, want %+v", again, ch)
	}
	found, err := b.client.FindCharge(ctx, "attempt-1")
	if err != nil || found != ch {
		t.Fatalf("FindCharge = %+v, %v; want %+v", found, err, ch)
	}
	if s := b.sim.Stats(); s.ChargesCreated != 1 || s.SucceededByReference["order-1"] != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDeclinedChargeIsADeclinedErrorWithItsCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		token, code string
	}{
		{pspsim.TokenChargeDeclined, "card_declined"},
		{pspsim.TokenInsufficientFunds, "insufficient_funds"},
		{pspsim.TokenExpiredCard, "expired_card"},
	}
	for _, tt := range tests {
		t.Run(tt.token, func(t *testing.T) {
			t.Parallel()
			b := setup(t, pspsim.Faults{}, 0)
			ctx := context.Background()
			req := psp.ChargeRequest{AmountMinor: 100, Currency: "EUR", PaymentMethod: tt.token, Reference: "order-d"}
			ch, err := b.client.Charge(ctx, "k", req)
			wantClass(t, err, psp.ClassDeclined)
			var de *psp.DeclinedError
			if !errors.As(err, &de) {
				t.Fatalf("err %T %v, want *DeclinedError", err, err)
			}
			if de.Code != tt.code || de.Charge.Status != psp.StatusDeclined || de.Charge.DeclineCode != tt.code ||
				!strings.HasPrefix(de.Charge.ID, "ch_") || de.Charge.Replayed {
				t.Fatalf("declined error %+v", de)
			}
			if ch != (psp.Charge{}) {
				t.Fatalf("charge %+v returned with an error", ch)
			}
			if !strings.Contains(err.Error(), tt.code) {
				t.Fatalf("error %q does not name the code", err)
			}

			// A retry with the key replays the decline: final.
			_, err = b.client.Charge(ctx, "k", req)
			var again *psp.DeclinedError
			if !errors.As(err, &again) || again.Charge.ID != de.Charge.ID || !again.Charge.Replayed {
				t.Fatalf("retry: %v", err)
			}
			// A lookup finds the declined charge; that is an answer, not an error.
			found, err := b.client.FindCharge(ctx, "k")
			if err != nil || found.ID != de.Charge.ID || found.Status != psp.StatusDeclined || found.DeclineCode != tt.code {
				t.Fatalf("FindCharge = %+v, %v", found, err)
			}
			if s := b.sim.Stats(); s.ChargesCreated != 1 || s.ChargesSucceeded != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestInvalidChargeIsRefusedBeforeTheCallOrAsAStatusError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		key        string
		req        psp.ChargeRequest
		before     func(t *testing.T, c *psp.Client) // a call made first
		wantStatus int                               // 0: refused before sending
		wantType   string
		wantSent   bool
	}{
		{name: "unknown token", key: "k", req: psp.ChargeRequest{AmountMinor: 1, Currency: "EUR", PaymentMethod: "tok_nope", Reference: "o"},
			wantStatus: 400, wantType: "invalid-field", wantSent: true},
		{name: "zero amount", key: "k", req: psp.ChargeRequest{Currency: "EUR", PaymentMethod: pspsim.TokenVisa, Reference: "o"},
			wantStatus: 400, wantType: "invalid-field", wantSent: true},
		{name: "key reused with another body", key: "k", req: visa("order-2"),
			before: func(t *testing.T, c *psp.Client) {
				if _, err := c.Charge(context.Background(), "k", visa("order-1")); err != nil {
					t.Fatal(err)
				}
			}, wantStatus: 422, wantType: "idempotency-key-reused", wantSent: true},
		{name: "empty key", key: "", req: visa("o")},
		{name: "key too long", key: strings.Repeat("x", psp.MaxIdempotencyKeyLen+1), req: visa("o")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, pspsim.Faults{}, 0)
			if tt.before != nil {
				tt.before(t, b.client)
			}
			sentBefore := b.sim.Stats().Requests[pspsim.RouteCreateCharge]
			_, err := b.client.Charge(context.Background(), tt.key, tt.req)
			wantClass(t, err, psp.ClassInvalid)
			if tt.wantStatus == 0 {
				if !errors.Is(err, psp.ErrInvalidArgument) {
					t.Fatalf("err %v, want ErrInvalidArgument", err)
				}
				if after := b.sim.Stats().Requests[pspsim.RouteCreateCharge]; len(after) != len(sentBefore) {
					t.Fatalf("a refused call reached the provider: %v", after)
				}
				return
			}
			var se *psp.StatusError
			if !errors.As(err, &se) || se.StatusCode != tt.wantStatus || !strings.HasSuffix(se.Type, "/"+tt.wantType) || se.Detail == "" {
				t.Fatalf("err %#v, want a %d %s StatusError", err, tt.wantStatus, tt.wantType)
			}
			if errors.Is(err, psp.ErrNotFound) {
				t.Fatal("a 4xx other than 404 matches ErrNotFound")
			}
		})
	}
}

func TestChargeConcurrentSameKey(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Faults{}, 0)
	const n = 50
	charges := make([]psp.Charge, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { charges[i], errs[i] = b.client.Charge(context.Background(), "same", visa("order-c")) })
	}
	wg.Wait()
	replayed := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if charges[i].ID != charges[0].ID {
			t.Fatalf("two charge ids: %s and %s", charges[0].ID, charges[i].ID)
		}
		if charges[i].Replayed {
			replayed++
		}
	}
	if replayed != n-1 {
		t.Fatalf("%d replayed, want %d", replayed, n-1)
	}
	if s := b.sim.Stats(); s.ChargesCreated != 1 || s.ChargesByIdempotencyKey["same"] != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestFindChargeNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Faults{}, 0)
	_, err := b.client.FindCharge(context.Background(), "never-used")
	if !errors.Is(err, psp.ErrNotFound) {
		t.Fatalf("err %v, want ErrNotFound", err)
	}
	wantClass(t, err, psp.ClassInvalid)
	if _, err := b.client.FindCharge(context.Background(), ""); !errors.Is(err, psp.ErrInvalidArgument) {
		t.Fatalf("empty key: %v", err)
	}
}

func TestRefundsArePartialReplayedAndRefusedBeyondTheCharge(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Faults{}, 0)
	ctx := context.Background()
	ch, err := b.client.Charge(ctx, "c", psp.ChargeRequest{AmountMinor: 1000, Currency: "EUR", PaymentMethod: pspsim.TokenVisa, Reference: "o"})
	if err != nil {
		t.Fatal(err)
	}
	_, declined := b.client.Charge(ctx, "d", psp.ChargeRequest{AmountMinor: 1000, Currency: "EUR", PaymentMethod: pspsim.TokenChargeDeclined, Reference: "o2"})
	var de *psp.DeclinedError
	if !errors.As(declined, &de) {
		t.Fatalf("decline setup: %v", declined)
	}

	partial, err := b.client.Refund(ctx, "r-1", psp.RefundRequest{ChargeID: ch.ID, AmountMinor: 300})
	if err != nil || partial.AmountMinor != 300 || partial.ChargeID != ch.ID || partial.Status != "succeeded" ||
		partial.IdempotencyKey != "r-1" || !strings.HasPrefix(partial.ID, "re_") || partial.Replayed {
		t.Fatalf("partial = %+v, %v", partial, err)
	}
	replay, err := b.client.Refund(ctx, "r-1", psp.RefundRequest{ChargeID: ch.ID, AmountMinor: 300})
	if err != nil || replay.ID != partial.ID || !replay.Replayed {
		t.Fatalf("replay = %+v, %v", replay, err)
	}

	_, err = b.client.Refund(ctx, "r-2", psp.RefundRequest{ChargeID: ch.ID, AmountMinor: 701})
	var se *psp.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(se.Detail, "refund exceeds charge") {
		t.Fatalf("exceeding: %v", err)
	}
	wantClass(t, err, psp.ClassInvalid)

	rest, err := b.client.Refund(ctx, "r-3", psp.RefundRequest{ChargeID: ch.ID}) // what remains
	if err != nil || rest.AmountMinor != 700 {
		t.Fatalf("full remaining = %+v, %v", rest, err)
	}
	if _, err := b.client.Refund(ctx, "r-4", psp.RefundRequest{ChargeID: ch.ID, AmountMinor: 1}); psp.Classify(err) != psp.ClassInvalid {
		t.Fatalf("refund of a fully refunded charge: %v", err)
	}

	tests := []struct {
		name    string
		key     string
		req     psp.RefundRequest
		wantIs  error
		wantMsg string
	}{
		{"unknown charge", "x1", psp.RefundRequest{ChargeID: "ch_missing"}, psp.ErrNotFound, ""},
		{"declined charge", "x2", psp.RefundRequest{ChargeID: de.Charge.ID}, nil, "only a succeeded charge"},
		{"no charge id", "x3", psp.RefundRequest{}, psp.ErrInvalidArgument, ""},
		{"negative amount", "x4", psp.RefundRequest{ChargeID: ch.ID, AmountMinor: -1}, psp.ErrInvalidArgument, ""},
		{"no key", "", psp.RefundRequest{ChargeID: ch.ID}, psp.ErrInvalidArgument, ""},
	}
	for _, tt := range tests {
		_, err := b.client.Refund(ctx, tt.key, tt.req)
		if psp.Classify(err) != psp.ClassInvalid {
			t.Errorf("%s: %v is %s, want invalid", tt.name, err, psp.Classify(err))
		}
		if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
			t.Errorf("%s: %v does not match %v", tt.name, err, tt.wantIs)
		}
		if tt.wantMsg != "" && (err == nil || !strings.Contains(err.Error(), tt.wantMsg)) {
			t.Errorf("%s: %v does not say %q", tt.name, err, tt.wantMsg)
		}
	}
	if s := b.sim.Stats(); s.RefundsCreated != 2 || s.RefundedByCharge[ch.ID] != 1000 {
		t.Fatalf("stats %+v", s)
	}
}

// A base URL with a path prefix keeps it.
func TestBaseURLPrefix(t *testing.T) {
	t.Parallel()
	sim, err := pspsim.New(pspsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/psp/", http.StripPrefix("/psp", sim.Handler()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	for _, base := range []string{srv.URL + "/psp", srv.URL + "/psp/"} {
		c, err := psp.New(psp.Config{BaseURL: base})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Charge(context.Background(), "k", visa("o")); err != nil {
			t.Fatalf("%s: %v", base, err)
		}
	}
	if s := sim.Stats(); s.ChargesCreated != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestNewAcceptsOnlyAnAbsoluteHTTPBaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  psp.Config
		ok   bool
	}{
		{"http", psp.Config{BaseURL: "http://psp:8080"}, true},
		{"https with path", psp.Config{BaseURL: "https://psp.example/v1"}, true},
		{"empty", psp.Config{}, false},
		{"no scheme", psp.Config{BaseURL: "psp:8080"}, false},
		{"relative", psp.Config{BaseURL: "/charges"}, false},
		{"ftp", psp.Config{BaseURL: "ftp://psp"}, false},
		{"query", psp.Config{BaseURL: "http://psp/?x=1"}, false},
		{"bad URL", psp.Config{BaseURL: "http://[::1"}, false},
		{"negative timeout", psp.Config{BaseURL: "http://psp", Timeout: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := psp.New(tt.cfg)
			if tt.ok != (err == nil) || tt.ok != (c != nil) {
				t.Fatalf("New(%+v) = %v, %v", tt.cfg, c, err)
			}
		})
	}
}
