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
//     lock on a dedicated connection, and reads batches on a second one
//     tuned for that query: an ordered index scan that stops after a
//     batch, even when stale statistics after a burst of inserts would
//     make the planner scan and sort the whole backlog. Marks, pruning
//     and sampling use the pool. Standbys try to take the lock every
//     LeaderRetry (default 2s), so when a leader dies (its session ends)
//     a standby takes over within seconds. A leader whose lock connection
//     breaks steps down at once.
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
// # Schema
//
// Include Schema and then PositionSchema in the service's own migrations
// (see the package example). The table is the service's: no other service
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
// outbox_published_total, outbox_publish_errors_total and
// outbox_relay_leader (1 on the instance that holds the lock), labelled by
// stream.
package outbox
