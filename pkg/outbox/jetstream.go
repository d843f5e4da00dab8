package outbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// StreamPublisher publishes a batch to one stream and reports each
// message's outcome, in order: *stream.Publisher (JetStream) and
// *kafkastream.Publisher (Kafka; ADR 0046).
type StreamPublisher interface {
	PublishAsync(ctx context.Context, msgs []stream.Message) []stream.Result
}

// StreamSink publishes through pkg/stream's contract on either engine:
// each message goes to its stream's partition for its key, with the event
// id as Shopfloor-Event-Id (consumers de-duplicate by it) and, on
// JetStream, as Nats-Msg-Id (the broker drops a re-publish inside the
// stream's duplicate window). The map is keyed by stream name. Refusals
// that concern the message itself carry ErrPermanent (Permanent), so the
// relay parks the row at once.
type StreamSink map[string]StreamPublisher

var _ Sink = StreamSink{}

// PublishAll implements Sink: per stream, one asynchronous batch, then
// every acknowledgement.
func (s StreamSink) PublishAll(ctx context.Context, msgs []Message) []Published {
	out := make([]Published, len(msgs))
	byStream := map[string][]int{}
	for i, m := range msgs {
		byStream[m.Stream] = append(byStream[m.Stream], i)
	}
	for name, idx := range byStream {
		pub := s[name]
		if pub == nil {
			for _, i := range idx {
				out[i].Err = fmt.Errorf("outbox: no publisher for stream %q", name)
			}
			continue
		}
		batch := make([]stream.Message, len(idx))
		for j, i := range idx {
			m := msgs[i]
			batch[j] = stream.Message{ID: m.ID, Key: m.Key, Payload: m.Payload, Headers: m.Headers}
		}
		for j, r := range pub.PublishAsync(ctx, batch) {
			out[idx[j]] = Published{Partition: r.Ack.Partition, Sequence: r.Ack.Sequence, Err: Permanent(r.Err)}
		}
	}
	return out
}

// Permanent wraps err with ErrPermanent when the broker refuses the
// message itself, so that sending it again cannot succeed:
//
//   - nats.ErrMaxPayload: larger than the server's max_payload (1 MB by
//     default); the client refuses it before sending.
//   - JetStream API error 10054 (jetstream.ErrStreamMessageExceedsMaximum):
//     larger than the stream's max_msg_size.
//   - Kafka's kerr.MessageTooLarge (larger than the producer's or the
//     topic's max message bytes; franz-go refuses it before sending too),
//     kerr.RecordListTooLarge and kerr.InvalidRecord.
//   - stream.ErrInvalid: a message pkg/stream cannot route (no id, no key).
//
// Every other error is left as it is, above all those about the broker or
// the stream as a whole (no responders: no stream for the subject or
// JetStream down; 503 JetStream not enabled; "expected stream does not
// match"; ack timeouts): they would refuse every row, and parking would
// empty the outbox into the parked list. Such a refusal of one row still
// parks it after RelayConfig.ParkAfter tries while other rows pass.
func Permanent(err error) error {
	if err == nil || errors.Is(err, ErrPermanent) {
		return err
	}
	var api *jetstream.APIError
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, stream.ErrInvalid) ||
		errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) || errors.Is(err, kerr.InvalidRecord) ||
		(errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum) {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	return err
}
