package jobqueue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
)

// Example enqueues a job in the transaction that makes it necessary and
// runs a worker for the queue: a job is received with a visibility
// timeout (the heartbeat extends it while the handler runs), deleted when
// the handler succeeds, received again after a failure with backoff, and
// moved to the dead-letter queue after MaxReceiveCount receives.
func Example() {
	ctx := context.Background()
	var (
		db     *pgxpool.Pool // with jobqueue.Schema migrated
		logger = slog.Default()
	)
	q, err := jobqueue.New(db, jobqueue.Options{Logger: logger})
	if err != nil {
		return
	}
	// At start-up: idempotent.
	for _, queue := range []jobqueue.Queue{
		{Name: "charges-dlq", Retention: jobqueue.DeadLetterRetention},
		{Name: "charges", VisibilityTimeout: 30 * time.Second, MaxReceiveCount: 10, DeadLetterQueue: "charges-dlq"},
	} {
		if err := q.CreateQueue(ctx, queue); err != nil {
			logger.Error("queue", "error", err)
			return
		}
	}

	// The request path: the payment row and its job commit together.
	err = pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO payments (id, status) VALUES ($1, 'pending')`, "pay-1"); err != nil {
			return err
		}
		body, _ := json.Marshal(map[string]string{"payment_id": "pay-1"})
		_, err := q.Send(ctx, tx, "charges", jobqueue.SendInput{Body: body, DedupID: "pay-1"})
		return err
	})
	if err != nil {
		logger.Error("enqueue", "error", err)
		return
	}

	// The worker role: run the same code in every instance.
	w := q.NewWorker(jobqueue.WorkerConfig{Queue: "charges", Concurrency: 8}, func(ctx context.Context, m jobqueue.Message) error {
		var job struct {
			PaymentID string `json:"payment_id"`
		}
		if err := json.Unmarshal(m.Body, &job); err != nil {
			return &jobqueue.PermanentError{Err: fmt.Errorf("job %d: %w", m.ID, err)} // straight to the DLQ
		}
		// Call the provider with an idempotency key stable across receives
		// (job.PaymentID), then record the outcome; an error retries.
		return nil
	})
	_ = w.Run(ctx) // until ctx ends
}
