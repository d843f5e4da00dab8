// Package kafkastream is the second engine of shopfloor's stream contract
// (package stream, ADR 0044): the same keyed partitions, consumer groups,
// retries, dead letters and start positions, on Kafka through franz-go
// (kgo). A handler written for stream.Group (stream.Handler, taking a
// stream.Delivery) runs unchanged on a Group of this package; messages are
// published with stream.Message and acknowledged with stream.Ack.
//
// # Partitions
//
// A topic named T holds N partitions (EnsureTopic, fixed for its life) and
// a dead-letter topic "T_DLQ". Publishers made with ClientOpts use
// Partitioner, which sends a key to stream.Partition(key, N), FNV-1a 32
// mod N: a key has the same partition number on both engines (Kafka's own
// default, murmur2, would not).
//
// # Guarantees
//
//   - Publish waits for all in-sync replicas (acks=all) through franz-go's
//     idempotent producer: a produce retried by the client is stored once
//     and in order. There is no broker-side de-duplication by message ID
//     as JetStream's Nats-Msg-Id window gives: a re-publish of an ID is
//     stored again and Ack.Duplicate is always false. Consumers
//     de-duplicate by Delivery.ID (pkg/inbox), which they must do on
//     either engine.
//   - Delivery to a group is at least once; order is per key. Each
//     partition assigned to a member is handled by one goroutine, one
//     record at a time in offset order (a batch group, NewBatchGroup:
//     up to MaxBatch ready records per call); a record's offset is marked
//     for commit only after its handler returned nil or it was
//     dead-lettered,
//     and marks are committed every CommitInterval and before a revoke or
//     a stop completes. A crash hands the records handled since the last
//     commit to the partition's next owner again.
//   - Failures are classified as in package stream: Permanent goes to the
//     dead-letter topic at once (class "permanent"); an infrastructure
//     error (GroupConfig.Infrastructure, default stream.IsInfrastructure)
//     makes the partition wait and call again after InfrastructureBackoff
//     without spending the budget; any other error is retried after
//     Backoff, up to MaxDeliver calls, then dead-lettered ("exhausted").
//     A dead letter carries pkg/stream's Shopfloor-Dlq-* headers and is
//     stored before the original's offset is marked; while the
//     dead-letter topic refuses it, the partition waits and tries again
//     (InfrastructureBackoff), as for a dependency.
//   - Rebalances are cooperative (cooperative-sticky balancer): only the
//     partitions that move are revoked. A revoke waits until the
//     partition's worker has finished its running handler call (committing
//     it if it succeeded) or abandoned it uncommitted (at most
//     HandlerTimeout), and polls block revokes until their records are
//     handed over (BlockRebalanceOnPoll), so no record of a revoked
//     partition is handled after the revoke (session.go).
//   - A group without committed offsets starts per GroupConfig.Deliver
//     (earliest, latest, an offset, a time); one with commits continues
//     from them.
//
// # Differences from the JetStream engine
//
//   - MaxDeliver counts calls in this process. Kafka does not count
//     deliveries, so a record that kills its consumer every time is not
//     dead-lettered by the budget: the partition stops there (watch the
//     lag). JetStream counts broker deliveries and dead-letters it.
//   - Delivery.Sequence is the record's offset in its partition (from 0),
//     not a stream-wide sequence; Delivery.Subject is "<topic>.<partition>";
//     Delivery.Published is the record's timestamp (producer time unless
//     the topic uses LogAppendTime).
//   - The liveness of a member is its group session (SessionTimeout,
//     heartbeats), not a per-message AckWait; a slow handler does not need
//     progress heartbeats, but a revoke waits for it.
//   - Dead letters are listed and inspected (DLQReader, for the dlq
//     command), not redriven or discarded; there is no publish
//     de-duplication yet (ADR 0044, ADR 0046).
//
// Metrics: see metrics.go (stream_kafka_*, the labels of pkg/stream's).
package kafkastream
