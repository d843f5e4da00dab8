package inbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
)

// Schema creates the inbox table. Include it in one of the consuming
// service's own migrations (goose):
//
//	-- +goose Up
//	<inbox.Schema>
//	-- +goose Down
//	DROP TABLE inbox;
//
// The table belongs to the service; its rows say which messages each of the
// service's groups has already applied.
const Schema = `
CREATE TABLE inbox (
	group_name   text        NOT NULL,
	event_id     text        NOT NULL,
	processed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (group_name, event_id)
);
CREATE INDEX inbox_processed_at_idx ON inbox (processed_at);
`

// Retention is how long consumers keep their claims (Prune): longer than
// any redelivery can come, the stream's MaxAge (7 days) and a redrive from
// the dead-letter stream (stream.DefaultDLQMaxAge, 30 days), plus a day. A
// redriven event reaches every group of its stream again; a group whose
// claim was pruned would apply it twice.
const Retention = 31 * 24 * time.Hour

// ErrInvalid is wrapped by the errors about bad input (an empty group or
// message id, a non-positive retention).
var ErrInvalid = errors.New("inbox: invalid")

// Apply runs fn in tx once per (group, id): it sets a savepoint in tx,
// claims id for group and, if the claim is new, runs fn with tx. It
// returns applied = true when fn ran and succeeded, and
// false with a nil error when (group, id) was claimed before by a
// committed transaction: a duplicate, which the caller acknowledges. When
// fn or the claim fails, Apply rolls back to the savepoint (neither the
// claim nor fn's writes remain) and returns the error; the caller retries
// the delivery. A claim of the same id held by another open transaction
// makes Apply wait for it (see the package doc). Apply neither commits nor
// rolls back tx: the claim counts once the caller commits tx. group and id
// must not be empty (ErrInvalid).
func Apply(ctx context.Context, tx pgx.Tx, group, id string, fn func(ctx context.Context, tx pgx.Tx) error) (applied bool, err error) {
	if group == "" || id == "" {
		return false, fmt.Errorf("%w: claim: group %q and message id %q must not be empty", ErrInvalid, group, id)
	}
	// The savepoint and the claim in one round trip. The savepoint is not
	// released: the caller's commit releases it, and the next Apply in tx
	// sets a newer one of the same name, which is the one a rollback to it
	// undoes.
	var saved, claimed bool
	b := &pgx.Batch{}
	b.Queue(`SAVEPOINT inbox_apply`).Exec(func(pgconn.CommandTag) error {
		saved = true
		return nil
	})
	b.Queue(`INSERT INTO inbox (group_name, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, group, id).
		Exec(func(tag pgconn.CommandTag) error {
			claimed = tag.RowsAffected() == 1
			return nil
		})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		err = fmt.Errorf("inbox claim %s/%s: %w", group, id, err)
		if saved { // else an older Apply's savepoint of the same name is not ours to roll back to
			err = undo(ctx, tx, err)
		}
		return false, err
	}
	if !claimed {
		return false, nil // claimed before: a duplicate
	}
	if err := fn(ctx, tx); err != nil {
		return false, undo(ctx, tx, err)
	}
	return true, nil
}

// undo rolls back to Apply's savepoint after err: it removes the claim and
// fn's writes, and takes tx out of the aborted state a failed statement
// left it in. It returns err, joined with the rollback's own failure.
func undo(ctx context.Context, tx pgx.Tx, err error) error {
	if _, rerr := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT inbox_apply`); rerr != nil {
		return errors.Join(err, fmt.Errorf("inbox: roll back to savepoint: %w", rerr))
	}
	return err
}

// ClaimBatch claims many message ids for group in tx with one statement,
// for a batch handler (stream.NewBatchGroup): first[i] reports whether
// ids[i] is claimed for the first time (apply its effect in tx) or was
// applied before (skip it). An id that occurs twice in ids is first only at
// its first occurrence. Claims of the same ids in concurrent transactions
// wait as with Apply. Unlike Apply it takes no savepoint: the caller rolls
// tx back when an effect fails, or the claims commit without it. No id may
// be empty (ErrInvalid); an empty list claims nothing.
func ClaimBatch(ctx context.Context, tx pgx.Tx, group string, ids []string) (first []bool, err error) {
	if group == "" {
		return nil, fmt.Errorf("%w: claim: group must not be empty", ErrInvalid)
	}
	if slices.Contains(ids, "") {
		return nil, fmt.Errorf("%w: claim for %s: empty message id", ErrInvalid, group)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO inbox (group_name, event_id)
		SELECT $1, id FROM unnest($2::text[]) AS ids(id)
		ON CONFLICT DO NOTHING
		RETURNING event_id`, group, ids)
	if err != nil {
		return nil, fmt.Errorf("inbox claim %d messages for %s: %w", len(ids), group, err)
	}
	claimed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("inbox claim %d messages for %s: %w", len(ids), group, err)
	}
	fresh := make(map[string]bool, len(claimed))
	for _, id := range claimed {
		fresh[id] = true
	}
	first = make([]bool, len(ids))
	for i, id := range ids {
		first[i] = fresh[id]
		delete(fresh, id) // a repeated id is not first again
	}
	return first, nil
}

// Execer is satisfied by *pgxpool.Pool, *pgx.Conn and pgx.Tx.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Prune deletes the claims of every group older than olderThan, batch
// rows per statement (default 1000), and returns how many it deleted.
// Newer claims are kept. Pass Retention, or anything well above the
// stream's and the dead-letter stream's MaxAge: a claim pruned while its
// message can still be delivered (a replay, a redrive) lets the effect
// happen twice, unless the handler also compares versions. olderThan must
// be positive (ErrInvalid).
func Prune(ctx context.Context, db Execer, olderThan time.Duration, batch int) (int64, error) {
	if olderThan <= 0 {
		return 0, fmt.Errorf("%w: prune: olderThan %s must be positive", ErrInvalid, olderThan)
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

// Effect is one message's part of a batch (ApplyBatch).
type Effect struct {
	// ID is the message's event ID, claimed for the group. Required.
	ID string
	// Apply writes the message's effect in tx; it runs only when ID is
	// claimed for the first time. Wrap its errors with the message's
	// identity: ApplyBatch returns them as they are.
	Apply func(ctx context.Context, tx pgx.Tx) error
}

// ApplyBatch applies effects in one transaction of db, in their order: it
// claims every ID with one statement (ClaimBatch), runs Apply of the
// effects claimed for the first time, and commits (pgdb.InTx). applied[i]
// reports whether effects[i] ran (false: a duplicate, claimed by an earlier
// commit or earlier in effects). On any error or panic nothing is kept,
// neither claims nor effects, and the error is returned as Apply returned
// it: a batch consumer then retries the messages one at a time to find the
// one that fails (stream.BatchHandler). One commit for the batch instead of
// one per message is what batch consumption saves (ADR 0017, ADR 0045); an
// empty list does nothing.
func ApplyBatch(ctx context.Context, db pgdb.Beginner, group string, effects []Effect) (applied []bool, err error) {
	if len(effects) == 0 {
		return nil, nil
	}
	ids := make([]string, len(effects))
	for i, e := range effects {
		ids[i] = e.ID
	}
	err = pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		first, err := ClaimBatch(ctx, tx, group, ids)
		if err != nil {
			return err
		}
		for i, e := range effects {
			if first[i] {
				if err := e.Apply(ctx, tx); err != nil {
					return err
				}
			}
		}
		applied = first
		return nil
	})
	if err != nil {
		return nil, err
	}
	return applied, nil
}
