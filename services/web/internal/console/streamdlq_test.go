package console

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestStreamDeadLettersThroughPkgStream: a consumer group that cannot
// handle an event dead-letters it (real JetStream); the console lists it
// with its group, error and key, shows its payload with personal fields
// redacted, refuses a redrive without a group or of a stream it does not
// know, and redrives it for its group: the fixed consumer handles it and
// the dead-letter stream is empty.
func TestStreamDeadLettersThroughPkgStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nt := testinfra.NATS(t)
	name := nt.Name("ORDERS")
	if err := stream.EnsureStream(ctx, nt.JS, stream.StreamConfig{Name: name, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	pub, err := stream.NewPublisher(nt.JS, name, 2)
	if err != nil {
		t.Fatal(err)
	}
	fixed := make(chan struct{})
	handled := make(chan string, 4)
	g, err := stream.NewGroup(nt.JS, stream.GroupConfig{Stream: name, Name: "mailer", AckWait: 2 * time.Second, MaxDeliver: 3,
		Backoff: backoff.Policy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}, FetchWait: 200 * time.Millisecond},
		func(_ context.Context, d stream.Delivery) error {
			select {
			case <-fixed:
				handled <- d.ID
				return nil
			default:
				return stream.Permanent(errors.New("template missing"))
			}
		}, nil)
	if err != nil {
		t.Fatal(err)
	}
	gctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("group: %v", err)
		}
	})
	if _, err := pub.Publish(ctx, stream.Message{ID: "ev-1", Key: "order-7",
		Payload: []byte(`{"order_id":"order-7","customer_email":"ada@example.com","total_minor":1250}`)}); err != nil {
		t.Fatal(err)
	}

	c := New(&target.System{})
	if qs := c.StreamDeadLetterQueues(ctx); qs != nil || c.StreamDLQsEnabled() {
		t.Fatalf("without NATS: %+v", qs)
	}
	c.EnableStreamDLQs(nt.JS, name)
	var seq uint64
	testinfra.Eventually(t, 15*time.Second, func() error {
		qs := c.StreamDeadLetterQueues(ctx)
		if len(qs) != 1 || qs[0].Err != "" || len(qs[0].Letters) != 1 {
			return fmt.Errorf("dead letters: %+v", qs)
		}
		seq = qs[0].Letters[0].Seq
		return nil
	})
	d, err := c.StreamDeadLetter(ctx, name, seq)
	if err != nil {
		t.Fatal(err)
	}
	if d.Group != "mailer" || d.Key != "order-7" || d.EventID != "ev-1" || !strings.Contains(d.Error, "template missing") || d.Payload != nil {
		t.Errorf("dead letter: %+v", d)
	}
	if p := d.PayloadText(); strings.Contains(p, "ada@example.com") || !strings.Contains(p, "[redacted]") || !strings.Contains(p, "1250") {
		t.Errorf("payload shown:\n%s\nwant the e-mail address redacted and the rest kept", p)
	}
	if _, err := c.StreamDeadLetter(ctx, name, seq+100); !errors.Is(err, stream.ErrNotFound) {
		t.Errorf("a missing dead letter: %v", err)
	}
	if _, err := c.RedriveStream(ctx, name, "", nil); err == nil {
		t.Error("a redrive without a group: no error")
	}
	if _, err := c.RedriveStream(ctx, "PAYMENTS", "mailer", nil); !errors.Is(err, ErrUnknown) {
		t.Errorf("a redrive of a stream the console does not show: %v, want ErrUnknown", err)
	}
	close(fixed)
	rep, err := c.RedriveStream(ctx, name, "mailer", []uint64{seq})
	if err != nil || rep.Redriven != 1 {
		t.Fatalf("redrive = %+v, %v", rep, err)
	}
	select {
	case id := <-handled:
		if id != "ev-1" {
			t.Errorf("handled %s after the redrive", id)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the redriven event was not handled")
	}
	if qs := c.StreamDeadLetterQueues(ctx); len(qs[0].Letters) != 0 {
		t.Errorf("after the redrive: %+v", qs[0].Letters)
	}
}
