package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ParkSchema adds parked_at: rows the broker refuses for good, which the
// relay stops reading, with the later rows of their key held behind them
// (per-key order). Put it in a migration after PositionSchema; services
// created before it existed add it as their next migration.
const ParkSchema = `
ALTER TABLE outbox ADD COLUMN parked_at timestamptz;
-- Parked rows by key: the relay's read holds a key's rows behind its
-- parked one. Empty unless the broker refused a row for good.
CREATE INDEX outbox_parked ON outbox (key, id) WHERE parked_at IS NOT NULL;
`

// ErrPermanent marks a Sink error that publishing the same message again
// cannot fix (too large for the broker, malformed): the relay parks the
// row at once instead of retrying it. Wrap it: fmt.Errorf("%w: %w",
// outbox.ErrPermanent, err). Errors that concern the broker as a whole
// (no stream, no JetStream, timeouts) must not carry it: every row would
// be parked.
var ErrPermanent = errors.New("outbox: the broker refuses this message permanently")

// refusal is a row the broker refused in a batch.
type refusal struct {
	id         int64
	event, key string
	err        error
}

// refused records the broker's refusals of a batch: each refused row's
// attempts and last error; and parks the rows whose error is ErrPermanent
// or that were refused ParkAfter times in batches where the broker
// acknowledged other rows (othersAcked: the broker is up, the row is the
// problem). It returns the ids parked.
func (r *Relay) refused(ctx context.Context, l *lease, failed map[string]refusal, othersAcked bool) ([]int64, error) {
	var (
		ids    = make([]int64, 0, len(failed))
		msgs   = make([]string, 0, len(failed))
		park   = make([]bool, 0, len(failed))
		parked []int64
	)
	for _, f := range failed {
		p := errors.Is(f.err, ErrPermanent)
		if othersAcked && !p {
			r.refusals[f.id]++
			p = r.refusals[f.id] >= r.cfg.ParkAfter
		}
		ids, msgs, park = append(ids, f.id), append(msgs, truncate(f.err.Error(), 500)), append(park, p)
		if p {
			parked = append(parked, f.id)
		}
	}
	if len(parked) > 0 && !l.held() {
		return nil, errLeaseExpired
	}
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := r.fencedExec(mctx, l, `
		UPDATE outbox o SET attempts = attempts + 1, last_error = v.err,
			parked_at = CASE WHEN v.park THEN clock_timestamp() ELSE o.parked_at END
		FROM unnest($1::bigint[], $2::text[], $3::bool[]) AS v(id, err, park)
		WHERE o.id = v.id AND o.published_at IS NULL`, ids, msgs, park)
	if errors.Is(err, errFenced) {
		return nil, err
	}
	if err != nil {
		if len(parked) > 0 {
			return nil, fmt.Errorf("park %d rows: %w", len(parked), err)
		}
		r.log.WarnContext(ctx, "record publish failure", "err", err)
		return nil, nil
	}
	for _, f := range failed {
		if slices.Contains(parked, f.id) {
			delete(r.refusals, f.id)
			r.log.WarnContext(ctx, "outbox row parked: the broker refuses it; later rows of its key are held (outbox unpark)",
				"row", f.id, "event_id", f.event, "key", f.key, "err", f.err)
		}
	}
	return parked, nil
}

// ParkedRow is a parked outbox row as an operator sees it: no payload.
type ParkedRow struct {
	ID        int64
	EventID   string
	Stream    string
	Key       string
	Type      string
	CreatedAt time.Time
	ParkedAt  time.Time
	Attempts  int
	LastError string
	// Held is how many later rows of the key wait behind this one.
	Held int64
}

// Parked lists up to limit parked rows, oldest first.
func Parked(ctx context.Context, q Querier, limit int) ([]ParkedRow, error) {
	rows, err := q.Query(ctx, `
		SELECT p.id, p.event_id, p.stream, p.key, p.event_type, p.created_at, p.parked_at, p.attempts, coalesce(p.last_error, ''),
			(SELECT count(*) FROM outbox h WHERE h.key = p.key AND h.id > p.id AND h.published_at IS NULL)
		FROM outbox p WHERE p.parked_at IS NOT NULL ORDER BY p.id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("outbox: parked rows: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ParkedRow, error) {
		var p ParkedRow
		err := r.Scan(&p.ID, &p.EventID, &p.Stream, &p.Key, &p.Type, &p.CreatedAt, &p.ParkedAt, &p.Attempts, &p.LastError, &p.Held)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: parked rows: %w", err)
	}
	return out, nil
}

// ErrNotParked is Unpark's answer for an id that is not a parked row.
var ErrNotParked = errors.New("outbox: no parked row with that id")

// Unpark clears parked_at on the row id (all parked rows when all is set)
// and wakes the relay, which publishes it again, followed by the rows of
// its key held behind it. Unpark the row once the cause is fixed (the
// broker's limit raised, the stream created); a row the broker still
// refuses is parked again. It returns the ids unparked.
func Unpark(ctx context.Context, db interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}, id int64, all bool) ([]int64, error) {
	rows, err := db.Query(ctx, `
		UPDATE outbox SET parked_at = NULL
		WHERE parked_at IS NOT NULL AND ($2 OR id = $1) RETURNING id`, id, all)
	if err != nil {
		return nil, fmt.Errorf("outbox: unpark: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("outbox: unpark: %w", err)
	}
	if len(ids) == 0 && !all {
		return nil, fmt.Errorf("%w: %d", ErrNotParked, id)
	}
	slices.Sort(ids)
	if _, err := db.Exec(ctx, `SELECT pg_notify($1, '')`, NotifyChannel); err != nil {
		return ids, fmt.Errorf("outbox: wake the relay: %w", err)
	}
	return ids, nil
}
