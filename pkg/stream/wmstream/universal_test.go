package wmstream_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/stream/wmstream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// suiteConfig is the adapter configuration the universal suite runs
// against: pkg/stream's semantics with test-sized timings.
func suiteConfig(group string) (wmstream.PublisherConfig, wmstream.SubscriberConfig) {
	sc := stream.StreamConfig{Partitions: 4}
	return wmstream.PublisherConfig{Stream: sc}, wmstream.SubscriberConfig{
		ConsumerGroup: group,
		Stream:        sc,
		Group: stream.GroupConfig{
			AckWait:   5 * time.Second,
			FetchWait: 200 * time.Millisecond,
			Backoff:   backoff.Policy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond},
			// The suite nacks messages many times (TestContinueAfterErrors:
			// up to 3 × 100 nacks) and expects every one to come back: it
			// assumes an unlimited retry budget. pkg/stream deliberately
			// dead-letters a message after MaxDeliver failed deliveries
			// (ADR 0005, "Retry budget in the client"; default 5), which
			// TestNackBeyondRetryBudgetIsDeadLettered covers. Here the
			// budget is set above anything the suite can spend.
			MaxDeliver: 10_000,
		},
	}
}

// TestAdapterPassesWatermillsUniversalSuite runs watermill's universal Pub/Sub tests against the
// adapter on a real JetStream server.
func TestAdapterPassesWatermillsUniversalSuite(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)

	newPubSub := func(t *testing.T, group string, keyByPayload bool) (message.Publisher, message.Subscriber) {
		pcfg, scfg := suiteConfig(group)
		pub, err := wmstream.NewPublisher(nt.JS, pcfg)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := wmstream.NewSubscriber(nt.JS, scfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Some suite tests leave a subscriber open (TestPublishSubscribeInOrder
		// closes its multiplier before subscribing); Close is idempotent.
		t.Cleanup(func() {
			_ = pub.Close()
			_ = sub.Close()
		})
		if keyByPayload {
			return keyedByPayload{pub}, sub
		}
		return pub, sub
	}

	features := tests.Features{
		ConsumerGroups:      true,
		ExactlyOnceDelivery: false, // at least once (pkg/stream doc, "Guarantees")
		// Order is per key (partition), not per topic, and the suite's
		// messages carry unrelated keys (their UUIDs): TestNoAck and
		// TestPublishSubscribeInOrder expect order across them. The
		// "ordered per key" run below maps the suite's order groups onto
		// keys.
		GuaranteedOrder:                     false,
		GuaranteedOrderWithSingleSubscriber: false,
		Persistent:                          true,
		// A new subscriber joins its consumer group and continues at the
		// group's acknowledged position; only a new group reads old
		// messages (TestConsumerGroups covers that).
		NewSubscriberReceivesOldMessages: false,
		RequireSingleInstance:            false,
		// TestReconnect restarts the broker with an external command; the
		// server here is embedded (pkg/stream's restart tests cover broker
		// restarts).
		RestartServiceCommand: nil,
		ContextPreserved:      false, // a Go context does not cross the broker
		GenerateTopicFunc: func(tctx tests.TestContext) string {
			// Stream names; the prefix lets testinfra delete them.
			return nt.Name("wm_" + string(tctx.TestID))
		},
		// The suite's message counts follow -short: go test -race ./...
		// (CI) runs the full counts here, up to 10 000 messages per test.
		ForceShort: false,
	}

	t.Run("suite", func(t *testing.T) {
		t.Parallel()
		tests.TestPubSub(t, features,
			func(t *testing.T) (message.Publisher, message.Subscriber) { return newPubSub(t, "suite", false) },
			func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
				return newPubSub(t, group, false)
			})
	})

	// The suite's order tests group messages by payload ("type" in
	// TestPublishSubscribeInOrder, "x" in TestNoAck) and expect order
	// within a group. Keyed by payload, a group is a key, which pkg/stream
	// orders across all subscribers of a consumer group.
	// The other tests run again here with keys concentrated on a few
	// partitions, in short mode to keep CI time reasonable (at one message
	// in flight per partition, 5 000 messages of one key take a while).
	ordered := features
	ordered.GuaranteedOrder = true
	ordered.ForceShort = true
	t.Run("ordered_per_key", func(t *testing.T) {
		t.Parallel()
		tests.TestPubSub(t, ordered,
			func(t *testing.T) (message.Publisher, message.Subscriber) { return newPubSub(t, "suite", true) },
			func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
				return newPubSub(t, group, true)
			})
	})
}

// keyedByPayload publishes each message with its payload as the partition
// key.
type keyedByPayload struct{ message.Publisher }

func (p keyedByPayload) Publish(topic string, msgs ...*message.Message) error {
	for _, msg := range msgs {
		msg.Metadata.Set(wmstream.MetadataPartitionKey, string(msg.Payload))
	}
	return p.Publisher.Publish(topic, msgs...)
}
