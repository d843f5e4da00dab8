// Package pspsim is a payment service provider (PSP) simulator: an
// in-memory HTTP service that stands in for the external PSP (think
// Stripe) in tests, chaos drills and the sandbox. It speaks the API that
// services/payments/internal/psp is a client of, keeps charges by
// idempotency key, can be asked for a charge by key, and injects faults
// that are switched at run time.
//
// What it guarantees:
//
//   - At most one charge per idempotency key, under any concurrency: the
//     first request with a key creates the charge; every later request
//     with the key and the same parameters gets the first response again,
//     byte for byte and with the same status (201, or 402 for a decline),
//     plus the header "Idempotent-Replayed: true"; a later request with
//     the key and different parameters gets 422 "idempotency-key-reused".
//     Keys are remembered until Reset, not for a retention window.
//     Refunds have their own key space with the same rules.
//   - Requests refused before processing (400 on a missing key or an
//     invalid body, 404 on an unknown charge, 422 on a refund the charge
//     does not allow, and every simulated fault except
//     TimeoutAfterChargeRate) store nothing: the key stays free.
//   - A decline is a charge too: it is stored with status "declined" and a
//     decline_code, answered 402 with the charge as JSON, and replayed
//     like any other charge. Test tokens decide the outcome: tok_visa and
//     tok_mastercard succeed, tok_chargeDeclined (card_declined),
//     tok_insufficientFunds (insufficient_funds) and tok_expiredCard
//     (expired_card) are declined, anything else is 400.
//   - The sum of a charge's refunds never exceeds its amount (422
//     "refund-exceeds-charge"); only succeeded charges can be refunded.
//   - Stats counts, since New or the last Reset, the charges created per
//     key (1 by construction), the succeeded charges per reference — which
//     is what catches a client that charges one order twice with two
//     different keys (DoubleCharges) — the refunded amount per charge, and
//     requests per route and outcome, faults included.
//
// Faults (see Faults) are set from Config, from the environment with
// FaultsFromEnv, or at run time with PUT /admin/faults and SetFaults.
// Which requests a rate hits is drawn from a random source seeded with
// Config.Seed, so a test run is reproducible. TimeoutAfterChargeRate is the
// case a client must handle with care: the charge exists, the client sees
// only a timeout or a dropped connection, and it must look the charge up
// by key (GET /charges?idempotency_key=) before it retries.
//
// What it does not do: authentication (the admin routes are open: never
// expose the simulator outside a test network), persistence (a restart
// forgets everything), currency conversion, partial captures, webhooks, or
// key expiry. It is not a model of any real PSP's error taxonomy beyond
// the statuses documented on Handler and Faults.
//
// Wiring, in a run function or a test:
//
//	faults, err := pspsim.FaultsFromEnv(getenv)
//	if err != nil {
//		return err
//	}
//	sim, err := pspsim.New(pspsim.Config{Logger: logger, Registerer: reg, Faults: faults})
//	if err != nil {
//		return err
//	}
//	srv := httptest.NewServer(sim.Handler()) // or httpkit.Serve(ctx, ..., sim.Handler(), ...)
package pspsim
