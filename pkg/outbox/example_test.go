package outbox_test

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
)

// Example writes an event in the transaction of the state change it
// reports, and runs the relay that publishes it to the stream. The relay
// runs in every instance; one leads (the others stand by), and a crash
// anywhere between commit and publish loses nothing: the row stays until
// the broker has acknowledged it.
func Example() {
	ctx := context.Background()
	var (
		db     *pgxpool.Pool       // the service's database, with outbox.Schema, PositionSchema and ParkSchema migrated
		js     jetstream.JetStream // from jetstream.New(nc)
		logger = slog.Default()
	)
	ob := outbox.New("ORDERS")

	// The request path: the order and its event commit together, or neither.
	err := pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE orders SET status = 'paid', version = version + 1 WHERE id = $1`, "order-42"); err != nil {
			return err
		}
		ev, err := events.New("orders", "order.paid", "order-42", 1, 2, map[string]any{"order_id": "order-42"}, time.Now())
		if err != nil {
			return err
		}
		return ob.Publish(ctx, tx, ev) // keyed by the event's subject: one order's events stay in order
	})
	if err != nil {
		logger.Error("pay", "error", err)
		return
	}

	// The relay role: publish every committed row, in commit order per key.
	pub, err := stream.NewPublisher(js, "ORDERS", 8)
	if err != nil {
		return
	}
	relay, err := outbox.NewRelay(db, outbox.StreamSink{"ORDERS": pub}, outbox.RelayConfig{}, logger)
	if err != nil {
		return
	}
	_ = relay.Run(ctx) // until ctx ends
}
