package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStreamSink publishes to NATS JetStream with asynchronous publishes and
// waits for each acknowledgement. The event id goes in the Nats-Msg-Id
// header, so a re-publish inside the stream's duplicate window is dropped by
// the broker.
type JetStreamSink struct {
	JS jetstream.JetStream
	// Subject maps a message to its subject, e.g. the partition subject
	// from pkg/stream. Required.
	Subject func(stream, key string) string
	// AckTimeout bounds waiting for one call's acknowledgements. Default 5s.
	AckTimeout time.Duration
}

var _ Sink = JetStreamSink{}

// PublishAll implements Sink.
func (s JetStreamSink) PublishAll(ctx context.Context, msgs []Message) []error {
	errs := make([]error, len(msgs))
	futures := make([]jetstream.PubAckFuture, len(msgs))
	timeout := s.AckTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	for i, m := range msgs {
		nm := nats.NewMsg(s.Subject(m.Stream, m.Key))
		nm.Data = m.Payload
		for k, v := range m.Headers {
			nm.Header.Set(k, v)
		}
		nm.Header.Set(jetstream.MsgIDHeader, m.ID)
		futures[i], errs[i] = s.JS.PublishMsgAsync(nm, jetstream.WithStallWait(timeout))
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = err
		case <-timer.C:
			errs[i] = fmt.Errorf("no acknowledgement within %s: %w", timeout, context.DeadlineExceeded)
			timer.Reset(0) // the rest are late too; collect them without waiting again
		case <-ctx.Done():
			errs[i] = ctx.Err()
		}
	}
	return errs
}
