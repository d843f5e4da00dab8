package stream

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// InboxSchema creates the inbox table. Include it in one of the consuming
// service's own migrations (goose):
//
//	-- +goose Up
//	<InboxSchema>
//	-- +goose Down
//	DROP TABLE inbox;
//
// The table belongs to the service; its rows say which events each of the
// service's groups has already applied.
const InboxSchema = `
CREATE TABLE inbox (
	group_name   text        NOT NULL,
	event_id     text        NOT NULL,
	processed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (group_name, event_id)
);
CREATE INDEX inbox_processed_at_idx ON inbox (processed_at);
`

// Inbox de-duplicates deliveries on the consumer side: a handler claims the
// event ID in the same transaction as the event's effect. The first claim
// commits with the effect; a redelivery (after a lost ack, a redrive or a
// replay) finds the claim and skips the effect. A rolled-back transaction
// leaves no claim, so the retry applies the effect. The zero value is ready
// to use.
type Inbox struct{}

// Claim records that group processes eventID within tx and reports whether
// this is the first time (true: apply the effect; false: already applied,
// do nothing and return nil so the message is acknowledged). A concurrent
// claim of the same ID in another transaction waits for that transaction
// and then reports false if it committed.
func (Inbox) Claim(ctx context.Context, tx pgx.Tx, group, eventID string) (first bool, err error) {
	if group == "" || eventID == "" {
		return false, invalidf("inbox claim: group %q and event ID %q must not be empty", group, eventID)
	}
	tag, err := tx.Exec(ctx,
		`INSERT INTO inbox (group_name, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, group, eventID)
	if err != nil {
		return false, fmt.Errorf("inbox claim %s/%s: %w", group, eventID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ClaimBatch is Claim for many event IDs in one statement, for a
// BatchHandler: first[i] reports whether eventIDs[i] is claimed for the
// first time (apply its effect) or was applied before (skip it). An ID that
// occurs twice in eventIDs is first only at its first occurrence. Claims of
// the same IDs in concurrent transactions wait as with Claim. No ID may be
// empty; an empty list claims nothing.
func (Inbox) ClaimBatch(ctx context.Context, tx pgx.Tx, group string, eventIDs []string) (first []bool, err error) {
	if group == "" {
		return nil, invalidf("inbox claim: group must not be empty")
	}
	if slices.Contains(eventIDs, "") {
		return nil, invalidf("inbox claim for %s: empty event ID", group)
	}
	if len(eventIDs) == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO inbox (group_name, event_id)
		SELECT $1, id FROM unnest($2::text[]) AS ids(id)
		ON CONFLICT DO NOTHING
		RETURNING event_id`, group, eventIDs)
	if err != nil {
		return nil, fmt.Errorf("inbox claim %d events for %s: %w", len(eventIDs), group, err)
	}
	claimed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("inbox claim %d events for %s: %w", len(eventIDs), group, err)
	}
	fresh := make(map[string]bool, len(claimed))
	for _, id := range claimed {
		fresh[id] = true
	}
	first = make([]bool, len(eventIDs))
	for i, id := range eventIDs {
		first[i] = fresh[id]
		delete(fresh, id) // a repeated ID is not first again
	}
	return first, nil
}

// Execer is satisfied by *pgxpool.Pool, *pgx.Conn and pgx.Tx.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// PruneInbox deletes claims older than olderThan, batch rows per statement
// (default 1000), and returns how many it deleted. Keep olderThan well above
// the stream's MaxAge: a claim pruned while its event can still be
// delivered (a replay, a redrive) lets the effect happen twice, unless the
// handler also compares versions.
func PruneInbox(ctx context.Context, db Execer, olderThan time.Duration, batch int) (int64, error) {
	if olderThan <= 0 {
		return 0, invalidf("prune inbox: olderThan %s must be positive", olderThan)
	}
	if batch <= 0 {
		batch = 1000
	}
	var total int64
	for {
		tag, err := db.Exec(ctx, `
			DELETE FROM inbox WHERE ctid IN (
				SELECT ctid FROM inbox WHERE processed_at < now() - $1::interval LIMIT $2)`,
			olderThan, batch)
		if err != nil {
			return total, fmt.Errorf("prune inbox: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return total, nil
		}
	}
}
