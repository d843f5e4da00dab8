// Package outbox is the transactional outbox: a service writes the events a
// state change causes in the same PostgreSQL transaction as the change, and
// a relay publishes committed events to the stream (pkg/stream).
//
// # Contract
//
//   - Publish(ctx, tx, events...) inserts the events with the caller's
//     transaction. If the transaction rolls back, the events never existed;
//     if it commits, they will be published. There is no "publish after
//     commit" window in which a crash loses an event.
//   - The relay publishes every committed event at least once, never losing
//     one. A crash between the broker's acknowledgement and the relay
//     marking the row published re-publishes it; the broker drops the
//     duplicate inside its dedup window (Nats-Msg-Id = event id) and
//     consumers de-duplicate by event id beyond it (pkg/stream inbox).
//   - Per key (the event's Subject: an order id, a product id), events are
//     published in commit order. Publish takes a transaction-scoped
//     advisory lock on the key before inserting, so two transactions that
//     emit events for the same key serialise from that point to commit and
//     their row ids follow commit order. Transactions for different keys do
//     not wait for each other.
//   - No row is skipped. The classic relay bug reads "id > last published
//     id": ids are assigned at insert, but transactions commit out of order,
//     so a row with a smaller id that commits late is never seen. This relay
//     never uses a high-water mark; it selects rows whose published_at is
//     NULL (a partial index keeps that cheap), so a late commit is simply
//     picked up by the next batch.
//   - A row is marked published only after the broker acknowledged it.
//     The UPDATE that marks a batch runs while the next batch is read and
//     published, and a full batch's successor is read while the batch is
//     published; each read leaves out the rows in flight or being marked.
//     A row whose mark failed is published again (the broker drops the
//     copy); a batch with a failed row discards the read-ahead, so a key's
//     later rows never overtake its failed one.
//     Published rows are kept for Retention (default 72h) for audit and
//     re-publish, then deleted in batches.
//   - One relay is active per database: the leader holds a session advisory
//     lock on a dedicated connection (or, with LeaderLease, a lease row;
//     see below), and reads batches on a second one
//     tuned for that query: an ordered index scan that stops after a
//     batch, even when stale statistics after a burst of inserts would
//     make the planner scan and sort the whole backlog. Marks, pruning
//     and sampling use the pool. Standbys try to take the lock every
//     LeaderRetry (default 1s), so when a leader dies (its session ends)
//     a standby takes over within seconds. A leader whose lock connection
//     breaks steps down at once.
//   - A leader that stops running without dying (SIGSTOP, a hung host, a
//     network cut: its TCP connection stays open and the lock with it)
//     loses the leadership within LeaderLease (default 6s; see Leases).
//   - A row the broker refuses for good is parked, not retried forever;
//     its key's later rows wait behind it and other keys flow (see
//     Parking).
//   - Broker down: publishing fails, rows accumulate, the relay retries with
//     capped exponential backoff and full jitter (pkg/backoff) and drains the
//     backlog when the broker returns.
//
// # Ordering inside a batch
//
// The relay reads up to BatchSize unpublished rows in id order and publishes
// them in rounds: round r holds the r-th row of every key in the batch, so a
// key's next event is sent only after the previous one was acknowledged,
// while different keys are published concurrently. If a row fails, the later
// rows of its key in that batch are not sent; they go out, in order, after a
// retry succeeds.
//
// # Leases
//
// The lock session runs with idle_session_timeout = LeaderLease
// (PostgreSQL 14+) and server-side TCP keepalive (pgdb.ServerKeepAliveSQL);
// the leader sends a heartbeat (SELECT 1) on it every LeaderLease/3. A
// frozen leader sends none, so the server ends its session after the
// lease and the lock is free: a standby leads within about LeaderLease +
// LeaderRetry (TestFrozenLeaderIsReplaced: 6.0s with the defaults). The
// leader steps down by itself when a heartbeat fails or takes longer than
// LeaderLease/3, and publishes nothing once 2/3 of the lease have passed
// since the last good heartbeat was sent, so it stops before the server
// can hand the lock to another. A leader that wakes finds its session
// ended and becomes a standby.
//
// What a frozen leader may still send when it wakes is the message it was
// sending when it froze (the check comes before the send; the freeze can
// fall between them). That is an event the new leader published too: the
// broker drops the copy inside its duplicate window (Nats-Msg-Id, 2 min);
// beyond it the copy lands later in the partition, and consumers drop it
// by event id (the inbox) or by aggregate version, so a key's order as
// consumers apply it is kept. Its mark UPDATE records a publish that did
// happen. Nothing else needs a fence.
//
// PgBouncer in transaction (or statement) pooling mode cannot carry this:
// the lock, the LISTEN and the session settings belong to one server
// session (TestAdvisoryLeaderIsNotSafeThroughPgBouncer: two relays both
// lead). Point the relay at PostgreSQL or at a session-mode pool, or use
// LeaderLease.
//
// # LeaderLease: a lease row, for transaction poolers
//
// With RelayConfig.Leader = LeaderLease (ADR 0042) the leadership is the
// outbox_leader row named LockName (LeaseSchema): holder, epoch and
// expires_at on the server's clock. A relay takes it in one statement
// when it is expired (a new epoch), renews it every LeaderLease/3 and
// releases it when it stops; a standby tries every LeaderRetry. The
// leader's own view is the same as above: it publishes nothing once 2/3 of
// the lease have passed since the last renewal that succeeded was sent,
// and steps down when a renewal finds another epoch. Every statement it
// runs on the outbox is fenced by its epoch in the same transaction: a
// batch read checks the lease first, and a mark or park is one statement
// that locks the lease row FOR SHARE and writes only while the epoch
// holds it, so a leader that was frozen past its lease (and still believes
// it leads) changes no row once another took over
// (TestLeaseFencesAFrozenLeader). As above, the message it was sending
// when it froze may still reach the broker, which drops it. Reads run in
// a transaction of the pool each, with the reader's settings SET LOCAL.
// LISTEN needs a session, so the leader polls every PollInterval unless
// ListenURL names a direct connection to listen on.
//
// # Parking
//
// The Sink reports each refusal. A refusal wrapped in ErrPermanent (for
// JetStream, Permanent: larger than max_payload or the stream's
// max_msg_size; a message pkg/stream cannot route) parks the row at once;
// any other refusal parks it after ParkAfter (default 20) refusals in
// batches where the broker acknowledged other rows. A broker that refuses
// everything (down, no stream) parks nothing: that is an outage, retried
// with backoff. A parked row keeps parked_at and last_error; the relay
// stops reading it and holds its key's later rows (per-key order), while
// every other key flows. outbox_parked_rows counts parked rows; Parked
// lists them (never the payload) and Unpark lets the relay try again, the
// operator CLI being Command (`<svc> outbox parked`, `outbox unpark ID |
// --all`). Backlog and outbox_backlog_rows leave parked rows out; the
// rows held behind them stay in (they are late).
//
// # Schema
//
// Include Schema, PositionSchema and then ParkSchema in the service's own
// migrations, as services/orders/migrations does (00001, 00002, 00030;
// testinfra.CarriesSchemas in its migrations_test.go checks that each file
// still carries them word for word). The table is the service's: no other service
// reads it. When it marks rows published, the relay records where the
// broker stored each one (published_partition, published_sequence, from
// the Sink's Published answers), so that Events can tell an aggregate's
// history: each event, when it was committed and published, and the
// stream position to find it at (orders' GET /v1/orders/{id}/events, the
// shop's order timeline).
//
// # Metrics
//
// outbox_backlog_rows, outbox_oldest_unpublished_age_seconds,
// outbox_parked_rows, outbox_published_total, outbox_publish_errors_total
// and outbox_relay_leader (1 on the instance that holds the lock),
// labelled by stream. The gauges that sample the table are refreshed by
// the leader only; a standby keeps its last values.
package outbox
