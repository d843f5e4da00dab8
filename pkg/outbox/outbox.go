package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/events"
)

// Schema creates the outbox table. Put it in a goose migration of the
// service that owns the outbox, e.g.
//
//	-- +goose Up
//	<outbox.Schema>
//	-- +goose Down
//	DROP TABLE outbox;
const Schema = `
CREATE TABLE outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     text NOT NULL,
    stream       text NOT NULL,
    key          text NOT NULL,
    event_type   text NOT NULL,
    payload      bytea NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz,
    attempts     int NOT NULL DEFAULT 0,
    last_error   text
);
-- The relay's work list: only unpublished rows, in id order. Marking a row
-- published touches no other index (pruning walks the primary key from the
-- oldest id), which keeps the relay's UPDATE cheap. event_id is not unique
-- here: it is a UUIDv7, and duplicates are the broker's and the inbox's
-- business downstream.
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
`

// PositionSchema adds where each row went (published_partition,
// published_sequence, recorded by the relay) and an index to find an
// aggregate's rows by key (Events). Put it in a migration after Schema;
// services created before it existed add it as their next migration.
const PositionSchema = `
ALTER TABLE outbox ADD COLUMN published_partition int, ADD COLUMN published_sequence bigint;
-- An aggregate's events (Events: an order's timeline). The relay's UPDATE
-- does not touch key, so marking rows published stays a HOT update.
CREATE INDEX outbox_key ON outbox (key);
`

// NotifyChannel is the LISTEN/NOTIFY channel Publish signals on commit, so
// the relay wakes at once instead of waiting for its poll interval.
const NotifyChannel = "shopfloor_outbox"

// lockClass is the first key of the two-key advisory locks Publish takes, so
// they never collide with other advisory locks of the service ("OBOX").
const lockClass = 0x4f424f58

// Outbox writes events for one stream.
type Outbox struct {
	stream string
	inject func(ctx context.Context, headers map[string]string)
}

// Option configures an Outbox.
type Option func(*Outbox)

// WithTraceInjector adds the trace context of ctx to every event's headers
// (e.g. telemetry.Inject), unless the event already carries a traceparent.
func WithTraceInjector(inject func(ctx context.Context, headers map[string]string)) Option {
	return func(o *Outbox) { o.inject = inject }
}

// New returns an outbox that publishes to stream (e.g. "ORDERS").
func New(stream string, opts ...Option) *Outbox {
	o := &Outbox{stream: stream}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// Stream is the stream this outbox publishes to.
func (o *Outbox) Stream() string { return o.stream }

// Publish writes evs in tx. Each event must be valid (events.Validate); its
// Subject is the ordering key. Publish locks every key for the rest of tx
// (see the package doc), in sorted order so that two transactions emitting
// for the same keys cannot deadlock on them.
func (o *Outbox) Publish(ctx context.Context, tx pgx.Tx, evs ...events.Envelope) error {
	if len(evs) == 0 {
		return nil
	}
	ids := make([]string, len(evs))
	keys := make([]string, len(evs))
	types := make([]string, len(evs))
	payloads := make([][]byte, len(evs))
	// Headers go as text (cast to jsonb[] by the INSERT): pgx in exec
	// mode, which PgBouncer in transaction mode needs (ADR 0042), would
	// send [][]byte as bytea[], which jsonb cannot parse.
	headers := make([]string, len(evs))
	for i, ev := range evs {
		body, err := events.Marshal(ev)
		if err != nil {
			return fmt.Errorf("outbox: event %d (%s): %w", i, ev.Type, err)
		}
		h := ev.Metadata()
		if o.inject != nil && h["traceparent"] == "" {
			o.inject(ctx, h)
		}
		hj, err := json.Marshal(h)
		if err != nil {
			return fmt.Errorf("outbox: headers of %s: %w", ev.ID, err)
		}
		ids[i], keys[i], types[i], payloads[i], headers[i] = ev.ID, ev.Subject, ev.Type, body, string(hj)
	}
	lockKeys := slices.Clone(keys)
	slices.Sort(lockKeys)
	lockKeys = slices.Compact(lockKeys)
	// Three statements in one round trip (a pipeline, in order, inside
	// tx): lock the keys (so commits of one key are in id order), insert,
	// and wake the relay at commit.
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1::int, hashtext(k)) FROM unnest($2::text[]) AS k ORDER BY k`,
		lockClass, lockKeys)
	b.Queue(`
		INSERT INTO outbox (event_id, stream, key, event_type, payload, headers)
		SELECT e.id, $1, e.key, e.type, e.payload, e.headers
		FROM unnest($2::text[], $3::text[], $4::text[], $5::bytea[], $6::jsonb[])
		     WITH ORDINALITY AS e(id, key, type, payload, headers, n)
		ORDER BY e.n`,
		o.stream, ids, keys, types, payloads, headers)
	b.Queue(`SELECT pg_notify($1, '')`, NotifyChannel)
	br := tx.SendBatch(ctx, b)
	for _, what := range []string{"lock keys", fmt.Sprintf("insert %d events", len(evs)), "notify"} {
		if _, err := br.Exec(); err != nil {
			return errors.Join(fmt.Errorf("outbox: %s: %w", what, err), br.Close())
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// Record is one outbox row as an aggregate's history shows it.
type Record struct {
	EventID, Stream, Key, Type string
	CreatedAt                  time.Time
	// PublishedAt is nil while the row waits for the relay; Partition and
	// Sequence say where the broker stored it (nil when it did not say, or
	// for rows published before PositionSchema).
	PublishedAt *time.Time
	Partition   *int
	Sequence    *int64
	// Attempts and LastError are the relay's failed publishes of the row.
	Attempts  int
	LastError string
	// ParkedAt is set while the row is parked (the broker refuses it;
	// ParkSchema).
	ParkedAt *time.Time
	// TraceParent is the W3C trace context the event carries (empty when
	// none was injected).
	TraceParent string
}

// Querier runs a query (a pool, a connection or a transaction).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Events returns up to limit rows of key (an aggregate's events: an
// order's), oldest first, from the table PositionSchema indexes by key.
// Rows older than the relay's Retention are gone.
func Events(ctx context.Context, q Querier, key string, limit int) ([]Record, error) {
	rows, err := q.Query(ctx, `
		SELECT event_id, stream, key, event_type, created_at, published_at, published_partition, published_sequence,
			attempts, coalesce(last_error, ''), parked_at, coalesce(headers->>'traceparent', '')
		FROM outbox WHERE key = $1 ORDER BY id LIMIT $2`, key, limit)
	if err != nil {
		return nil, fmt.Errorf("outbox: events of %s: %w", key, err)
	}
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Record, error) {
		var rec Record
		err := r.Scan(&rec.EventID, &rec.Stream, &rec.Key, &rec.Type, &rec.CreatedAt, &rec.PublishedAt, &rec.Partition, &rec.Sequence,
			&rec.Attempts, &rec.LastError, &rec.ParkedAt, &rec.TraceParent)
		return rec, err
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: events of %s: %w", key, err)
	}
	return recs, nil
}
