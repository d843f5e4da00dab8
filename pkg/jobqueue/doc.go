// Package jobqueue is a job queue stored in PostgreSQL with Amazon SQS's
// semantics and vocabulary. A forker who knows SQS should recognise every
// word; ADR 0003 says why it lives in PostgreSQL.
//
// # Queues
//
// A queue is created with attributes (CreateQueue, idempotent):
// VisibilityTimeout (default 30s), MaxReceiveCount and DeadLetterQueue (the
// redrive policy: a message received more than MaxReceiveCount times moves
// to the DLQ instead of being returned), MessageRetentionPeriod (default 4
// days), DelaySeconds (delivery delay, 0–15 min) and MaximumMessageSize
// (default 256 KiB).
//
// # Messages
//
//   - Send and SendBatch run inside the caller's pgx.Tx: the message exists
//     if and only if the transaction commits, so "create the payment attempt
//     and enqueue its charge" is one atomic write. An optional delay
//     overrides the queue's. An optional MessageDeduplicationId makes a
//     second send with the same id inside 5 minutes succeed and be dropped,
//     as SQS FIFO queues do.
//   - Receive returns up to 10 visible messages (FOR UPDATE SKIP LOCKED, so
//     concurrent receivers never get the same visible message), makes them
//     invisible for the visibility timeout, increments each one's receive
//     count, and returns a new receipt handle per receive. With WaitTime > 0
//     it long-polls: it returns as soon as a message becomes available
//     (LISTEN/NOTIFY on send, a timer for delays and visibility expiries),
//     or empty after WaitTime (at most 20s). No busy loop. Through
//     PgBouncer in transaction mode the LISTEN connection is not a session
//     of its own and notifications go astray: receivers then find messages
//     by their re-check every 2s (late, never lost; ADR 0042).
//   - DeleteMessage and ChangeMessageVisibility take a receipt handle. A
//     handle from an earlier receive is stale: it neither deletes nor
//     extends the newer delivery (ErrStaleReceipt). DeleteMessage works in
//     the caller's transaction, so "record the result and delete the job"
//     commits atomically.
//   - Delivery is at least once: a worker that crashes or overruns the
//     visibility timeout lets the message be received again. Handlers must
//     be idempotent (payments: the provider's idempotency key).
//   - Durability: Send commits with the caller's transaction. The
//     client's own acknowledgements (Receive, Delete on the pool,
//     ChangeMessageVisibility, MoveToDeadLetter) are synchronous commits
//     by default; Options.AsyncAcks makes them skip the WAL flush, which
//     about doubles single-message throughput and lets a PostgreSQL crash
//     undo the last of them: one more delivery, never a lost message (ADR
//     0018).
//   - Coalescing: concurrent single calls share statements. Receives of one
//     queue (same visibility timeout) and DeleteMessage calls on the
//     client's pool that arrive while one of their kind is in flight go
//     out together as the next statement, without waiting for more; each
//     caller still gets its own messages, receipt handles and results.
//     Many goroutines taking one job each then cost about what batches
//     do. Options.NoCoalescing turns it off (ADR 0019).
//   - Ordering is best effort (oldest visible first), as in SQS standard
//     queues.
//
// # Dead-letter queues
//
// A DLQ is an ordinary queue. ListDeadLetters, Inspect (payload passed
// through the queue's redaction function), Redrive (back to the source
// queue; dry run, by id or all, rate-limited; receive count reset, body and
// attributes unchanged so idempotency keys survive) and Purge (with a
// reason, logged) are the operator's tools.
//
// # Pause and gates
//
// Pause(queue, by, reason) stops every receiver of a queue, on every
// instance, until Resume: the claim statement itself reads the pause row
// (jobqueue_state, PauseSchema), so it holds across restarts with no cache
// to go stale. Sends are accepted and messages kept; nothing is delivered
// or dead-lettered, so receive counts stay; deliveries in progress finish.
// Resume wakes the long polls (NOTIFY). An operator pauses from the CLI
// (`<svc> queue pause QUEUE --reason ...`) or the admin API (PUT/DELETE
// {prefix}/{queue}/pause).
//
// WorkerConfig.Gate holds one worker back while a dependency of its jobs
// is down: BreakerGate(b) admits while the circuit breaker b (pkg/breaker)
// is closed, one job at a time while it is half-open (the probe) and
// nothing while it is open, so an outage of the provider costs the jobs no
// attempts; a long poll in progress ends when the breaker opens.
//
// # When the database is down
//
// A Worker whose receives fail (PostgreSQL down, the link cut, the pool
// exhausted) spends no job's attempts: nothing is received, so nothing is
// retried or dead-lettered. It waits WorkerConfig.ReceiveBackoff between
// receives, capped exponential with full jitter by failures in a row (at
// most 30s by default), and starts again from the first delay after a
// receive that succeeds; so every worker of every instance neither spins
// through failing receives nor waits long once the database is back. It
// warns when the receives start failing (again every minute while they
// do) and logs an info line with the failures and the time down when they
// resume. A receive the Gate revoked is not a failure: the worker asks the
// gate again at once.
//
// # Retention and metrics
//
// Prune deletes messages older than their queue's retention in batches:
// counted from the send, and for a dead letter from its dead-lettering
// (DeadLetterSchema's dead_lettered_at), so a job that failed for days
// still gets its DLQ's whole retention. Money-related and customer-facing
// DLQs use DeadLetterRetention (30 days; payments' charges-dlq and
// refunds-dlq, notifications' emails-dlq).
// NewCollector exports per queue: visible, in flight, delayed, oldest
// message age, DLQ depth and jobqueue_paused (queried on scrape), and the client counts
// sends, receives, deletes and dead-lettered messages, failed receives
// (jobqueue_receive_errors_total: a worker's backoff shows as its slow
// rise; a steep one is a worker spinning), and how many calls each
// coalesced statement carried (jobqueue_coalesced_calls).
package jobqueue
