package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/backoff"
)

// Message is one outbox row as the relay hands it to the Sink.
type Message struct {
	// ID is the event id; the sink sends it as the broker's dedup id.
	ID string
	// Stream and Key route the message (Key picks the partition).
	Stream, Key string
	Payload     []byte
	Headers     map[string]string
}

// Sink publishes messages to the broker. PublishAll returns one error per
// message, in order: nil when the broker acknowledged (stored) it. It may
// publish the messages concurrently; the relay never passes two messages
// with the same key in one call.
type Sink interface {
	PublishAll(ctx context.Context, msgs []Message) []error
}

// RelayConfig tunes a Relay. Zero values take the defaults.
type RelayConfig struct {
	// BatchSize is the most rows read per batch. Default 500.
	BatchSize int
	// PollInterval is the longest the relay sleeps when no NOTIFY arrives
	// (a NOTIFY can be lost when the listening connection reconnects).
	// Default 1s.
	PollInterval time.Duration
	// Retention keeps published rows for audit and re-publish. Default 72h.
	Retention time.Duration
	// PruneInterval and PruneBatch pace retention deletes so they never
	// hold long locks. Defaults 1m and 1000 rows.
	PruneInterval time.Duration
	PruneBatch    int
	// LeaderRetry is how often a standby tries to become leader. Default 2s.
	LeaderRetry time.Duration
	// Backoff between failed publish attempts. Default 200ms growing to 10s.
	Backoff backoff.Policy
	// LockName identifies the leader lock; relays of one database with the
	// same name elect one leader. Default "shopfloor.outbox".
	LockName string
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Stream labels the metrics. Default "all".
	Stream string
}

func (c RelayConfig) withDefaults() RelayConfig {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.PruneBatch <= 0 {
		c.PruneBatch = 1000
	}
	def(&c.PollInterval, time.Second)
	def(&c.Retention, 72*time.Hour)
	def(&c.PruneInterval, time.Minute)
	def(&c.LeaderRetry, 2*time.Second)
	if c.Backoff == (backoff.Policy{}) {
		c.Backoff = backoff.Policy{Initial: 200 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2}
	}
	if c.LockName == "" {
		c.LockName = "shopfloor.outbox"
	}
	if c.Stream == "" {
		c.Stream = "all"
	}
	return c
}

// Relay publishes committed outbox rows. Run one (or more, for fail-over)
// per database; only the leader publishes.
type Relay struct {
	pool   *pgxpool.Pool
	sink   Sink
	cfg    RelayConfig
	log    *slog.Logger
	lockID int64
	leader atomic.Bool
	m      metrics
}

// NewRelay returns a relay; it does nothing until Run.
func NewRelay(pool *pgxpool.Pool, sink Sink, cfg RelayConfig, log *slog.Logger) (*Relay, error) {
	cfg = cfg.withDefaults()
	h := fnv.New64a()
	_, _ = h.Write([]byte(cfg.LockName))
	r := &Relay{pool: pool, sink: sink, cfg: cfg, log: log.With("component", "outbox-relay"), lockID: int64(h.Sum64())}
	if err := r.m.register(cfg.Registerer, cfg.Stream); err != nil {
		return nil, err
	}
	return r, nil
}

// IsLeader reports whether this relay holds the leader lock now.
func (r *Relay) IsLeader() bool { return r.leader.Load() }

// Run competes for leadership and, while leader, publishes until ctx ends.
// It returns nil when ctx ends; database or broker failures are retried,
// never returned.
func (r *Relay) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		err := r.session(ctx)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			r.log.WarnContext(ctx, "relay session ended", "err", err)
		}
		wait(ctx, r.cfg.LeaderRetry)
	}
	return nil
}

// session holds one dedicated connection: it tries for the lock until it
// gets it, then leads until ctx ends or the connection fails.
func (r *Relay) session(ctx context.Context) error {
	pc, err := r.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire lock connection: %w", err)
	}
	// The lock lives as long as this session; the connection must not go
	// back to the pool holding it.
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	for {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, r.lockID).Scan(&got); err != nil {
			return fmt.Errorf("try leader lock: %w", err)
		}
		if got {
			break
		}
		if !wait(ctx, r.cfg.LeaderRetry) {
			return nil
		}
	}
	r.leader.Store(true)
	r.m.leader.Set(1)
	r.log.InfoContext(ctx, "relay is leader")
	defer func() {
		r.leader.Store(false)
		r.m.leader.Set(0)
		r.log.InfoContext(ctx, "relay stepped down")
	}()
	return r.lead(ctx, conn)
}

func (r *Relay) lead(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var lastPrune time.Time
	failures := 0
	for {
		n, err := r.relayBatch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			failures++
			r.m.errors.Inc()
			delay := r.cfg.Backoff.Delay(failures)
			r.log.WarnContext(ctx, "publish failed, retrying", "attempt", failures, "retry_in", delay.String(), "err", err)
			r.sample(ctx)
			if !wait(ctx, delay) {
				return nil
			}
			continue
		}
		if failures > 0 {
			r.log.InfoContext(ctx, "publishing again", "after_failures", failures)
			failures = 0
		}
		if n == r.cfg.BatchSize {
			continue // more rows are waiting
		}
		if time.Since(lastPrune) >= r.cfg.PruneInterval {
			if err := r.prune(ctx); err != nil && ctx.Err() == nil {
				r.log.WarnContext(ctx, "prune failed", "err", err)
			}
			lastPrune = time.Now()
		}
		r.sample(ctx)
		wctx, cancel := context.WithTimeout(ctx, r.cfg.PollInterval)
		_, err = conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil, errors.Is(err, context.DeadlineExceeded):
		default:
			// The lock connection broke: the lock is gone with it.
			return fmt.Errorf("leader connection: %w", err)
		}
	}
}

type row struct {
	id      int64
	msg     Message
	headers []byte
}

// relayBatch publishes up to BatchSize unpublished rows and returns how many
// it read. It returns an error when any row failed to publish; the rows
// that were acknowledged are marked published either way.
func (r *Relay) relayBatch(ctx context.Context) (int, error) {
	rows, err := r.pool.Query(ctx, `
		SELECT id, event_id, stream, key, payload, headers
		FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1`, r.cfg.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("read batch: %w", err)
	}
	batch, err := pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
		var rw row
		err := cr.Scan(&rw.id, &rw.msg.ID, &rw.msg.Stream, &rw.msg.Key, &rw.msg.Payload, &rw.headers)
		return rw, err
	})
	if err != nil {
		return 0, fmt.Errorf("read batch: %w", err)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	for i := range batch {
		if err := json.Unmarshal(batch[i].headers, &batch[i].msg.Headers); err != nil {
			return 0, fmt.Errorf("outbox row %d headers: %w", batch[i].id, err)
		}
	}

	// Rounds: the r-th row of every key. A key whose row failed drops out.
	var (
		acked  []int64
		failed = map[string]bool{}
		errs   []error
		next   = map[string]int{} // key → index of its next row in queue
		queues = map[string][]int{}
		order  []string
	)
	for i, rw := range batch {
		if _, ok := queues[rw.msg.Key]; !ok {
			order = append(order, rw.msg.Key)
		}
		queues[rw.msg.Key] = append(queues[rw.msg.Key], i)
	}
	for {
		var idx []int
		for _, k := range order {
			if failed[k] || next[k] >= len(queues[k]) {
				continue
			}
			idx = append(idx, queues[k][next[k]])
			next[k]++
		}
		if len(idx) == 0 {
			break
		}
		msgs := make([]Message, len(idx))
		for j, i := range idx {
			msgs[j] = batch[i].msg
		}
		results := r.sink.PublishAll(ctx, msgs)
		for j, i := range idx {
			if j < len(results) && results[j] == nil {
				acked = append(acked, batch[i].id)
				continue
			}
			perr := errors.New("sink returned no result")
			if j < len(results) {
				perr = results[j]
			}
			failed[batch[i].msg.Key] = true
			errs = append(errs, fmt.Errorf("event %s: %w", batch[i].msg.ID, perr))
		}
	}
	// Mark with a context that survives shutdown: the broker has the
	// messages, so recording that is cheap and avoids re-publishing.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if len(acked) > 0 {
		if _, err := r.pool.Exec(mctx, `UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY($1)`, acked); err != nil {
			// Not marked: they will be re-published (and de-duplicated).
			return len(batch), fmt.Errorf("mark %d rows published: %w", len(acked), err)
		}
		r.m.published.Add(float64(len(acked)))
	}
	if len(errs) > 0 {
		msg := errs[0].Error()
		if _, err := r.pool.Exec(mctx, `UPDATE outbox SET attempts = attempts + 1, last_error = $2
			WHERE id = ANY($1)`, failedIDs(batch, failed), truncate(msg, 500)); err != nil {
			r.log.WarnContext(ctx, "record publish failure", "err", err)
		}
		return len(batch), fmt.Errorf("%d of %d events not acknowledged: %w", len(batch)-len(acked), len(batch), errors.Join(errs...))
	}
	return len(batch), nil
}

func failedIDs(batch []row, failed map[string]bool) []int64 {
	var ids []int64
	for _, rw := range batch {
		if failed[rw.msg.Key] {
			ids = append(ids, rw.id)
		}
	}
	return ids
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// prune deletes published rows older than Retention, PruneBatch at a time.
func (r *Relay) prune(ctx context.Context) error {
	for {
		tag, err := r.pool.Exec(ctx, `
			DELETE FROM outbox WHERE id IN (
				SELECT id FROM outbox
				WHERE published_at IS NOT NULL AND published_at < clock_timestamp() - $1::interval
				ORDER BY id LIMIT $2)`,
			r.cfg.Retention, r.cfg.PruneBatch)
		if err != nil {
			return fmt.Errorf("prune: %w", err)
		}
		if tag.RowsAffected() > 0 {
			r.log.DebugContext(ctx, "pruned published rows", "rows", tag.RowsAffected())
		}
		if tag.RowsAffected() < int64(r.cfg.PruneBatch) {
			return nil
		}
	}
}

// sample refreshes the backlog gauges.
func (r *Relay) sample(ctx context.Context) {
	var backlog int64
	var oldest *time.Time
	err := r.pool.QueryRow(ctx, `SELECT count(*), min(created_at) FROM outbox WHERE published_at IS NULL`).Scan(&backlog, &oldest)
	if err != nil {
		return
	}
	r.m.backlog.Set(float64(backlog))
	age := 0.0
	if oldest != nil {
		age = time.Since(*oldest).Seconds()
	}
	r.m.oldest.Set(age)
}

// Backlog returns the number of unpublished rows and the age of the oldest.
func Backlog(ctx context.Context, db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) (int64, time.Duration, error) {
	var n int64
	var oldest *time.Time
	if err := db.QueryRow(ctx, `SELECT count(*), min(created_at) FROM outbox WHERE published_at IS NULL`).Scan(&n, &oldest); err != nil {
		return 0, 0, fmt.Errorf("outbox backlog: %w", err)
	}
	if oldest == nil {
		return n, 0, nil
	}
	return n, time.Since(*oldest), nil
}

// wait sleeps d or until ctx ends; it reports whether ctx is still alive.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

type metrics struct {
	backlog, oldest, leader prometheus.Gauge
	published, errors       prometheus.Counter
}

func (m *metrics) register(reg prometheus.Registerer, stream string) error {
	labels := prometheus.Labels{"stream": stream}
	m.backlog = prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_backlog_rows", Help: "Unpublished outbox rows (sampled by the leader).", ConstLabels: labels})
	m.oldest = prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_oldest_unpublished_age_seconds", Help: "Age of the oldest unpublished outbox row.", ConstLabels: labels})
	m.leader = prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_relay_leader", Help: "1 when this instance's relay holds the leader lock.", ConstLabels: labels})
	m.published = prometheus.NewCounter(prometheus.CounterOpts{Name: "outbox_published_total", Help: "Outbox rows acknowledged by the broker.", ConstLabels: labels})
	m.errors = prometheus.NewCounter(prometheus.CounterOpts{Name: "outbox_publish_errors_total", Help: "Relay batches with at least one unacknowledged row.", ConstLabels: labels})
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.backlog, m.oldest, m.leader, m.published, m.errors} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("outbox metrics: %w", err)
		}
	}
	return nil
}

// Republish marks every row published at or after since as unpublished, so
// the relay publishes them again, in order. It is the recovery tool for a
// broker that lost acknowledged messages (a crash with interval fsync, a
// restored backup; ADR 0007): rows inside Retention can be replayed. The
// broker drops those still inside its dedup window; consumers de-duplicate
// the rest by event id. It returns the number of rows queued again.
func Republish(ctx context.Context, db interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}, since time.Time) (int64, error) {
	tag, err := db.Exec(ctx, `UPDATE outbox SET published_at = NULL WHERE published_at >= $1`, since)
	if err != nil {
		return 0, fmt.Errorf("outbox republish: %w", err)
	}
	return tag.RowsAffected(), nil
}
