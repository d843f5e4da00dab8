// Package wmstream is a watermill Publisher and Subscriber over pkg/stream,
// so that watermill code (the Router, its middleware) consumes shopfloor's
// partitioned streams with pkg/stream's consumer groups: ordered per key,
// retried with backoff, dead-lettered after a retry budget (ADR 0002,
// ADR 0005). It adds no semantics of its own; the pkg/stream package doc is
// the full contract.
//
// # Mapping
//
//   - A topic is a stream name ("ORDERS": letters, digits, '_' and '-').
//     A topic's stream is created on first use (Publish, Subscribe or
//     SubscribeInitialize) from PublisherConfig.Stream or
//     SubscriberConfig.Stream; an existing stream is used as it is, with the
//     partition count it was created with.
//   - A message's UUID is its event ID: the broker drops a re-publish of the
//     same UUID inside the stream's duplicate window (default 2 minutes),
//     and consumers de-duplicate by it beyond that (pkg/inbox).
//   - The metadata field MetadataPartitionKey ("partition_key") is the key
//     that picks the partition; without it the UUID is the key.
//   - Metadata travels as headers. A received message's metadata holds the
//     published metadata plus pkg/stream's headers (Nats-Msg-Id,
//     Shopfloor-Event-Id, Shopfloor-Key).
//   - Subscribe runs the consumer group SubscriberConfig.ConsumerGroup on
//     the topic. Every subscriber of one group, in this process or another,
//     shares the topic's messages; every group gets all of them.
//   - Ack acknowledges (with the broker's confirmation). Nack retries the
//     message after GroupConfig.Backoff; after GroupConfig.MaxDeliver
//     failed deliveries (default 5) it goes to the dead-letter stream
//     "<topic>_DLQ" and the partition moves on. Neither within
//     GroupConfig.HandlerTimeout counts as a failure. There is no way to
//     say "permanent" through Nack: to dead-letter at once, use watermill's
//     PoisonQueue middleware or pkg/stream directly.
//
// # Guarantees
//
//   - Publish returns after the broker has stored every message (at least
//     once towards the broker, idempotent by UUID inside the duplicate
//     window). Messages of one call are sent one after the other, so a
//     key's messages are stored in the order given.
//   - Delivery is at least once: a message may come again after a crash, a
//     lost ack, a Close before Ack, or a redrive. Make handlers idempotent.
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
// position; only a new group starts at GroupConfig.Deliver, by default the
// oldest retained message).
//
// # Watermill's universal tests
//
// The package's tests run watermill's pubsub/tests suite against a real
// JetStream server with these Features: ConsumerGroups and Persistent;
// not ExactlyOnceDelivery; not NewSubscriberReceivesOldMessages (see
// above); GuaranteedOrder only when the suite's order groups are the keys,
// because the suite expects order across messages with unrelated keys.
// The suite assumes an unlimited retry budget; its configuration sets
// MaxDeliver above the nacks it sends.
package wmstream
