package psp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/payments/internal/psp"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

// The classic ambiguous case: the provider charges, the answer never
// comes. The client must say "ambiguous", FindCharge must find the
// charge, and a retry with the same key must not create a second one.
func TestTimeoutAfterChargeIsAmbiguous(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Faults{TimeoutAfterChargeRate: 1}, 200*time.Millisecond)
	ctx := context.Background()

	_, err := b.client.Charge(ctx, "attempt-9", visa("order-9"))
	wantClass(t, err, psp.ClassAmbiguous)
	var te *psp.TransportError
	if !errors.As(err, &te) || !te.MaybeProcessed || te.StatusCode != 0 {
		t.Fatalf("err %#v, want a TransportError that may have been processed", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v does not match context.DeadlineExceeded", err)
	}

	// Resolve it as the worker must: look the charge up by key. (The
	// provider may still be processing when the client gives up, so the
	// lookup is repeated until the charge shows.)
	var found psp.Charge
	testinfra.Eventually(t, 10*time.Second, func() error {
		var err error
		found, err = b.client.FindCharge(ctx, "attempt-9")
		return err
	})
	if found.Status != psp.StatusSucceeded || found.Reference != "order-9" || found.IdempotencyKey != "attempt-9" {
		t.Fatalf("found %+v", found)
	}

	// A retry with the same key once the fault is gone replays the charge.
	if err := b.sim.SetFaults(pspsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	again, err := b.client.Charge(ctx, "attempt-9", visa("order-9"))
	if err != nil || again.ID != found.ID || !again.Replayed {
		t.Fatalf("retry = %+v, %v; want a replay of %s", again, err, found.ID)
	}
	s := b.sim.Stats()
	if s.ChargesCreated != 1 || s.ChargesByIdempotencyKey["attempt-9"] != 1 || s.SucceededByReference["order-9"] != 1 || len(b.sim.DoubleCharges()) != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// An ambiguous refund is resolved by retrying with the same key.
func TestTimeoutAfterRefundIsAmbiguous(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Faults{}, 200*time.Millisecond)
	ctx := context.Background()
	ch, err := b.client.Charge(ctx, "c", visa("o"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.sim.SetFaults(pspsim.Faults{TimeoutAfterChargeRate: 1}); err != nil {
		t.Fatal(err)
	}
	_, err = b.client.Refund(ctx, "r", psp.RefundRequest{ChargeID: ch.ID})
	wantClass(t, err, psp.ClassAmbiguous)
	testinfra.Eventually(t, 10*time.Second, func() error {
		if n := b.sim.Stats().RefundsCreated; n != 1 {
			return fmt.Errorf("%d refunds", n)
		}
		return nil
	})
	if err := b.sim.SetFaults(pspsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	rf, err := b.client.Refund(ctx, "r", psp.RefundRequest{ChargeID: ch.ID})
	if err != nil || !rf.Replayed || rf.AmountMinor != ch.AmountMinor {
		t.Fatalf("retry = %+v, %v", rf, err)
	}
	if s := b.sim.Stats(); s.RefundsCreated != 1 || s.RefundedByCharge[ch.ID] != ch.AmountMinor {
		t.Fatalf("stats %+v", s)
	}
}

// Every fault mode of the simulator, and the class the client gives it.
func TestEverySimulatorFaultGetsItsClass(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		faults      pspsim.Faults
		timeout     time.Duration
		wantCharge  psp.Class
		wantFind    psp.Class // FindCharge of an unknown key
		wantRefund  psp.Class
		check       func(t *testing.T, err error) // on the Charge error
		wantOutcome string                        // counted for the charge request
	}{
		{
			name: "5xx", faults: pspsim.Faults{ErrorRate: 1},
			wantCharge: psp.ClassTransient, wantFind: psp.ClassTransient, wantRefund: psp.ClassTransient,
			check: func(t *testing.T, err error) {
				var se *psp.StatusError
				if !errors.As(err, &se) || (se.StatusCode != http.StatusInternalServerError && se.StatusCode != http.StatusServiceUnavailable) {
					t.Fatalf("err %#v, want a 500 or 503 StatusError", err)
				}
			},
			wantOutcome: pspsim.OutcomeFaultError,
		},
		{
			name: "rate limited", faults: pspsim.Faults{RateLimitRate: 1, RetryAfter: 3 * time.Second},
			// Lookups are not rate limited: the unknown key is not found.
			wantCharge: psp.ClassRateLimited, wantFind: psp.ClassInvalid, wantRefund: psp.ClassRateLimited,
			check: func(t *testing.T, err error) {
				var rl *psp.RateLimitedError
				if !errors.As(err, &rl) || rl.RetryAfter != 3*time.Second {
					t.Fatalf("err %#v, want RetryAfter 3s", err)
				}
			},
			wantOutcome: pspsim.OutcomeFaultRateLimited,
		},
		{
			// The connection is accepted and closed without an answer: the
			// client cannot know that nothing was processed.
			name: "down", faults: pspsim.Faults{Down: true},
			wantCharge: psp.ClassAmbiguous, wantFind: psp.ClassTransient, wantRefund: psp.ClassAmbiguous,
			check: func(t *testing.T, err error) {
				var te *psp.TransportError
				if !errors.As(err, &te) || !te.MaybeProcessed || errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err %#v, want a dropped connection that may have been processed", err)
				}
			},
			wantOutcome: pspsim.OutcomeFaultDown,
		},
		{
			// Slower than the client's timeout: ambiguous for the client,
			// though the simulator processes nothing once the client is gone.
			name: "latency beyond the timeout", faults: pspsim.Faults{Latency: time.Hour}, timeout: 200 * time.Millisecond,
			wantCharge: psp.ClassAmbiguous, wantFind: psp.ClassTransient, wantRefund: psp.ClassAmbiguous,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err %v, want a timeout", err)
				}
			},
			wantOutcome: pspsim.OutcomeClientGone,
		},
		{
			name: "latency within the timeout", faults: pspsim.Faults{Latency: time.Millisecond},
			wantCharge: psp.ClassNone, wantFind: psp.ClassInvalid, wantRefund: psp.ClassNone,
			wantOutcome: pspsim.OutcomeCreated,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, pspsim.Faults{}, tt.timeout)
			ctx := context.Background()
			existing, err := b.client.Charge(ctx, "existing", visa("order-e"))
			if err != nil {
				t.Fatal(err)
			}
			if err := b.sim.SetFaults(tt.faults); err != nil {
				t.Fatal(err)
			}

			_, err = b.client.Charge(ctx, "k", visa("order-k"))
			wantClass(t, err, tt.wantCharge)
			if tt.check != nil {
				tt.check(t, err)
			}
			_, err = b.client.FindCharge(ctx, "unknown")
			wantClass(t, err, tt.wantFind)
			_, err = b.client.Refund(ctx, "r", psp.RefundRequest{ChargeID: existing.ID})
			wantClass(t, err, tt.wantRefund)

			testinfra.Eventually(t, 10*time.Second, func() error {
				if n := b.sim.Stats().Requests[pspsim.RouteCreateCharge][tt.wantOutcome]; n < 1 {
					return fmt.Errorf("outcome %s not counted: %v", tt.wantOutcome, b.sim.Stats().Requests)
				}
				return nil
			})
			s := b.sim.Stats()
			wantCharges := 1
			if tt.wantCharge == psp.ClassNone {
				wantCharges = 2
			}
			if s.ChargesCreated != wantCharges {
				t.Fatalf("%d charges, want %d: %+v", s.ChargesCreated, wantCharges, s)
			}
		})
	}
}

// A provider that refuses connections certainly processed nothing.
func TestConnectionRefusedIsTransient(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := psp.New(psp.Config{BaseURL: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = c.Charge(ctx, "k", visa("o"))
	wantClass(t, err, psp.ClassTransient)
	var te *psp.TransportError
	if !errors.As(err, &te) || te.MaybeProcessed {
		t.Fatalf("err %#v, want a TransportError not processed", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("err %v does not unwrap to the dial error", err)
	}
	_, err = c.FindCharge(ctx, "k")
	wantClass(t, err, psp.ClassTransient)
	_, err = c.Refund(ctx, "k", psp.RefundRequest{ChargeID: "ch_1"})
	wantClass(t, err, psp.ClassTransient)
}

// A call whose context has ended before it starts sends nothing.
func TestContextEndedBeforeSending(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Faults{}, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := b.client.Charge(ctx, "k", visa("o"))
	wantClass(t, err, psp.ClassTransient)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if s := b.sim.Stats(); len(s.Requests) != 0 {
		t.Fatalf("the provider saw %v", s.Requests)
	}
}

// The client never follows a redirect, even with an HTTP client of the
// caller's that would (payments passes its traced one): the charge and its
// idempotency key never reach the Location. A redirected charge may have
// been processed (ambiguous: look it up by key, never record it failed);
// a redirected lookup is simply repeated later (transient).
func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Faults{}, 0)
	redirect := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, b.srv.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	})
	follows := &http.Client{} // the zero client follows up to 10 redirects
	for name, hc := range map[string]*http.Client{"default-client": nil, "callers-client": follows} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := psp.New(psp.Config{BaseURL: redirect.URL, HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Charge(context.Background(), "k-"+name, visa("o"))
			var se *psp.StatusError
			if !errors.As(err, &se) || se.StatusCode != http.StatusTemporaryRedirect {
				t.Fatalf("err %v, want a 307 StatusError", err)
			}
			wantClass(t, err, psp.ClassAmbiguous)
			_, err = c.FindCharge(context.Background(), "k-"+name)
			wantClass(t, err, psp.ClassTransient)
			_, err = c.Refund(context.Background(), "r-"+name, psp.RefundRequest{ChargeID: "ch_1"})
			wantClass(t, err, psp.ClassAmbiguous)
		})
	}
	t.Cleanup(func() {
		if s := b.sim.Stats(); s.ChargesCreated != 0 || len(s.Requests) != 0 {
			t.Errorf("redirect followed: the provider saw %v", s.Requests)
		}
		if follows.CheckRedirect != nil {
			t.Error("New changed the caller's client")
		}
	})
}
