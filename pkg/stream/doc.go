// Package stream is shopfloor's partitioned event stream on NATS JetStream:
// Kafka-style keyed partitions, consumer groups that share partitions, retries
// with backoff, a dead-letter stream with operator tools, and a consumer-side
// inbox for de-duplication (ADR 0002, ADR 0005).
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
// # Guarantees
//
//   - Publish is at least once towards the broker and idempotent inside the
//     stream's duplicate window (default 2 minutes): the message ID is sent
//     as Nats-Msg-Id, so a re-publish of the same ID is dropped by the broker
//     (the Ack says Duplicate). Beyond the window a re-publish is stored
//     again; consumers de-duplicate by event ID (Inbox).
//   - Delivery to a consumer group is at least once. A handler may see a
//     message again after a crash, a lost ack, an ack-wait expiry or a
//     redrive. Make effects idempotent: claim the event ID in the Inbox in
//     the same transaction as the effect, or compare aggregate versions.
//   - Order is per key only, not across keys and not across partitions.
//     Inside one group, the events of one partition are handled one at a
//     time in stream order, by whichever instance of the group holds the
//     partition's single in-flight slot (MaxAckPending = 1 on the durable
//     consumer "<group>-p<n>"). A message that is retried (Nak with backoff)
//     keeps the slot, so later events of its partition wait for it: a slow or
//     failing key delays the other keys of its partition, never other
//     partitions.
//   - A message that fails permanently (Permanent) or spends its delivery
//     budget (GroupConfig.MaxDeliver) is copied to the dead-letter stream
//     "S_DLQ" (subject "S_DLQ.<group>") with the reason in headers, and only
//     then acknowledged, so the partition moves on and nothing is lost. A
//     redrive publishes it again to its original partition: it then comes
//     after newer events of the same key, and every group of the stream sees
//     it again (they drop it by event ID or by version).
//   - Several instances of one group share the work without a coordinator:
//     every instance pulls from every partition consumer, the broker hands
//     each message to one puller, and a message left unacknowledged by a
//     dead instance is redelivered to another after AckWait.
//
// What is not guaranteed: exactly-once delivery; order across keys; that a
// group sees an event "soon" when an earlier event of its partition is being
// retried (at most MaxDeliver attempts with backoff, then the DLQ).
//
// # Metrics
//
// With GroupConfig.Registerer set: stream_consumer_lag_messages and
// stream_consumer_oldest_unacked_age_seconds (sampled every LagInterval, by
// stream, group and partition), stream_handler_duration_seconds (by stream,
// group and outcome: ack, retry, dead_letter, handed_back), stream_redeliveries_total and stream_dead_lettered_total
// (by stream, group and, for the latter, class). Every instance of a group
// reports the same lag; aggregate with max, not sum.
package stream
