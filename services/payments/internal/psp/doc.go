// Package psp is the client the payments worker uses to call the payment
// service provider (PSP): any provider speaking the API of
// services/payments/pspsim (POST /charges, GET /charges?idempotency_key=,
// POST /refunds, with an Idempotency-Key header on writes).
//
// Contract:
//
//   - One attempt per call. The client never retries: the job queue does,
//     with the backoff the error's Class asks for. (One caveat: Go's
//     http.Transport itself resends a request carrying an Idempotency-Key
//     when a reused keep-alive connection is closed before any answer
//     arrives; see http.Transport. That resend is safe, it carries the
//     same key, and the classification below already assumes "maybe
//     processed" then.)
//   - Every call is bounded by Config.Timeout (default 5s) on top of the
//     caller's context, response bodies are read up to 1 MiB and always
//     closed.
//   - Every error has a Class (Classify), found through errors.As, so the
//     caller may wrap errors freely. The table below sums the classes up;
//     each Class says in detail what the caller must do.
//   - "Not processed" (ClassTransient for a network error) is claimed only
//     when no connection to the provider was ever made for the call
//     (connection refused, DNS, dial timeout). Once a connection was made,
//     a failure is ClassAmbiguous, even if the provider in fact did
//     nothing. A provider that is down by refusing connections is
//     therefore ClassTransient; one that accepts the connection and drops
//     it (pspsim's Down fault) is ClassAmbiguous, and FindCharge, which
//     then fails too (ClassTransient), tells the caller to come back later.
//   - The idempotency key is the caller's: one stable key per payment
//     attempt (and per refund), sent unchanged on every retry. The client
//     never invents one. A new key for a retry is how an order gets
//     charged twice.
//
// Classes, the errors that carry them, and what the caller does:
//
//	class             errors                                         caller
//	ClassDeclined     *DeclinedError (402)                           final: record the decline
//	ClassRateLimited  *RateLimitedError (429)                        retry after RetryAfter, same key
//	ClassTransient    *TransportError without connection, 5xx, 409  retry after backoff, same key
//	ClassAmbiguous    *TransportError after connecting, 502, 504,   FindCharge, then retry, same key
//	                  3xx (redirects are never followed)
//	ClassInvalid      other 4xx, ErrInvalidArgument                  final: dead-letter, fix the bug
//
// The worker's loop for one charge job, in outline:
//
//	ch, err := client.Charge(ctx, attempt.Key, req)
//	switch psp.Classify(err) {
//	case psp.ClassNone:                // paid: record ch
//	case psp.ClassDeclined:            // failed for good: record the decline
//	case psp.ClassAmbiguous:
//		ch, err = client.FindCharge(ctx, attempt.Key)
//		// found: record ch (succeeded or declined);
//		// ErrNotFound or another error: retry later with the same key
//	case psp.ClassRateLimited:         // retry after RetryAfter + jitter
//	case psp.ClassTransient:           // retry after backoff
//	case psp.ClassInvalid:             // dead-letter
//	}
package psp
