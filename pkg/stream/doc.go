// Package stream is shopfloor's partitioned event stream on NATS JetStream:
// Kafka-style keyed partitions, consumer groups that share partitions, retries
// with backoff, batch consumption and a dead-letter stream with operator tools
// (ADR 0002, ADR 0005, ADR 0017, ADR 0025). Consumers de-duplicate with the
// inbox, pkg/inbox.
//
// It works on raw payload bytes and string headers; the event envelope
// (pkg/events) and tracing (pkg/telemetry) plug in from outside.
//
// # Partitions
//
// A stream named S holds N partitions; partition p is the subject
// "S.events.p" (the stream itself is configured with the wildcard
// "S.events.*"). A message's key (an order id, a product id) picks its
// partition:
//
//	Partition(key, N) = FNV-1a-32(bytes of key) mod N
//
// FNV-1a 32 (hash/fnv.New32a) is stable across processes, architectures and
// Go versions, and cheap. N is written into the stream's metadata when the
// stream is created. Changing N remaps almost every key to another
// partition, so events of one key could then be consumed out of order (an old
// event still waiting in partition 3 while a new one is already handled from
// partition 5); EnsureStream therefore refuses to change N of an existing
// stream. To re-partition, create a new stream, let producers switch to it and
// consumers drain the old one first.
//
// Only the stream's producer creates and updates it (EnsureStream); a
// consumer of another service's stream checks it with BindStream, which
// changes nothing, so its broker user needs no right to (ADR 0039).
//
// # Guarantees
//
//   - Publish is at least once towards the broker and idempotent inside the
//     stream's duplicate window (default 2 minutes): the message ID is sent
//     as Nats-Msg-Id, so a re-publish of the same ID is dropped by the broker
//     (the Ack says Duplicate). Beyond the window a re-publish is stored
//     again; consumers de-duplicate by event ID (pkg/inbox).
//   - Delivery to a consumer group is at least once. A handler may see a
//     message again after a crash, a lost ack, an ack-wait expiry or a
//     redrive. Make effects idempotent: claim the event ID in the inbox (inbox.Apply) in
//     the same transaction as the effect, or compare aggregate versions.
//   - Order is per key only, not across keys and not across partitions.
//     Inside one group, the events of one partition are handled one at a
//     time in stream order, by whichever instance of the group holds the
//     partition's single in-flight slot (MaxAckPending = 1 on the durable
//     consumer "<group>-p<n>"). A message that is retried (Nak with backoff)
//     keeps the slot, so later events of its partition wait for it: a slow or
//     failing key delays the other keys of its partition, never other
//     partitions. A batch group (NewBatchGroup) keeps the same order with
//     other means; see "Batch consumption".
//   - A message that fails permanently (Permanent) or spends its delivery
//     budget (GroupConfig.MaxDeliver) with errors that are not
//     infrastructure errors is copied to the dead-letter stream
//     "S_DLQ" (subject "S_DLQ.<group>") with the reason in headers, and only
//     then acknowledged, so the partition moves on and nothing is lost. A
//     redrive publishes it again to its original partition: it then comes
//     after newer events of the same key, and every group of the stream sees
//     it again (they drop it by event ID or by version).
//   - Several instances of one group share the work without a coordinator:
//     every instance pulls from every partition consumer, the broker hands
//     each message to one puller, and a message left unacknowledged by a
//     dead instance is redelivered to another after AckWait. In a batch
//     group the broker pins each partition to one instance at a time; an
//     instance that holds more than its share hands partitions over to the
//     others waiting on them (spread.go), and a dead instance's partitions
//     move after PinnedTTL.
//   - On a replicated stream, an ack that the consumer's dying leader
//     never confirmed is sent again until the new leader confirms it, so
//     the partition does not wait AckWait for a redelivery (ack.go).
//
// What is not guaranteed: exactly-once delivery; order across keys; that a
// group sees an event "soon" when an earlier event of its partition is being
// retried (at most MaxDeliver attempts with backoff, then the DLQ) or waits
// for a dependency (as long as the dependency is down).
//
// # Errors that are not the message's fault
//
// A handler error is one of three kinds, and only the message's own
// failures lead to the dead-letter stream:
//
//   - Permanent (a payload that does not decode, an event that breaks an
//     invariant): dead-lettered at once, class "permanent".
//   - Infrastructure: a dependency of the handler failed, not the message
//     (GroupConfig.Infrastructure, by default IsInfrastructure: lost or
//     refused connections, PostgreSQL connect errors and session
//     timeouts, net errors, a dependency call's own deadline, NATS
//     connection errors and 503s, and anything marked with
//     Infrastructure). The group does not nak the message into its
//     budget: it keeps the delivery, keeps it alive with progress
//     heartbeats, and calls the handler again after
//     GroupConfig.InfrastructureBackoff (capped exponential backoff with
//     full jitter, at most 30s by default), as long as the dependency
//     stays down. The partition waits meanwhile: nothing behind the message
//     is handled, so per-key order holds, and Delivery.NumDelivered does
//     not grow. A batch group offers the same batch again rather than
//     splitting it. A stopping group hands the message back at once. The
//     wait shows in stream_partitions_waiting and
//     stream_infrastructure_retries_total, a warning when a partition
//     starts waiting and an info line, with the time waited, when it
//     resumes.
//   - Anything else (a bug, a downstream refusal that may pass): retried
//     with GroupConfig.Backoff, up to MaxDeliver deliveries, then
//     dead-lettered as "exhausted".
//
// Without this rule a dependency outage longer than the retry budget (about
// 1.5s with the defaults, 80s with pkg/service's ConsumerRetries) would
// dead-letter the healthy events at the head of every partition, and a
// dead-lettered order.placed leaves its order pending until a person
// redrives it.
//
// What it asks of handlers: wrap causes with %w (fmt.Errorf("...: %v",
// err) hides a refused connection from the classifier), mark failures the
// classifier cannot recognise (another service answering 503) with
// Infrastructure, and give dependency calls their own timeouts shorter
// than HandlerTimeout. A call that runs out of HandlerTimeout spends the
// budget whatever its error, because the group cannot tell a dependency
// that hangs from a message that makes the handler too slow. What it
// risks: an error wrongly classified as infrastructure holds its
// partition until the classification or the dependency is fixed; alert on
// stream_partitions_waiting staying above 0.
//
// # Batch consumption
//
// A group made with NewBatchGroup hands its BatchHandler up to
// GroupConfig.MaxBatch messages of one partition at once (at most
// MaxBatchLimit, 256), so that a consumer can apply them in one transaction
// (claim the event IDs with inbox.ClaimBatch) and pay one commit, one pull
// and one confirmed ack per batch instead of per message (ADR 0017). The
// contract, in addition to the guarantees above:
//
//   - A batch holds messages of one partition in stream order, so each key's
//     events in order. It is what the partition has ready: the group never
//     waits to fill a batch (it stops collecting when no delivery arrives
//     for a millisecond). The next batch of the partition is handed over
//     only after every message of this one is settled.
//   - nil: every message of the batch is acknowledged (each but the last
//     without waiting, the last with a confirmation, which covers the
//     others: the broker handles one connection's acks in order).
//   - Any error from a call with several messages (Permanent or not, or a
//     panic): the group hands them to the handler again one at a time, in
//     order, acknowledging each that succeeds, to find the failing one
//     (unless the error is an infrastructure error: then the group waits
//     and offers the same batch again, see "Errors that are not the
//     message's fault"). A
//     message that fails on its own is retried in
//     the process with GroupConfig.Backoff (not with a delayed Nak: with
//     more than one message pending the broker would deliver later messages
//     of the partition before its redelivery) while the group keeps every
//     held message alive with progress heartbeats, up to MaxDeliver
//     attempts; then it goes to the dead-letter stream as "exhausted", with
//     the same headers as a Group's dead letters. Permanent goes there at
//     once. Then the rest is handled as a batch again. Delivery.NumDelivered
//     is the attempt number (broker deliveries plus in-process retries).
//   - A stopping group hands back every unsettled message of the partition
//     at once (Nak without delay, in stream order) and unpins the partition,
//     so another instance carries on where it stopped.
//   - Messages that come back after a crash or a stop (NumDelivered > 1) are
//     handled one at a time, so that a message that kills the instance is
//     the only one charged for it: the oldest message of a partition that
//     comes back more than MaxDeliver times is dead-lettered as "exhausted"
//     without a handler call; messages that were only held behind it get at
//     least one try.
//   - Instances share partitions without a coordinator, as for a Group, but
//     the broker's single in-flight slot is gone (MaxAckPending is MaxBatch),
//     so two other mechanisms take its place. The broker pins each
//     partition consumer to one instance at a time (a JetStream priority
//     group with the pinned-client policy); the pin moves when its instance
//     stops pulling for max(AckWait, 2×FetchWait), or at once when it stops.
//     And an instance hands messages to the handler only while it holds
//     every message the broker counts as pending for the partition, so
//     every earlier message is settled (a check that costs one consumer
//     info request when deliveries may have gone elsewhere, none in the
//     steady state). When the pin moves while an instance is busy (a long
//     retry) or dead, the new holder keeps what it receives until the
//     earlier messages are settled or redelivered to it (after AckWait).
//   - Every instance of a group must be of the same kind: the two kinds
//     configure the partition consumers differently. To switch a group
//     between NewGroup and NewBatchGroup, stop all its instances first; the
//     group keeps its position.
//
// Tracing: a handler call with several messages gets one consumer span in
// a new trace, linked to each message's trace context (OpenTelemetry span
// links), and its ctx carries that span; a call with one message gets a
// child span of the message's trace context, as with a Group, and Extract
// is applied to its ctx. A batch handler that wants per-message spans
// extracts them from Delivery.Headers itself.
//
// What batching trades: a failing message holds up the rest of its batch
// and its partition while it is retried in the process (at most MaxDeliver
// attempts with backoff), and a failed batch costs handling its messages
// again one at a time up to the failing one. A batch is at-least-once like
// any delivery: apply it in one transaction with the inbox claims.
//
// # Metrics
//
// With GroupConfig.Registerer set: stream_consumer_lag_messages and
// stream_consumer_oldest_unacked_age_seconds (sampled every LagInterval, by
// stream, group and partition), stream_handler_duration_seconds (by stream,
// group and outcome: ack, retry, dead_letter, handed_back,
// infrastructure_retry), stream_redeliveries_total and
// stream_dead_lettered_total (by stream, group and, for the latter, class),
// stream_partitions_waiting (gauge: partitions waiting on a dependency, by
// stream and group; per instance, so aggregate with sum) and
// stream_infrastructure_retries_total (by stream and group). Every instance
// of a group reports the same lag; aggregate with max, not sum.
//
// A batch group counts the same per message: one outcome per message
// (a batch call's duration is shared equally by its messages, so the
// histogram's count is messages and its sum handler time), in-process
// retries as redeliveries, and stream_handler_batch_size_messages (by
// stream and group) observes the size of every handler call.
package stream
