package wmstream_test

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/stream/wmstream"
)

// Example runs a watermill Router on a pkg/stream consumer group: the
// handler sees each order's events in order, and a message it keeps failing
// ends in ORDERS_DLQ after the group's retry budget.
func Example() {
	ctx := context.Background()
	var (
		js     jetstream.JetStream // from jetstream.New(nc)
		logger = slog.Default()
	)
	sc := stream.StreamConfig{Partitions: 8}

	pub, err := wmstream.NewPublisher(js, wmstream.PublisherConfig{Stream: sc})
	if err != nil {
		return
	}
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"status":"placed"}`))
	msg.Metadata.Set(wmstream.MetadataPartitionKey, "order-42") // order per order id
	msg.SetContext(ctx)                                         // the trace travels with it
	if err := pub.Publish("ORDERS", msg); err != nil {
		logger.Error("publish", "error", err)
	}

	sub, err := wmstream.NewSubscriber(js, wmstream.SubscriberConfig{
		ConsumerGroup: "search",
		Stream:        sc,
		Group:         stream.GroupConfig{MaxDeliver: 5}, // then ORDERS_DLQ
	}, logger)
	if err != nil {
		return
	}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NewSlogLogger(logger))
	if err != nil {
		return
	}
	// No watermill Retry middleware: the group retries with backoff and
	// keeps later events of the key waiting meanwhile.
	router.AddMiddleware(middleware.Recoverer)
	router.AddConsumerHandler("index-orders", "ORDERS", sub, func(m *message.Message) error {
		return nil // index the order idempotently, keyed by m.UUID
	})
	if err := router.Run(ctx); err != nil {
		logger.Error("router", "error", err)
	}
}
