package stream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/inbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
)

// Example wires a producer and a consumer group whose handler applies each
// event once, with the inbox claim in the transaction of its effect.
func Example() {
	ctx := context.Background()
	var (
		js     jetstream.JetStream // from jetstream.New(nc)
		db     *pgxpool.Pool       // the consuming service's database, with inbox.Schema migrated
		logger = slog.Default()
	)

	// At start-up, every role: idempotent.
	if err := stream.EnsureStream(ctx, js, stream.StreamConfig{Name: "ORDERS", Partitions: 8}); err != nil {
		logger.Error("stream", "error", err)
		return
	}

	// Producer (normally the outbox relay).
	pub, err := stream.NewPublisher(js, "ORDERS", 8)
	if err != nil {
		return
	}
	if _, err := pub.Publish(ctx, stream.Message{ID: "evt-1", Key: "order-42", Payload: []byte(`{"version":1}`)}); err != nil {
		logger.Error("publish", "error", err)
	}

	// Consumer group: run the same code in every instance of the service.
	handle := func(ctx context.Context, d stream.Delivery) error {
		var ev struct{ Version int }
		if err := json.Unmarshal(d.Payload, &ev); err != nil {
			return stream.Permanent(fmt.Errorf("decode %s: %w", d.ID, err)) // to the DLQ, no retries
		}
		return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
			// A duplicate is skipped (applied = false, nil: acknowledged);
			// an error is retried with backoff.
			_, err := inbox.Apply(ctx, tx, "search", d.ID, func(ctx context.Context, tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `UPDATE order_index SET version = $2 WHERE id = $1 AND version < $2`, d.Key, ev.Version)
				return err
			})
			return err
		})
	}
	g, err := stream.NewGroup(js, stream.GroupConfig{
		Stream:     "ORDERS",
		Name:       "search",
		MaxDeliver: 5,
		Backoff:    backoff.Policy{Initial: 200 * time.Millisecond, Max: 10 * time.Second},
	}, handle, logger)
	if err != nil {
		return
	}
	_ = g.Run(ctx) // until ctx ends
}

// ExampleNewBatchGroup applies up to 128 events of a partition in one
// transaction: one inbox claim statement for the batch, and the effects of
// the events seen for the first time.
func ExampleNewBatchGroup() {
	var (
		js     jetstream.JetStream // from jetstream.New(nc)
		db     *pgxpool.Pool       // with inbox.Schema migrated
		logger = slog.Default()
	)
	handle := func(ctx context.Context, ds []stream.Delivery) error {
		ids := make([]string, len(ds))
		for i, d := range ds {
			ids[i] = d.ID
		}
		return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
			first, err := inbox.ClaimBatch(ctx, tx, "search", ids)
			if err != nil {
				return err // the batch is handled again one message at a time
			}
			for i, d := range ds { // in stream order: each key's events in order
				if !first[i] {
					continue // applied before
				}
				var ev struct{ Version int }
				if err := json.Unmarshal(d.Payload, &ev); err != nil {
					// Handled alone, this message goes to the DLQ; the
					// rest of the batch is applied without it.
					return stream.Permanent(fmt.Errorf("decode %s: %w", d.ID, err))
				}
				if _, err := tx.Exec(ctx, `UPDATE order_index SET version = $2 WHERE id = $1 AND version < $2`, d.Key, ev.Version); err != nil {
					return err
				}
			}
			return nil
		})
	}
	g, err := stream.NewBatchGroup(js, stream.GroupConfig{
		Stream:   "ORDERS",
		Name:     "search",
		MaxBatch: 128,
	}, handle, logger)
	if err != nil {
		return
	}
	_ = g.Run(context.Background()) // until ctx ends
}
