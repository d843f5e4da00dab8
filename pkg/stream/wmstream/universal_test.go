package wmstream_test

import (
	"path"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/shopfloor/shopfloor/pkg/stream/wmstream"
)

// suiteMaxDeliver is the retry budget of the suite's subscribers. The
// suite nacks messages many times (TestContinueAfterErrors: up to 3 × 100
// nacks) and expects every one to come back: it assumes an unlimited
// retry budget. pkg/stream deliberately dead-letters a message after
// MaxDeliver failed deliveries (ADR 0005, "Retry budget in the client";
// default 5), which TestNackBeyondRetryBudgetIsDeadLettered covers on both
// engines. Here the budget is set above anything the suite can spend.
const suiteMaxDeliver = 10_000

// TestAdapterPassesWatermillsUniversalSuite runs watermill's universal
// Pub/Sub tests against the adapter on each engine: a real JetStream
// server, and an in-process Kafka (kfake: the Kafka protocol, group
// coordinator and offsets) shared by the suite's tests. The Features are
// the same on both engines (see the package doc, "Watermill's universal
// tests").
func TestAdapterPassesWatermillsUniversalSuite(t *testing.T) {
	t.Parallel()
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			testUniversalSuite(t, e.start(t))
		})
	}
}

func testUniversalSuite(t *testing.T, b broker) {
	newPubSub := func(t *testing.T, group string, keyByPayload bool) (message.Publisher, message.Subscriber) {
		pub, sub := pubSub(t, b, subConfig{group: group, partitions: 4, maxDeliver: suiteMaxDeliver})
		if keyByPayload {
			return keyedByPayload{pub}, sub
		}
		return pub, sub
	}
	// The suite's plain constructor stands for "the" consumer group of a
	// test, which every subscriber of that test shares. It gets a group of
	// its own per test (the suite names each test by its TestID, the last
	// element of t.Name()): on Kafka a group id spans topics, and one group
	// for all the suite's parallel tests would make every Subscribe of one
	// test rebalance the members of every other test.
	perTest := func(keyByPayload bool) tests.PubSubConstructor {
		return func(t *testing.T) (message.Publisher, message.Subscriber) {
			return newPubSub(t, "suite_"+path.Base(t.Name()), keyByPayload)
		}
	}
	named := func(keyByPayload bool) tests.ConsumerGroupPubSubConstructor {
		return func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
			return newPubSub(t, group, keyByPayload)
		}
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
		// group's acknowledged (Kafka: committed) position; only a new
		// group reads old messages (TestConsumerGroups covers that).
		NewSubscriberReceivesOldMessages: false,
		RequireSingleInstance:            false,
		// TestReconnect restarts the broker with an external command; the
		// brokers here are in-process or shared (pkg/stream's restart tests
		// and pkg/stream/kafka's failure tests cover broker outages).
		RestartServiceCommand: nil,
		ContextPreserved:      false, // a Go context does not cross the broker
		GenerateTopicFunc: func(tctx tests.TestContext) string {
			// Stream or topic names; on NATS the prefix lets testinfra
			// delete them.
			return b.topic("wm_" + string(tctx.TestID))
		},
		// The suite's message counts follow -short: go test -race ./...
		// (CI) runs the full counts here, up to 10 000 messages per test.
		ForceShort: false,
	}

	t.Run("suite", func(t *testing.T) {
		t.Parallel()
		tests.TestPubSub(t, features, perTest(false), named(false))
	})

	// The suite's order tests group messages by payload ("type" in
	// TestPublishSubscribeInOrder, "x" in TestNoAck) and expect order
	// within a group. Keyed by payload, a group is a key, which the engine
	// orders across all subscribers of a consumer group.
	// The other tests run again here with keys concentrated on a few
	// partitions, in short mode to keep CI time reasonable (at one message
	// in flight per partition, 5 000 messages of one key take a while).
	ordered := features
	ordered.GuaranteedOrder = true
	ordered.ForceShort = true
	t.Run("ordered_per_key", func(t *testing.T) {
		t.Parallel()
		tests.TestPubSub(t, ordered, perTest(true), named(true))
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
