package pspsim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

// faultRoutes are the requests faults apply to, one per route, valid
// apart from the fault.
func faultRoutes(chargeID string) []request {
	return []request{
		{method: http.MethodPost, path: "/charges", key: "k-charge", body: visa("order-f")},
		{method: http.MethodGet, path: "/charges?idempotency_key=k-charge"},
		{method: http.MethodGet, path: "/charges/" + chargeID},
		{method: http.MethodPost, path: "/refunds", key: "k-refund", body: refundBody{ChargeID: chargeID}},
		{method: http.MethodGet, path: "/refunds?charge_id=" + chargeID},
	}
}

func TestErrorRateAnswers5xxAndProcessesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Config{Seed: 1})
	ch := b.chargeOf(t, "existing", 100, pspsim.TokenVisa)
	if err := b.sim.SetFaults(pspsim.Faults{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for range 10 {
		for _, req := range faultRoutes(ch) {
			r := b.do(t, req)
			if r.status != http.StatusInternalServerError && r.status != http.StatusServiceUnavailable {
				t.Fatalf("%s %s: status %d, want 500 or 503; %s", req.method, req.path, r.status, r.body)
			}
			problem(t, r, r.status, "simulated-error")
			seen[r.status] = true
		}
	}
	if !seen[500] || !seen[503] {
		t.Fatalf("statuses seen %v, want both 500 and 503", seen)
	}
	// Admin routes are never faulted.
	if r := b.do(t, request{method: http.MethodGet, path: "/admin/stats"}); r.status != http.StatusOK {
		t.Fatalf("admin/stats: %d", r.status)
	}
	s := b.sim.Stats()
	if s.ChargesCreated != 1 || s.RefundsCreated != 0 {
		t.Fatalf("a 5xx fault processed something: %+v", s)
	}
	for _, route := range []string{pspsim.RouteCreateCharge, pspsim.RouteFindCharge, pspsim.RouteGetCharge, pspsim.RouteCreateRefund, pspsim.RouteListRefunds} {
		if n := requests(s, route, pspsim.OutcomeFaultError); n != 10 {
			t.Errorf("%s: %d fault_error, want 10", route, n)
		}
	}
}

func TestRateLimitAnswers429WithRetryAfterRoundedUp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		retryAfter time.Duration
		want       string
	}{
		{0, "1"}, // DefaultRetryAfter
		{1500 * time.Millisecond, "2"},
		{3 * time.Second, "3"},
	}
	for _, tt := range tests {
		t.Run(tt.retryAfter.String(), func(t *testing.T) {
			t.Parallel()
			b := setup(t, pspsim.Config{})
			ch := b.chargeOf(t, "existing", 100, pspsim.TokenVisa)
			if err := b.sim.SetFaults(pspsim.Faults{RateLimitRate: 1, RetryAfter: tt.retryAfter}); err != nil {
				t.Fatal(err)
			}
			for _, req := range faultRoutes(ch) {
				r := b.do(t, req)
				if req.method == http.MethodGet {
					// Lookups are not rate limited.
					if r.status == http.StatusTooManyRequests {
						t.Fatalf("%s %s rate limited", req.method, req.path)
					}
					continue
				}
				problem(t, r, http.StatusTooManyRequests, "rate-limited")
				if got := r.header.Get("Retry-After"); got != tt.want {
					t.Fatalf("Retry-After %q, want %q", got, tt.want)
				}
			}
			s := b.sim.Stats()
			if s.ChargesCreated != 1 || s.RefundsCreated != 0 ||
				requests(s, pspsim.RouteCreateCharge, pspsim.OutcomeFaultRateLimited) != 1 ||
				requests(s, pspsim.RouteCreateRefund, pspsim.OutcomeFaultRateLimited) != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// A client that gives up during the simulated latency leaves nothing
// behind: the request is not processed, and the key stays free.
func TestLatencyClientGivesUp(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Config{Faults: pspsim.Faults{Latency: time.Hour}})
	// The client's patience ends a little after it sent the request, so
	// that the server has read it even on a loaded machine (cancelling at
	// once may close the connection before the handler starts).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
		if info.Err == nil {
			time.AfterFunc(300*time.Millisecond, cancel)
		}
	}})
	_, err := b.try(t, ctx, request{method: http.MethodPost, path: "/charges", key: "slow", body: visa("order-s")})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if n := requests(b.sim.Stats(), pspsim.RouteCreateCharge, pspsim.OutcomeClientGone); n != 1 {
			return fmt.Errorf("client_gone counted %d times", n)
		}
		return nil
	})
	if s := b.sim.Stats(); s.ChargesCreated != 0 {
		t.Fatalf("processed during latency: %+v", s)
	}
	if err := b.sim.SetFaults(pspsim.Faults{Latency: time.Nanosecond}); err != nil {
		t.Fatal(err)
	}
	r := b.postCharge(t, "slow", visa("order-s"))
	if r.status != http.StatusCreated || r.header.Get(pspsim.HeaderReplayed) != "" {
		t.Fatalf("after latency: %d %v %s", r.status, r.header, r.body)
	}
}

// TimeoutAfterChargeRate: the charge exists, the client only sees a
// timeout; a lookup by key finds it, and retries with the key never create
// a second one.
func TestTimeoutAfterCharge(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Config{Faults: pspsim.Faults{TimeoutAfterChargeRate: 1}})
	timeout := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	req := request{method: http.MethodPost, path: "/charges", key: "amb-1", body: visa("order-amb")}
	if _, err := b.try(t, timeout(), req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want a timeout", err)
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if s := b.sim.Stats(); s.ChargesCreated != 1 {
			return fmt.Errorf("%d charges", s.ChargesCreated)
		}
		return nil
	})
	found := b.do(t, request{method: http.MethodGet, path: "/charges?idempotency_key=amb-1"})
	if found.status != http.StatusOK {
		t.Fatalf("lookup: %d %s", found.status, found.body)
	}
	c := decodeCharge(t, found)
	if c.Status != pspsim.StatusSucceeded || c.Reference != "order-amb" {
		t.Fatalf("found %+v", c)
	}

	// A retry with the same key while the fault lasts: processed (a
	// replay), unanswered again, still one charge.
	if _, err := b.try(t, timeout(), req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("retry: err %v, want a timeout", err)
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if n := requests(b.sim.Stats(), pspsim.RouteCreateCharge, pspsim.OutcomeFaultTimeout); n < 2 {
			return fmt.Errorf("%d timeouts after processing", n)
		}
		return nil
	})

	// Refunds are processed, then unanswered, too.
	if _, err := b.try(t, timeout(), request{method: http.MethodPost, path: "/refunds", key: "ref-1", body: refundBody{ChargeID: c.ID}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("refund: err %v, want a timeout", err)
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if s := b.sim.Stats(); s.RefundedByCharge[c.ID] != c.AmountMinor {
			return fmt.Errorf("refunded %d", s.RefundedByCharge[c.ID])
		}
		return nil
	})

	// Once the fault is gone, the retry gets the stored charge.
	if err := b.sim.SetFaults(pspsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	r := b.do(t, req)
	if r.status != http.StatusCreated || r.header.Get(pspsim.HeaderReplayed) != "true" || decodeCharge(t, r).ID != c.ID {
		t.Fatalf("retry after the fault: %d %v %s", r.status, r.header, r.body)
	}
	s := b.sim.Stats()
	if s.ChargesCreated != 1 || s.ChargesByIdempotencyKey["amb-1"] != 1 || s.SucceededByReference["order-amb"] != 1 || len(s.DoubleCharges) != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// When Hang passes before the client gives up, the connection is dropped
// without an answer.
func TestTimeoutAfterChargeHangEnds(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Config{Faults: pspsim.Faults{TimeoutAfterChargeRate: 1, Hang: 10 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := b.try(t, ctx, request{method: http.MethodPost, path: "/charges", key: "k", body: charge{
		AmountMinor: 10, Currency: "EUR", PaymentMethod: pspsim.TokenInsufficientFunds, Reference: "order-d",
	}})
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want a dropped connection", err)
	}
	// Declines are processed like successes.
	if s := b.sim.Stats(); s.ChargesCreated != 1 || s.ChargesDeclined != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDownSimulatorClosesConnectionsWithoutAnswering(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Config{})
	ch := b.chargeOf(t, "existing", 100, pspsim.TokenVisa)
	set := b.do(t, request{method: http.MethodPut, path: "/admin/faults", body: `{"down":true}`})
	if set.status != http.StatusOK {
		t.Fatalf("PUT /admin/faults: %d %s", set.status, set.body)
	}
	for _, req := range faultRoutes(ch) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := b.try(t, ctx, req)
		cancel()
		if err == nil {
			t.Fatalf("%s %s: answered %d %s, want no answer", req.method, req.path, r.status, r.body)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s %s: timed out, want the connection closed at once", req.method, req.path)
		}
	}
	// Probes and admin routes still answer.
	for _, path := range []string{"/healthz", "/readyz", "/admin/stats", "/admin/faults"} {
		if r := b.do(t, request{method: http.MethodGet, path: path}); r.status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, r.status)
		}
	}
	s := b.sim.Stats()
	if s.ChargesCreated != 1 || s.RefundsCreated != 0 {
		t.Fatalf("processed while down: %+v", s)
	}
	for _, route := range []string{pspsim.RouteCreateCharge, pspsim.RouteFindCharge, pspsim.RouteGetCharge, pspsim.RouteCreateRefund, pspsim.RouteListRefunds} {
		// net/http may resend an idempotent-looking request once on a
		// fresh connection, so at least one.
		if requests(s, route, pspsim.OutcomeFaultDown) < 1 {
			t.Errorf("%s: fault_down not counted: %v", route, s.Requests)
		}
	}
	// Back up.
	if r := b.do(t, request{method: http.MethodPut, path: "/admin/faults", body: `{}`}); r.status != http.StatusOK {
		t.Fatalf("PUT /admin/faults: %d", r.status)
	}
	if r := b.postCharge(t, "k-charge", visa("order-f")); r.status != http.StatusCreated {
		t.Fatalf("after down: %d %s", r.status, r.body)
	}
}

// Over HTTP/2 a connection cannot be hijacked: Down answers 503, and a
// withheld answer resets the stream.
func TestFaultsOverHTTP2(t *testing.T) {
	t.Parallel()
	sim, err := pspsim.New(pspsim.Config{Faults: pspsim.Faults{Down: true}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(sim.Handler())
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	b := &bundle{sim: sim, srv: srv}

	res, err := srv.Client().Do(b.newRequest(t, context.Background(), request{method: http.MethodPost, path: "/charges", key: "k", body: visa("o")}))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", res.Proto)
	}
	problem(t, resp{status: res.StatusCode, header: res.Header, body: body}, http.StatusServiceUnavailable, "simulated-outage")

	if err := sim.SetFaults(pspsim.Faults{TimeoutAfterChargeRate: 1, Hang: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := b.try(t, ctx, request{method: http.MethodPost, path: "/charges", key: "k", body: visa("o")}); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want a reset stream", err)
	}
	if s := sim.Stats(); s.ChargesCreated != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestAdminFaultsGetsAndSetsTheFaultsAndRefusesBadOnes(t *testing.T) {
	t.Parallel()
	initial := pspsim.Faults{Latency: time.Millisecond}
	t.Run("get and put", func(t *testing.T) {
		t.Parallel()
		b := setup(t, pspsim.Config{Faults: initial})
		r := b.do(t, request{method: http.MethodGet, path: "/admin/faults"})
		var got pspsim.Faults
		if err := json.Unmarshal(r.body, &got); err != nil || got != initial {
			t.Fatalf("GET: %s (%v), want %+v", r.body, err, initial)
		}
		body := `{"latency":"250ms","error_rate":0.1,"rate_limit_rate":0.2,"retry_after":"2s","timeout_after_charge_rate":0.3,"hang":"5s","down":true}`
		want := pspsim.Faults{Latency: 250 * time.Millisecond, ErrorRate: 0.1, RateLimitRate: 0.2, RetryAfter: 2 * time.Second,
			TimeoutAfterChargeRate: 0.3, Hang: 5 * time.Second, Down: true}
		r = b.do(t, request{method: http.MethodPut, path: "/admin/faults", body: body})
		if err := json.Unmarshal(r.body, &got); err != nil || r.status != http.StatusOK || got != want {
			t.Fatalf("PUT: %d %s (%v), want %+v", r.status, r.body, err, want)
		}
		if f := b.sim.Faults(); f != want {
			t.Fatalf("Faults() = %+v, want %+v", f, want)
		}
		// PUT replaces every field: what is left out is zero.
		r = b.do(t, request{method: http.MethodPut, path: "/admin/faults", body: `{"error_rate":1}`})
		if f := b.sim.Faults(); r.status != http.StatusOK || f != (pspsim.Faults{ErrorRate: 1}) {
			t.Fatalf("PUT partial: %d, Faults() = %+v", r.status, f)
		}
	})

	tests := []struct {
		name       string
		body       string
		wantClass  string
		wantFields []string
	}{
		{"rate above 1", `{"error_rate":1.5}`, "invalid-faults", []string{"error_rate"}},
		{"negative rate", `{"rate_limit_rate":-0.1}`, "invalid-faults", []string{"rate_limit_rate"}},
		{"timeout rate 2", `{"timeout_after_charge_rate":2}`, "invalid-faults", []string{"timeout_after_charge_rate"}},
		{"bad duration", `{"latency":"soon"}`, "invalid-faults", []string{"latency"}},
		{"negative duration", `{"latency":"-1s"}`, "invalid-faults", []string{"latency"}},
		{"negative retry after", `{"retry_after":"-2s"}`, "invalid-faults", []string{"retry_after"}},
		{"bad hang", `{"hang":"30"}`, "invalid-faults", []string{"hang"}},
		{"several", `{"error_rate":1.5,"hang":"x","latency":"-1s"}`, "invalid-faults", []string{"latency", "error_rate", "hang"}},
		{"unknown field", `{"error":0.5}`, "unknown-field", nil},
		{"rate as string", `{"error_rate":"0.5"}`, "invalid-field", nil},
		{"not JSON", `down`, "malformed-json", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, pspsim.Config{Faults: initial})
			p := problem(t, b.do(t, request{method: http.MethodPut, path: "/admin/faults", body: tt.body}), http.StatusBadRequest, tt.wantClass)
			var fields []string
			for _, fe := range p.Errors {
				fields = append(fields, fe.Field)
			}
			if tt.wantFields != nil && !slices.Equal(fields, tt.wantFields) {
				t.Fatalf("fields %v, want %v", fields, tt.wantFields)
			}
			if f := b.sim.Faults(); f != initial {
				t.Fatalf("faults changed to %+v by a refused PUT", f)
			}
		})
	}
}

func TestResetForgetsChargesAndRestoresTheInitialFaults(t *testing.T) {
	t.Parallel()
	initial := pspsim.Faults{RetryAfter: 5 * time.Second}
	b := setup(t, pspsim.Config{Faults: initial})
	ch := b.chargeOf(t, "k1", 100, pspsim.TokenVisa) // reference order-k1
	b.chargeOf(t, "k2", 100, pspsim.TokenVisa)
	b.postCharge(t, "k3", visa("order-k1")) // a double charge of order-k1
	b.postRefund(t, "r1", refundBody{ChargeID: ch})
	if err := b.sim.SetFaults(pspsim.Faults{ErrorRate: 0.5}); err != nil {
		t.Fatal(err)
	}
	if d := b.sim.DoubleCharges(); len(d) != 1 {
		t.Fatalf("before reset: double charges %v", d)
	}

	r := b.do(t, request{method: http.MethodPost, path: "/admin/reset"})
	if r.status != http.StatusNoContent {
		t.Fatalf("reset: %d", r.status)
	}
	s := b.sim.Stats()
	if s.ChargesCreated != 0 || s.RefundsCreated != 0 || len(s.ChargesByIdempotencyKey) != 0 ||
		len(s.SucceededByReference) != 0 || len(s.RefundedByCharge) != 0 || len(s.Requests) != 0 || len(s.DoubleCharges) != 0 {
		t.Fatalf("stats after reset %+v", s)
	}
	if f := b.sim.Faults(); f != initial {
		t.Fatalf("faults after reset %+v, want %+v", f, initial)
	}
	problem(t, b.do(t, request{method: http.MethodGet, path: "/charges/" + ch}), http.StatusNotFound, "charge-not-found")
	if r := b.postCharge(t, "k1", visa("order-k1")); r.status != http.StatusCreated || r.header.Get(pspsim.HeaderReplayed) != "" {
		t.Fatalf("old key after reset: %d %v", r.status, r.header)
	}

	// Stats over HTTP.
	r = b.do(t, request{method: http.MethodGet, path: "/admin/stats"})
	var got pspsim.Stats
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.ChargesCreated != 1 || got.ChargesByIdempotencyKey["k1"] != 1 || got.Requests[pspsim.RouteCreateCharge][pspsim.OutcomeCreated] != 1 {
		t.Fatalf("GET /admin/stats: %s", r.body)
	}
	if !strings.Contains(string(r.body), `"double_charges":[]`) {
		t.Fatalf("double_charges is not an empty list: %s", r.body)
	}
}

// The same seed and the same requests give the same faults, also after a
// Reset; rates strictly between 0 and 1 hit some requests and not others.
func TestSeedIsReproducible(t *testing.T) {
	t.Parallel()
	run := func(b *bundle) []int {
		var statuses []int
		for i := range 40 {
			statuses = append(statuses, b.postCharge(t, fmt.Sprintf("k-%d", i), visa(fmt.Sprintf("o-%d", i))).status)
		}
		return statuses
	}
	cfg := pspsim.Config{Seed: 42, Faults: pspsim.Faults{ErrorRate: 0.3, RateLimitRate: 0.3}}
	a, b := setup(t, cfg), setup(t, cfg)
	first, second := run(a), run(b)
	if !slices.Equal(first, second) {
		t.Fatalf("same seed, different faults:\n%v\n%v", first, second)
	}
	a.sim.Reset()
	if again := run(a); !slices.Equal(first, again) {
		t.Fatalf("after Reset, different faults:\n%v\n%v", first, again)
	}
	seen := map[int]bool{}
	for _, st := range first {
		seen[st] = true
	}
	if !seen[http.StatusCreated] || !seen[http.StatusTooManyRequests] || (!seen[500] && !seen[503]) {
		t.Fatalf("statuses %v: want successes, 429s and 5xx", first)
	}
}
