// Package indexpg is search's PostgreSQL store: version-guarded upserts of
// product and order documents, per-partition positions, full-text and
// trigram search, and the table sets a rebuild creates, compares and swaps
// in.
//
// Contract: the indexes are derived and may lag their streams; they never
// move backward (ApplyProduct and ApplyOrder change a document only for a
// newer entity version, positions only grow); they converge (applying the
// same events in any per-key order gives the same documents, which Compare
// checks against a rebuild).
//
// A Projection names the tables of one index. The live projections have
// fixed names (LiveProducts, LiveOrders); a rebuild writes a copy with a
// suffix and Swap renames it into place in one transaction. Writers and
// readers always name the live tables, so after a swap they use the new
// tables without being told: PostgreSQL resolves a table name when it
// takes the table's lock, and re-resolves it when the lock it waited for
// comes with a rename (prepared statements are re-planned the same way).
//
// Lock order, to keep a swap from deadlocking with readers and writers:
// every statement touches docs before texts before positions, and Swap
// locks them in that order.
package indexpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopfloor/shopfloor/services/search/internal/index"
)

// DB is satisfied by *pgxpool.Pool, *pgx.Conn and pgx.Tx.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// TxStarter is satisfied by *pgxpool.Pool and *pgx.Conn.
type TxStarter interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Projection names the tables of one index: its documents, (for
// products) the per-locale texts, and its positions per partition.
type Projection struct {
	// Kind picks the documents' shape (and the id column).
	Kind index.Kind
	// Docs holds one row per entity: the version guard.
	Docs string
	// Texts holds one row per product and locale; empty for orders.
	Texts string
	// Positions holds the highest sequence finished per partition.
	Positions string
}

// The live projections, created by the migration.
var (
	LiveProducts = Projection{Kind: index.Products, Docs: "products", Texts: "product_texts", Positions: "catalog_positions"}
	LiveOrders   = Projection{Kind: index.Orders, Docs: "orders", Positions: "orders_positions"}
)

// Tables lists the projection's tables in lock order.
func (p Projection) Tables() []string {
	if p.Texts == "" {
		return []string{p.Docs, p.Positions}
	}
	return []string{p.Docs, p.Texts, p.Positions}
}

// WithSuffix returns the projection whose tables are this one's named
// <table>_<suffix>. suffix must be lower-case letters and digits.
func (p Projection) WithSuffix(suffix string) Projection {
	out := Projection{Kind: p.Kind, Docs: p.Docs + "_" + suffix, Positions: p.Positions + "_" + suffix}
	if p.Texts != "" {
		out.Texts = p.Texts + "_" + suffix
	}
	return out
}

// key is the documents' id column.
func (p Projection) key() string {
	if p.Kind == index.Orders {
		return "order_id"
	}
	return "product_id"
}

// sql fills the table placeholders of a statement ({docs}, {texts},
// {positions}, {key}) with the projection's quoted names. Only these
// fixed names ever enter SQL text; values are always parameters.
func (p Projection) sql(tpl string) string {
	return strings.NewReplacer(
		"{docs}", pgx.Identifier{p.Docs}.Sanitize(),
		"{texts}", pgx.Identifier{p.Texts}.Sanitize(),
		"{positions}", pgx.Identifier{p.Positions}.Sanitize(),
		"{key}", p.key(),
	).Replace(tpl)
}

// ApplyProduct writes doc if its version is newer than the one stored
// (applied = true); an older or equal version changes nothing. The
// product's texts are replaced with its row. Call it in the transaction
// that also calls Advance.
func ApplyProduct(ctx context.Context, tx pgx.Tx, p Projection, doc index.Product, src index.Source) (applied bool, err error) {
	prices, err := json.Marshal(doc.Prices)
	if err != nil {
		return false, fmt.Errorf("product %s prices: %w", doc.ID, err)
	}
	images, err := json.Marshal(doc.Images)
	if err != nil {
		return false, fmt.Errorf("product %s images: %w", doc.ID, err)
	}
	err = tx.QueryRow(ctx, p.sql(`
		INSERT INTO {docs} AS d (product_id, version, status, category, sku, prices, images, has_text,
			source_stream, source_partition, source_sequence, event_id, event_time, applied_at)
		VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, $11, $12, $13, now())
		ON CONFLICT (product_id) DO UPDATE SET
			version = EXCLUDED.version, status = EXCLUDED.status, category = EXCLUDED.category, sku = EXCLUDED.sku,
			prices = EXCLUDED.prices, images = EXCLUDED.images, has_text = EXCLUDED.has_text,
			source_stream = EXCLUDED.source_stream, source_partition = EXCLUDED.source_partition,
			source_sequence = EXCLUDED.source_sequence, event_id = EXCLUDED.event_id,
			event_time = EXCLUDED.event_time, applied_at = EXCLUDED.applied_at
		WHERE d.version < EXCLUDED.version
		RETURNING true`),
		doc.ID, doc.Version, doc.Status, doc.Category, doc.SKU, string(prices), string(images), doc.HasText,
		src.Stream, src.Partition, int64(src.Sequence), src.EventID, src.EventTime).Scan(&applied)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil // stale: the stored version is newer or equal
	}
	if err != nil {
		return false, fmt.Errorf("upsert product %s v%d: %w", doc.ID, doc.Version, err)
	}
	if _, err := tx.Exec(ctx, p.sql(`DELETE FROM {texts} WHERE product_id = $1`), doc.ID); err != nil {
		return false, fmt.Errorf("replace texts of product %s: %w", doc.ID, err)
	}
	if len(doc.Texts) == 0 {
		return true, nil
	}
	locales, configs, names, descs := make([]string, len(doc.Texts)), make([]string, len(doc.Texts)), make([]string, len(doc.Texts)), make([]string, len(doc.Texts))
	for i, t := range doc.Texts {
		locales[i], configs[i], names[i], descs[i] = t.Locale, t.Config, t.Name, t.Description
	}
	if _, err := tx.Exec(ctx, p.sql(`
		INSERT INTO {texts} (product_id, locale, config, name, description, category, sku, version)
		SELECT $1, l, c::regconfig, n, ds, $2, $3, $4
		FROM unnest($5::text[], $6::text[], $7::text[], $8::text[]) AS t(l, c, n, ds)`),
		doc.ID, doc.Category, doc.SKU, doc.Version, locales, configs, names, descs); err != nil {
		return false, fmt.Errorf("insert texts of product %s: %w", doc.ID, err)
	}
	return true, nil
}

// ApplyOrder writes doc if its version is newer than the one stored; an
// older or equal version changes nothing. A doc without items (a status
// event) keeps the items already stored; placed_at keeps the earliest
// time seen.
func ApplyOrder(ctx context.Context, tx pgx.Tx, p Projection, doc index.Order, src index.Source) (applied bool, err error) {
	var items *string
	if doc.Items != nil {
		b, err := json.Marshal(doc.Items)
		if err != nil {
			return false, fmt.Errorf("order %s items: %w", doc.ID, err)
		}
		s := string(b)
		items = &s
	}
	err = tx.QueryRow(ctx, p.sql(`
		INSERT INTO {docs} AS o (order_id, customer_id, customer_email, status, currency, total_minor, items, item_text,
			version, placed_at, updated_at, source_stream, source_partition, source_sequence, event_id, applied_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $10, $11, $12, $13, $14, now())
		ON CONFLICT (order_id) DO UPDATE SET
			customer_id = EXCLUDED.customer_id, customer_email = EXCLUDED.customer_email, status = EXCLUDED.status,
			currency = EXCLUDED.currency, total_minor = EXCLUDED.total_minor,
			items = coalesce(EXCLUDED.items, o.items),
			item_text = CASE WHEN EXCLUDED.items IS NULL THEN o.item_text ELSE EXCLUDED.item_text END,
			version = EXCLUDED.version, placed_at = least(o.placed_at, EXCLUDED.placed_at), updated_at = EXCLUDED.updated_at,
			source_stream = EXCLUDED.source_stream, source_partition = EXCLUDED.source_partition,
			source_sequence = EXCLUDED.source_sequence, event_id = EXCLUDED.event_id, applied_at = EXCLUDED.applied_at
		WHERE o.version < EXCLUDED.version
		RETURNING true`),
		doc.ID, doc.CustomerID, doc.CustomerEmail, doc.Status, doc.Currency, doc.TotalMinor, items, doc.ItemText(),
		doc.Version, doc.At, src.Stream, src.Partition, int64(src.Sequence), src.EventID).Scan(&applied)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("upsert order %s v%d: %w", doc.ID, doc.Version, err)
	}
	return true, nil
}

// Advance records that the projection finished the event at src (applied,
// stale or ignored): the partition's position only moves forward. Call
// it in the transaction of the event's effect.
func Advance(ctx context.Context, tx pgx.Tx, p Projection, src index.Source) error {
	_, err := tx.Exec(ctx, p.sql(`
		INSERT INTO {positions} AS p (partition, sequence, event_time, applied_at) VALUES ($1, $2, $3, now())
		ON CONFLICT (partition) DO UPDATE SET
			sequence = greatest(p.sequence, EXCLUDED.sequence),
			event_time = CASE WHEN EXCLUDED.sequence > p.sequence THEN EXCLUDED.event_time ELSE p.event_time END,
			applied_at = EXCLUDED.applied_at`),
		src.Partition, int64(src.Sequence), src.Published)
	if err != nil {
		return fmt.Errorf("advance %s partition %d to %d: %w", p.Positions, src.Partition, src.Sequence, err)
	}
	return nil
}

// Positions returns the highest sequence finished per partition
// (partitions without a row have finished nothing).
func Positions(ctx context.Context, db DB, p Projection) (map[int]uint64, error) {
	rows, err := db.Query(ctx, p.sql(`SELECT partition, sequence FROM {positions}`))
	if err != nil {
		return nil, fmt.Errorf("positions of %s: %w", p.Positions, err)
	}
	out := map[int]uint64{}
	var part int
	var seq int64
	_, err = pgx.ForEachRow(rows, []any{&part, &seq}, func() error {
		out[part] = uint64(seq)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("positions of %s: %w", p.Positions, err)
	}
	return out, nil
}

// Freshness returns when the projection last finished an event and when
// the broker stored the newest event it finished; nil when it has
// finished none.
func Freshness(ctx context.Context, db DB, p Projection) (lastApplied, lastEvent *time.Time, err error) {
	err = db.QueryRow(ctx, p.sql(`SELECT max(applied_at), max(event_time) FROM {positions}`)).Scan(&lastApplied, &lastEvent)
	if err != nil {
		return nil, nil, fmt.Errorf("freshness of %s: %w", p.Positions, err)
	}
	return lastApplied, lastEvent, nil
}

// CreateTables creates p's tables as copies of live's structure (columns,
// generated columns, defaults, constraints, indexes): an empty projection
// for a rebuild.
func CreateTables(ctx context.Context, db DB, live, p Projection) error {
	lt, pt := live.Tables(), p.Tables()
	for i := range lt {
		_, err := db.Exec(ctx, "CREATE TABLE "+pgx.Identifier{pt[i]}.Sanitize()+" (LIKE "+pgx.Identifier{lt[i]}.Sanitize()+" INCLUDING ALL)")
		if err != nil {
			return fmt.Errorf("create %s like %s: %w", pt[i], lt[i], ownerHint(err))
		}
	}
	return nil
}

// ownerHint adds to a permission error what to do: a rebuild or check
// creates, renames and drops tables, which the app role the service runs
// as may not (ADR 0040).
func ownerHint(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
		return fmt.Errorf("%w (rebuild and check change the schema: run them as the database's owner role, search_owner, "+
			"as `deploy/local/ctl.sh exec search ...` does; ADR 0040)", err)
	}
	return err
}

// DropTables drops p's tables if they exist.
func DropTables(ctx context.Context, db DB, p Projection) error {
	names := make([]string, 0, 3)
	for _, t := range p.Tables() {
		names = append(names, pgx.Identifier{t}.Sanitize())
	}
	if _, err := db.Exec(ctx, "DROP TABLE IF EXISTS "+strings.Join(names, ", ")); err != nil {
		return fmt.Errorf("drop %v: %w", p.Tables(), err)
	}
	return nil
}

// Leftovers lists tables of earlier rebuilds of live that were never
// swapped in or dropped (the rebuild died): <table>_r<id> and
// <table>_o<id>.
func Leftovers(ctx context.Context, db DB, live Projection) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename ~ $1 ORDER BY tablename`,
		`^(`+strings.Join(live.Tables(), "|")+`)_[ro][0-9a-z]+$`)
	if err != nil {
		return nil, fmt.Errorf("list leftover tables: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list leftover tables: %w", err)
	}
	return names, nil
}

// DropTable drops one table by name, if it exists.
func DropTable(ctx context.Context, db DB, name string) error {
	if _, err := db.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("drop %s: %w", name, err)
	}
	return nil
}

// ErrBehind is returned by Swap when the rebuilt projection has not yet
// finished every event the live one has: swapping would lose them.
var ErrBehind = errors.New("rebuilt projection is behind the live one")

// ErrBusy is returned by Swap when the live tables could not be locked
// within the lock timeout (long-running readers): try again.
var ErrBusy = errors.New("live tables are busy")

// SwapOptions bounds a Swap. The zero value of every field picks the
// default.
type SwapOptions struct {
	// LockTimeout bounds each wait for a lock (PostgreSQL lock_timeout), so
	// that a swap never queues readers behind it for long. Default 2s.
	LockTimeout time.Duration
	// CatchUp bounds how long the live writers are paused while the
	// rebuilt projection catches up with them. Keep it well below the live
	// group's handler timeout (AckWait, 30s). Default 10s.
	CatchUp time.Duration
	// Poll is how often the positions are compared while catching up.
	// Default 20ms.
	Poll time.Duration
}

// Swap makes rebuilt the live projection, in one transaction:
//
//  1. It locks live's tables in SHARE mode: live writers (the live
//     consumer) pause, readers go on.
//  2. It waits, at most opts.CatchUp, until rebuilt's position is at or
//     past live's in every partition; the rebuild's consumer keeps
//     writing to rebuilt meanwhile. If it does not get there: ErrBehind,
//     nothing changes, the writers resume.
//  3. It locks live's and rebuilt's tables ACCESS EXCLUSIVE (readers wait
//     for the rename only), renames live's tables and their indexes to
//     <table>_<oldSuffix>, and rebuilt's to live's names.
//
// Each lock wait gives up after opts.LockTimeout (ErrBusy). Writers
// blocked on the locks continue on the new tables after commit, and find
// the events rebuilt is ahead with stale. The caller drops the old tables.
func Swap(ctx context.Context, db TxStarter, live, rebuilt Projection, oldSuffix string, opts SwapOptions) error {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 2 * time.Second
	}
	if opts.CatchUp <= 0 {
		opts.CatchUp = 10 * time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = 20 * time.Millisecond
	}
	lock := func(tx pgx.Tx, mode string, tables ...string) error {
		names := make([]string, len(tables))
		for i, t := range tables {
			names[i] = pgx.Identifier{t}.Sanitize()
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE "+strings.Join(names, ", ")+" IN "+mode+" MODE"); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "55P03" { // lock_not_available
				return fmt.Errorf("%w: %w", ErrBusy, err)
			}
			return fmt.Errorf("swap: lock %s: %w", mode, err)
		}
		return nil
	}
	return pgx.BeginTxFunc(ctx, db, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, fmt.Sprintf("%dms", opts.LockTimeout.Milliseconds())); err != nil {
			return fmt.Errorf("swap: lock timeout: %w", err)
		}
		if err := lock(tx, "SHARE", live.Tables()...); err != nil {
			return err
		}
		deadline := time.Now().Add(opts.CatchUp)
		for {
			behind, err := behind(ctx, tx, live, rebuilt)
			if err != nil {
				return err
			}
			if len(behind) == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%w after %s: %s", ErrBehind, opts.CatchUp, strings.Join(behind, "; "))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(opts.Poll):
			}
		}
		if err := lock(tx, "ACCESS EXCLUSIVE", append(live.Tables(), rebuilt.Tables()...)...); err != nil {
			return err
		}
		old := live.WithSuffix(oldSuffix)
		lt, ot, rt := live.Tables(), old.Tables(), rebuilt.Tables()
		for i := range lt {
			if err := rename(ctx, tx, lt[i], ot[i]); err != nil {
				return err
			}
		}
		for i := range rt {
			if err := rename(ctx, tx, rt[i], lt[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// behind lists the partitions where rebuilt's position is below live's.
func behind(ctx context.Context, tx pgx.Tx, live, rebuilt Projection) ([]string, error) {
	livePos, err := Positions(ctx, tx, live)
	if err != nil {
		return nil, err
	}
	newPos, err := Positions(ctx, tx, rebuilt)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, part := range slices.Sorted(maps.Keys(livePos)) {
		if newPos[part] < livePos[part] {
			out = append(out, fmt.Sprintf("partition %d at %d, live at %d", part, newPos[part], livePos[part]))
		}
	}
	return out, nil
}

// rename renames table from to to, and each of its indexes whose name
// starts with "<from>_" to "<to>_..." (the names PostgreSQL chooses), so
// that index names follow the table through swaps.
func rename(ctx context.Context, tx pgx.Tx, from, to string) error {
	rows, err := tx.Query(ctx, `SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1`, from)
	if err != nil {
		return fmt.Errorf("indexes of %s: %w", from, err)
	}
	idx, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("indexes of %s: %w", from, err)
	}
	for _, name := range idx {
		rest, ok := strings.CutPrefix(name, from+"_")
		if !ok || len(to)+1+len(rest) > 63 {
			continue // a name chosen by hand, or too long: keep it
		}
		if _, err := tx.Exec(ctx, "ALTER INDEX "+pgx.Identifier{name}.Sanitize()+" RENAME TO "+pgx.Identifier{to + "_" + rest}.Sanitize()); err != nil {
			return fmt.Errorf("rename index %s: %w", name, err)
		}
	}
	if _, err := tx.Exec(ctx, "ALTER TABLE "+pgx.Identifier{from}.Sanitize()+" RENAME TO "+pgx.Identifier{to}.Sanitize()); err != nil {
		return fmt.Errorf("rename %s to %s: %w", from, to, err)
	}
	return nil
}
