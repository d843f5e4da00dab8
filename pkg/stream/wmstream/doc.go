// Package wmstream is a watermill Publisher and Subscriber over shopfloor's
// stream engines, so that watermill code (the Router, its middleware)
// consumes shopfloor's partitioned streams with their consumer groups:
// ordered per key, retried with backoff, dead-lettered after a retry
// budget (ADR 0002, ADR 0005). It runs on pkg/stream's NATS JetStream
// engine (NewPublisher, NewSubscriber) or on pkg/stream/kafka's Kafka
// engine (NewKafkaPublisher, NewKafkaSubscriber, ADR 0044); the watermill
// mapping is written once, over a small backend (backend.go: ensure a
// topic, publish a stream.Message, run a group with a stream.Handler). It
// adds no semantics of its own; the pkg/stream package doc is the full
// contract, and pkg/stream/kafka's doc says where Kafka differs.
//
// # Mapping
//
//   - A topic is a stream (Kafka: topic) name ("ORDERS": letters, digits,
//     '_' and '-'). A topic is created on first use (Publish, Subscribe or
//     SubscribeInitialize) from the configured template, with its
//     dead-letter stream or topic; an existing one is used as it is, with
//     the partition count it was created with.
//   - A message's UUID is its event ID. On JetStream the broker drops a
//     re-publish of the same UUID inside the stream's duplicate window
//     (default 2 minutes). Kafka has no such window: a re-published UUID
//     is stored and delivered again (stream.Ack.Duplicate is always
//     false). On both, consumers de-duplicate by it (pkg/inbox).
//   - The metadata field MetadataPartitionKey ("partition_key") is the key
//     that picks the partition; without it the UUID is the key. A key has
//     the same partition number on both engines.
//   - Metadata travels as headers. A received message's metadata holds the
//     published metadata plus the engine's headers: Shopfloor-Event-Id and
//     Shopfloor-Key, and on JetStream Nats-Msg-Id. The delivery's sequence
//     is not carried (on Kafka it would be a partition offset, on
//     JetStream a stream-wide sequence).
//   - Subscribe runs the consumer group named by the subscriber's
//     ConsumerGroup on the topic. Every subscriber of one group, in this
//     process or another, shares the topic's messages; every group gets
//     all of them. On Kafka each Subscribe is a member of the Kafka group
//     (group.id): one group name used for several topics makes each
//     Subscribe rebalance the members of the others, so name groups per
//     topic where that matters.
//   - Ack acknowledges (JetStream: with the broker's confirmation; Kafka:
//     the offset is marked and committed within CommitInterval, or when
//     the subscription stops). Nack retries the message after the group's
//     Backoff; after MaxDeliver failed deliveries (default 5) it goes to
//     the dead-letter stream or topic "<topic>_DLQ" and the partition
//     moves on. Neither within HandlerTimeout counts as a failure. There
//     is no way to say "permanent" through Nack: to dead-letter at once,
//     use watermill's PoisonQueue middleware or the engine directly.
//
// # Guarantees
//
//   - Publish returns after the broker has stored every message (JetStream:
//     by its replicas; Kafka: acks=all). Messages of one call are sent one
//     after the other, so a key's messages are stored in the order given.
//   - Delivery is at least once: a message may come again after a crash, a
//     lost ack, a Close before Ack, a Kafka rebalance, a re-publish (on
//     Kafka, also inside the window JetStream de-duplicates) or a
//     redrive. Make handlers idempotent.
//   - Order is per key: inside a consumer group, a key's next message is
//     delivered only after the current one is acknowledged or
//     dead-lettered, to whichever subscriber of the group. There is no
//     order across keys or partitions.
//   - At most one message per partition per group is in flight. A reader
//     that holds a message without Ack or Nack holds up its partition (for
//     at most HandlerTimeout); the other partitions go on.
//
// What is not guaranteed: exactly-once delivery; order across keys; that a
// new subscriber sees old messages (it joins its group at the group's
// position; only a new group starts at the group's Deliver policy, by
// default the oldest retained message). On Kafka the retry budget counts
// deliveries in one process: a message that comes back after a rebalance
// or a crash starts again at 1.
//
// # Watermill's universal tests
//
// The package's tests run watermill's pubsub/tests suite against a real
// JetStream server and against an in-process Kafka (kfake: the Kafka wire
// protocol, group coordinator and offsets), with the same Features on
// both: ConsumerGroups and Persistent; not ExactlyOnceDelivery; not
// NewSubscriberReceivesOldMessages (see above); GuaranteedOrder only when
// the suite's order groups are the keys, because the suite expects order
// across messages with unrelated keys; TestReconnect skipped (it restarts
// the broker with an external command). The suite assumes an unlimited
// retry budget; its configuration sets MaxDeliver above the nacks it
// sends. Each of the suite's tests has a consumer group of its own, so
// that on Kafka the parallel tests do not rebalance each other. The
// adapter's own tests (dead letters after the budget, metadata and keys,
// a re-published UUID, bad configuration, a Router keeping key order
// through failures) run on both engines too.
package wmstream
