package stream

import (
	"context"
	"time"

	"github.com/shopfloor/shopfloor/pkg/inbox"
)

// The inbox (the consumer side's claims table) is pkg/inbox. These two
// names forward to it only for pkg/service's prune-inbox role until that
// calls inbox.Prune and inbox.Retention; then delete this file.

// InboxRetention is inbox.Retention.
const InboxRetention = inbox.Retention

// PruneInbox is inbox.Prune.
func PruneInbox(ctx context.Context, db inbox.Execer, olderThan time.Duration, batch int) (int64, error) {
	return inbox.Prune(ctx, db, olderThan, batch)
}
