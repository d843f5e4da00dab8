package pspsim_test

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

func TestChargeOutcomeFollowsTheTestToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		token      string
		wantStatus int
		wantState  string
		wantCode   string
	}{
		{pspsim.TokenVisa, http.StatusCreated, pspsim.StatusSucceeded, ""},
		{pspsim.TokenMastercard, http.StatusCreated, pspsim.StatusSucceeded, ""},
		{pspsim.TokenChargeDeclined, http.StatusPaymentRequired, pspsim.StatusDeclined, pspsim.DeclineCardDeclined},
		{pspsim.TokenInsufficientFunds, http.StatusPaymentRequired, pspsim.StatusDeclined, pspsim.DeclineInsufficientFunds},
		{pspsim.TokenExpiredCard, http.StatusPaymentRequired, pspsim.StatusDeclined, pspsim.DeclineExpiredCard},
	}
	for _, tt := range tests {
		t.Run(tt.token, func(t *testing.T) {
			t.Parallel()
			b := setup(t, pspsim.Config{})
			r := b.postCharge(t, "key-1", charge{AmountMinor: 1250, Currency: "USD", PaymentMethod: tt.token, Reference: "order-1"})
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", r.status, tt.wantStatus, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("Content-Type %q", ct)
			}
			if r.header.Get(pspsim.HeaderReplayed) != "" {
				t.Fatalf("first response carries %s", pspsim.HeaderReplayed)
			}
			c := decodeCharge(t, r)
			want := pspsim.Charge{
				ID: c.ID, Status: tt.wantState, AmountMinor: 1250, Currency: "USD", PaymentMethod: tt.token,
				Reference: "order-1", IdempotencyKey: "key-1", DeclineCode: tt.wantCode, CreatedAt: clock,
			}
			if c != want {
				t.Fatalf("charge %+v, want %+v", c, want)
			}
			if !strings.HasPrefix(c.ID, "ch_") || len(c.ID) != len("ch_")+32 {
				t.Fatalf("id %q is not ch_ + 32 hex digits", c.ID)
			}

			s := b.sim.Stats()
			succeeded := 0
			if tt.wantState == pspsim.StatusSucceeded {
				succeeded = 1
			}
			if s.ChargesCreated != 1 || s.ChargesSucceeded != succeeded || s.ChargesDeclined != 1-succeeded {
				t.Fatalf("stats %+v", s)
			}
			if s.ChargesByIdempotencyKey["key-1"] != 1 || s.SucceededByReference["order-1"] != succeeded {
				t.Fatalf("stats %+v", s)
			}
			wantOutcome := pspsim.OutcomeCreated
			if succeeded == 0 {
				wantOutcome = pspsim.OutcomeDeclined
			}
			if n := requests(s, pspsim.RouteCreateCharge, wantOutcome); n != 1 {
				t.Fatalf("requests %v, want one %s", s.Requests, wantOutcome)
			}
		})
	}
}

func TestInvalidChargeIsAProblemNamingTheFieldAndLeavesTheKeyFree(t *testing.T) {
	t.Parallel()
	valid := `{"amount_minor":100,"currency":"EUR","payment_method":"tok_visa","reference":"o-1"}`
	tests := []struct {
		name       string
		key        string
		body       string
		header     map[string]string
		wantStatus int
		wantClass  string
		wantFields []string
	}{
		{name: "missing key", body: valid, wantStatus: 400, wantClass: "missing-idempotency-key"},
		{name: "key too long", key: strings.Repeat("k", pspsim.MaxIdempotencyKeyLen+1), body: valid, wantStatus: 400, wantClass: "invalid-idempotency-key"},
		{name: "key with control byte", key: "a\tb", body: valid, wantStatus: 400, wantClass: "invalid-idempotency-key"},
		{name: "unknown token", key: "k", body: `{"amount_minor":100,"currency":"EUR","payment_method":"tok_amex","reference":"o-1"}`,
			wantStatus: 400, wantClass: "invalid-field", wantFields: []string{"payment_method"}},
		{name: "card number instead of token", key: "k", body: `{"amount_minor":100,"currency":"EUR","payment_method":"4242424242424242","reference":"o-1"}`,
			wantStatus: 400, wantClass: "invalid-field", wantFields: []string{"payment_method"}},
		{name: "zero amount", key: "k", body: `{"amount_minor":0,"currency":"EUR","payment_method":"tok_visa","reference":"o-1"}`,
			wantStatus: 400, wantClass: "invalid-field", wantFields: []string{"amount_minor"}},
		{name: "negative amount", key: "k", body: `{"amount_minor":-5,"currency":"EUR","payment_method":"tok_visa","reference":"o-1"}`,
			wantStatus: 400, wantClass: "invalid-field", wantFields: []string{"amount_minor"}},
		{name: "lower-case currency", key: "k", body: `{"amount_minor":100,"currency":"eur","payment_method":"tok_visa","reference":"o-1"}`,
			wantStatus: 400, wantClass: "invalid-field", wantFields: []string{"currency"}},
		{name: "four-letter currency", key: "k", body: `{"amount_minor":100,"currency":"EURO","payment_method":"tok_visa","reference":"o-1"}`,
			wantStatus: 400, wantClass: "invalid-field", wantFields: []string{"currency"}},
		{name: "missing reference", key: "k", body: `{"amount_minor":100,"currency":"EUR","payment_method":"tok_visa"}`,
			wantStatus: 400, wantClass: "invalid-field", wantFields: []string{"reference"}},
		{name: "everything wrong", key: "k", body: `{"amount_minor":0,"currency":"","payment_method":"","reference":""}`,
			wantStatus: 400, wantClass: "invalid-field", wantFields: []string{"amount_minor", "currency", "payment_method", "reference"}},
		{name: "amount as string", key: "k", body: `{"amount_minor":"100","currency":"EUR","payment_method":"tok_visa","reference":"o-1"}`,
			wantStatus: 400, wantClass: "invalid-field", wantFields: []string{"amount_minor"}},
		{name: "unknown field", key: "k", body: `{"amount_minor":100,"currency":"EUR","payment_method":"tok_visa","reference":"o-1","card":"4242"}`,
			wantStatus: 400, wantClass: "unknown-field"},
		{name: "malformed JSON", key: "k", body: `{"amount_minor":100,`, wantStatus: 400, wantClass: "malformed-json"},
		{name: "empty body", key: "k", body: ``, header: map[string]string{"Content-Type": "application/json"}, wantStatus: 400, wantClass: "empty-body"},
		{name: "not JSON", key: "k", body: valid, header: map[string]string{"Content-Type": "text/plain"}, wantStatus: 415, wantClass: "unsupported-media-type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, pspsim.Config{})
			r := b.do(t, request{method: http.MethodPost, path: "/charges", key: tt.key, body: tt.body, header: tt.header})
			p := problem(t, r, tt.wantStatus, tt.wantClass)
			var fields []string
			for _, fe := range p.Errors {
				fields = append(fields, fe.Field)
			}
			if tt.wantFields != nil && !slices.Equal(fields, tt.wantFields) {
				t.Fatalf("fields %v, want %v (%s)", fields, tt.wantFields, r.body)
			}
			if p.Detail == "" {
				t.Fatal("a problem without detail gives a person nothing to act on")
			}
			s := b.sim.Stats()
			if s.ChargesCreated != 0 || requests(s, pspsim.RouteCreateCharge, pspsim.OutcomeInvalid) != 1 {
				t.Fatalf("stats %+v", s)
			}
			// Nothing was stored: a valid request with the same key is new.
			if tt.key != "" && len(tt.key) <= pspsim.MaxIdempotencyKeyLen && !strings.ContainsAny(tt.key, "\t") {
				r := b.postCharge(t, tt.key, visa("o-1"))
				if r.status != http.StatusCreated || r.header.Get(pspsim.HeaderReplayed) != "" {
					t.Fatalf("after a refused request the key is not free: %d %v %s", r.status, r.header, r.body)
				}
			}
		})
	}
}

func TestChargeWithTheSameKeyAndParametersIsReplayed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		token      string
		wantStatus int
	}{
		{"succeeded", pspsim.TokenVisa, http.StatusCreated},
		{"declined", pspsim.TokenInsufficientFunds, http.StatusPaymentRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, pspsim.Config{})
			body := charge{AmountMinor: 700, Currency: "EUR", PaymentMethod: tt.token, Reference: "order-7"}
			first := b.postCharge(t, "attempt-7", body)
			if first.status != tt.wantStatus {
				t.Fatalf("first: %d %s", first.status, first.body)
			}
			// The same parameters, written differently, are the same request.
			reordered := `{ "reference":"order-7", "payment_method":"` + tt.token + `", "currency":"EUR", "amount_minor":700 }`
			for i, again := range []resp{
				b.postCharge(t, "attempt-7", body),
				b.do(t, request{method: http.MethodPost, path: "/charges", key: "attempt-7", body: reordered}),
			} {
				if again.status != first.status || !bytes.Equal(again.body, first.body) {
					t.Fatalf("replay %d: %d %s, want %d %s", i, again.status, again.body, first.status, first.body)
				}
				if got := again.header.Get(pspsim.HeaderReplayed); got != "true" {
					t.Fatalf("replay %d: %s = %q, want true", i, pspsim.HeaderReplayed, got)
				}
			}
			s := b.sim.Stats()
			if s.ChargesCreated != 1 || s.ChargesByIdempotencyKey["attempt-7"] != 1 ||
				requests(s, pspsim.RouteCreateCharge, pspsim.OutcomeReplayed) != 2 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestChargeKeyReusedWithOtherBody(t *testing.T) {
	t.Parallel()
	base := visa("order-1")
	tests := []struct {
		name   string
		change func(*charge)
	}{
		{"amount", func(c *charge) { c.AmountMinor++ }},
		{"currency", func(c *charge) { c.Currency = "USD" }},
		{"payment method", func(c *charge) { c.PaymentMethod = pspsim.TokenMastercard }},
		{"reference", func(c *charge) { c.Reference = "order-2" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, pspsim.Config{})
			first := b.postCharge(t, "k", base)
			other := base
			tt.change(&other)
			r := b.postCharge(t, "k", other)
			problem(t, r, http.StatusUnprocessableEntity, "idempotency-key-reused")
			// The stored charge is untouched and still replays.
			again := b.postCharge(t, "k", base)
			if !bytes.Equal(again.body, first.body) {
				t.Fatalf("replay after 422: %s, want %s", again.body, first.body)
			}
			s := b.sim.Stats()
			if s.ChargesCreated != 1 || requests(s, pspsim.RouteCreateCharge, pspsim.OutcomeKeyReused) != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestChargeConcurrentSameKey(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Config{})
	const n = 50
	reqs := make([]request, n)
	for i := range reqs {
		reqs[i] = request{method: http.MethodPost, path: "/charges", key: "one-key", body: visa("order-c")}
	}
	results := b.concurrently(t, reqs)
	ids := map[string]int{}
	replayed := 0
	for _, r := range results {
		if r.status != http.StatusCreated {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		ids[decodeCharge(t, r).ID]++
		if r.header.Get(pspsim.HeaderReplayed) == "true" {
			replayed++
		}
	}
	if len(ids) != 1 || replayed != n-1 {
		t.Fatalf("ids %v, replayed %d: want one id and %d replays", ids, replayed, n-1)
	}
	s := b.sim.Stats()
	if s.ChargesCreated != 1 || s.ChargesByIdempotencyKey["one-key"] != 1 || s.SucceededByReference["order-c"] != 1 {
		t.Fatalf("stats %+v", s)
	}
	if d := b.sim.DoubleCharges(); len(d) != 0 {
		t.Fatalf("double charges %v", d)
	}
}

func TestDoubleChargesListsReferencesChargedMoreThanOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Config{})
	// order-a: charged twice with two keys (a client bug the simulator must catch).
	b.postCharge(t, "a-1", visa("order-a"))
	b.postCharge(t, "a-2", visa("order-a"))
	// order-b: a decline, then a success: one charge taken, not a double.
	b.postCharge(t, "b-1", charge{AmountMinor: 10, Currency: "EUR", PaymentMethod: pspsim.TokenChargeDeclined, Reference: "order-b"})
	b.postCharge(t, "b-2", visa("order-b"))
	// order-c: one charge, replayed.
	b.postCharge(t, "c-1", visa("order-c"))
	b.postCharge(t, "c-1", visa("order-c"))
	// order-0: charged three times, sorts first.
	for i := range 3 {
		b.postCharge(t, fmt.Sprintf("z-%d", i), visa("order-0"))
	}

	want := []string{"order-0", "order-a"}
	if got := b.sim.DoubleCharges(); !slices.Equal(got, want) {
		t.Fatalf("DoubleCharges() = %v, want %v", got, want)
	}
	s := b.sim.Stats()
	if !slices.Equal(s.DoubleCharges, want) {
		t.Fatalf("Stats().DoubleCharges = %v, want %v", s.DoubleCharges, want)
	}
	wantRef := map[string]int{"order-a": 2, "order-b": 1, "order-c": 1, "order-0": 3}
	for ref, n := range wantRef {
		if s.SucceededByReference[ref] != n {
			t.Errorf("SucceededByReference[%s] = %d, want %d", ref, s.SucceededByReference[ref], n)
		}
	}
	if s.ChargesCreated != 8 || s.ChargesSucceeded != 7 || s.ChargesDeclined != 1 {
		t.Fatalf("stats %+v", s)
	}
	for key, n := range s.ChargesByIdempotencyKey {
		if n != 1 {
			t.Fatalf("key %s has %d charges", key, n)
		}
	}
}

func TestChargeLookupsByKeyAndIDAnswerTheStoredBody(t *testing.T) {
	t.Parallel()
	// Each case gets its own simulator with one succeeded and one declined
	// charge, so that counts are exact.
	type fixture struct {
		b                 *bundle
		created, declined resp
		okID, declinedID  string
	}
	setupLookups := func(t *testing.T) fixture {
		b := setup(t, pspsim.Config{})
		f := fixture{b: b}
		f.created = b.postCharge(t, "key-ok", visa("order-1"))
		f.declined = b.postCharge(t, "key-declined", charge{AmountMinor: 5, Currency: "EUR", PaymentMethod: pspsim.TokenExpiredCard, Reference: "order-2"})
		f.okID, f.declinedID = decodeCharge(t, f.created).ID, decodeCharge(t, f.declined).ID
		return f
	}
	tests := []struct {
		name       string
		path       func(f fixture) string
		wantStatus int
		wantBody   func(f fixture) []byte // the body the charge was created with
		wantClass  string
		route      string
		outcome    string
	}{
		{name: "by key", path: func(fixture) string { return "/charges?idempotency_key=key-ok" }, wantStatus: 200,
			wantBody: func(f fixture) []byte { return f.created.body }, route: pspsim.RouteFindCharge, outcome: pspsim.OutcomeFound},
		{name: "declined by key", path: func(fixture) string { return "/charges?idempotency_key=key-declined" }, wantStatus: 200,
			wantBody: func(f fixture) []byte { return f.declined.body }, route: pspsim.RouteFindCharge, outcome: pspsim.OutcomeFound},
		{name: "by id", path: func(f fixture) string { return "/charges/" + f.okID }, wantStatus: 200,
			wantBody: func(f fixture) []byte { return f.created.body }, route: pspsim.RouteGetCharge, outcome: pspsim.OutcomeFound},
		{name: "declined by id", path: func(f fixture) string { return "/charges/" + f.declinedID }, wantStatus: 200,
			wantBody: func(f fixture) []byte { return f.declined.body }, route: pspsim.RouteGetCharge, outcome: pspsim.OutcomeFound},
		{name: "unknown key", path: func(fixture) string { return "/charges?idempotency_key=nope" }, wantStatus: 404,
			wantClass: "charge-not-found", route: pspsim.RouteFindCharge, outcome: pspsim.OutcomeNotFound},
		{name: "unknown id", path: func(fixture) string { return "/charges/ch_nope" }, wantStatus: 404,
			wantClass: "charge-not-found", route: pspsim.RouteGetCharge, outcome: pspsim.OutcomeNotFound},
		{name: "no key", path: func(fixture) string { return "/charges" }, wantStatus: 400,
			wantClass: "missing-parameter", route: pspsim.RouteFindCharge, outcome: pspsim.OutcomeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := setupLookups(t)
			r := f.b.do(t, request{method: http.MethodGet, path: tt.path(f)})
			if tt.wantClass != "" {
				problem(t, r, tt.wantStatus, tt.wantClass)
			} else if want := tt.wantBody(f); r.status != tt.wantStatus || !bytes.Equal(r.body, want) {
				t.Fatalf("%d %s, want %d %s", r.status, r.body, tt.wantStatus, want)
			}
			s := f.b.sim.Stats()
			if n := requests(s, tt.route, tt.outcome); n != 1 {
				t.Fatalf("%s/%s counted %d times, want 1: %v", tt.route, tt.outcome, n, s.Requests)
			}
			if s.ChargesCreated != 2 {
				t.Fatalf("a lookup created something: %+v", s)
			}
		})
	}
}

func TestUnknownRouteAndMethod(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Config{})
	problem(t, b.do(t, request{method: http.MethodGet, path: "/payouts"}), http.StatusNotFound, "not-found")
	r := b.do(t, request{method: http.MethodDelete, path: "/charges"})
	problem(t, r, http.StatusMethodNotAllowed, "method-not-allowed")
	if r.header.Get("Allow") == "" {
		t.Fatal("405 without Allow")
	}
	if r := b.do(t, request{method: http.MethodGet, path: "/healthz"}); r.status != http.StatusOK {
		t.Fatalf("healthz %d", r.status)
	}
}
