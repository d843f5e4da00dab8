package outbox

import (
	"context"
	"fmt"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// StreamSink publishes through pkg/stream: each message goes to its
// stream's partition for its key, with the event id as Nats-Msg-Id (the
// broker drops a re-publish inside the stream's duplicate window) and as
// Shopfloor-Event-Id (consumers de-duplicate by it). The map is keyed by
// stream name.
type StreamSink map[string]*stream.Publisher

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
			out[idx[j]] = Published{Partition: r.Ack.Partition, Sequence: r.Ack.Sequence, Err: r.Err}
		}
	}
	return out
}
