package outbox

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// RepublishKey marks the published rows of one key and event type as
// unpublished, so that the relay publishes them again (with their own
// event ids: the broker drops those inside its dedup window, consumers'
// inboxes the rest once applied). It is the repair of a consumer that
// never applied an event, e.g. an order.placed that payments
// dead-lettered: call it in the transaction that records the repair. It
// returns the number of rows queued again (0 when they were pruned, past
// Retention, or are still unpublished).
//
// Per-key order: the rows go out again after rows of the key published
// since; use it only when the consumer's state shows nothing of the key
// was applied after them (an order still pending_payment has no later
// event).
func RepublishKey(ctx context.Context, db interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}, key, eventType string) (int64, error) {
	tag, err := db.Exec(ctx, `UPDATE outbox SET published_at = NULL WHERE key = $1 AND event_type = $2 AND published_at IS NOT NULL`,
		key, eventType)
	if err != nil {
		return 0, fmt.Errorf("outbox: republish %s of %s: %w", eventType, key, err)
	}
	return tag.RowsAffected(), nil
}
