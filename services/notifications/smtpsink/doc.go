// Package smtpsink is an SMTP server that keeps what it receives in
// memory, for tests, the sandbox and chaos drills: it stands in for the
// mail relay the way pspsim stands in for the payment provider. It is
// built on github.com/emersion/go-smtp and exported so that other
// services' tests and the sandbox can use it.
//
// What it guarantees:
//
//   - Every message it answers 250 at the end of DATA is stored, with its
//     envelope (MAIL FROM, RCPT TO), decoded Subject, Message-ID, the
//     text/plain and text/html parts (quoted-printable and base64
//     decoded) and the raw bytes. Nothing is relayed anywhere.
//   - It counts receptions per Message-ID since New or the last Clear,
//     including messages dropped by the MaxMessages bound, and reports
//     every Message-ID received more than once (Stats.Duplicates). That
//     is how a test sees the at-least-once SMTP hop: a resend after a
//     crash is two messages with one distinct Message-ID, a duplicate
//     e-mail is two distinct Message-IDs for the same thing.
//   - Down mode (SetDown, or PUT /api/down {"down":true}) makes it refuse
//     mail at run time, as a relay in trouble does: a new connection is
//     answered "421 4.3.2" and closed (with ImplicitTLS it is closed
//     without a word), and a session already open gets 421 on its next
//     MAIL, RCPT or DATA. Nothing is stored while down. SetDown(false)
//     takes mail again at once.
//   - Reject mode (SetReject, or PUT /api/reject {"reject":true}) refuses
//     every recipient with 550 5.7.1, a permanent answer: a client gives
//     up on the message (dead-letters it) instead of retrying, and an
//     operator redrives it once reject mode is off. Nothing is stored
//     while on.
//   - Delay (SetDelay, or PUT /api/delay {"delay":"300ms"}) holds the
//     answer to each MAIL FROM for that long, as a slow relay does. The
//     wait comes before the message is sent, so a client killed during
//     it leaves nothing stored and its retry is no duplicate. Chaos
//     drills use it to catch workers mid-send instead of a proxy toxic.
//   - A recipient in the .invalid top-level domain (RFC 2606, e.g.
//     someone@example.invalid) is refused with 550 5.1.1, so tests can
//     exercise a permanent rejection.
//   - With Username set, AUTH PLAIN is required before MAIL and offered
//     only over TLS (STARTTLS with TLSConfig, or ImplicitTLS).
//
// HTTP API (Handler):
//
//	GET    /api/messages            JSON array, oldest first: id, from, to, subject,
//	                                message_id, received_at, text, html, size
//	GET    /api/messages?to=ADDR    only messages with ADDR among the recipients (case-insensitive)
//	GET    /api/messages/{id}/raw   the message as received (message/rfc822)
//	DELETE /api/messages            forget every message and every count; 204
//	GET    /api/stats               Stats: messages, distinct_message_ids, duplicates, rejected, down, reject
//	GET    /api/down                {"down": bool}
//	PUT    /api/down                {"down": bool}; 400 problem+json when the body is not that
//	GET    /api/reject              {"reject": bool}
//	PUT    /api/reject              {"reject": bool}; 400 problem+json when the body is not that
//	GET    /api/delay               {"delay": "300ms"}
//	PUT    /api/delay               {"delay": DURATION} with 0s..1m; 400 problem+json otherwise
//	GET    /healthz, GET /readyz    probes (answer even while down)
//
// What it does not do: persistence (a restart forgets everything),
// relaying, DKIM/SPF, bounces, size policies beyond MaxMessageBytes. Never
// expose it outside a test network: the HTTP API is unauthenticated.
//
// Wiring, in a test:
//
//	sink, err := smtpsink.New(smtpsink.Config{})
//	if err != nil { ... }
//	if err := sink.Start("127.0.0.1:0"); err != nil { ... }
//	defer sink.Close()
//	// send to sink.Addr(); read sink.Messages(""), sink.Stats()
package smtpsink
