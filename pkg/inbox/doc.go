// Package inbox is the consumer side of the transactional outbox: a table
// of (group, message id) claims that makes a consumer's effects happen
// once per message, however often the stream delivers it (pkg/outbox is
// the producer side).
//
// # Contract
//
//   - Exactly-once effect per (group, message id), when the effect is
//     written in the same PostgreSQL transaction as the claim. Apply(ctx,
//     tx, group, id, fn) claims (group, id) in tx and runs fn in tx: the
//     first call whose transaction commits applies fn; every later call,
//     for a redelivery after a lost ack, a redrive from the dead-letter
//     stream or a replay of the stream, finds the claim and returns
//     applied = false with a nil error, without running fn, so the caller
//     acknowledges the message.
//   - A failed effect leaves no claim. Apply sets a savepoint in tx before
//     the claim: when fn (or the claim) returns an error, Apply rolls back
//     to it, so neither the claim nor fn's writes remain, even if the
//     caller then commits tx; the delivery's retry applies the effect.
//     Several Apply calls in one transaction (a batch) are independent: a
//     failed one undoes only its own claim and writes. A transaction that
//     rolls back after Apply returned takes the claim with it as well. The
//     savepoint costs nothing in round trips (it is sent with the claim).
//   - Concurrent deliveries of one message apply it once. A claim of the
//     same (group, id) in another open transaction makes Apply wait for
//     that transaction (the primary key's row lock): if it commits, Apply
//     returns applied = false; if it rolls back, Apply claims and runs fn.
//   - Groups are independent: each consumer group (and a rebuild's fresh
//     group) has its own claims, so a message applied by one group is
//     applied once by each other group too.
//   - Effects outside the database (an e-mail, an HTTP call) are not
//     covered: fn runs once per committed claim, but a transaction that
//     fails after fn ran may run it again. Enqueue such effects as a job in
//     the same transaction (pkg/jobqueue) instead of performing them in fn.
//
// # Retention and pruning
//
// Claims are kept for Retention (31 days), longer than any redelivery can
// come: the stream keeps messages 7 days (redeliveries, replays) and its
// dead-letter stream 30 (stream.DefaultDLQMaxAge: a redrive reaches every
// group again); TestRetentionOutlivesEveryRedelivery checks both. Prune
// deletes older claims in batches; the services run it hourly (the
// prune-inbox role of pkg/service). A message delivered again after its
// claim was pruned would be applied again, so a consumer that replays
// older history (a rebuild through a new group) must also be idempotent by
// its data (a unique key, a version compare).
//
// # When not to use it
//
// A projection that stores each entity's version (services/search) drops
// duplicates and late events by comparing versions, which the inbox cannot
// do; an effect that is idempotent by itself and not in PostgreSQL
// (catalog's cache invalidation and CDN purge) needs no claim.
//
// # Use
//
// Include Schema in the consuming service's migrations (a test with
// testinfra.CarriesSchemas keeps the copy verbatim), and call Apply from
// the service's stream adapter (internal/<noun>stream), so that the use
// cases take a transaction and know nothing about deliveries:
//
//	err := pgdb.InTx(ctx, pool, func(tx pgx.Tx) error {
//		_, err := inbox.Apply(ctx, tx, Group, ev.ID, func(ctx context.Context, tx pgx.Tx) error {
//			return svc.ApplyPayment(ctx, tx, ev)
//		})
//		return err
//	})
//
// A batch consumer (stream.NewBatchGroup) claims a batch's ids with one
// statement, ClaimBatch, and applies the messages claimed for the first
// time in the same transaction.
package inbox
