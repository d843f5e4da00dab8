package jobqueue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
)

// ListDeadLetters returns up to limit messages of a dead-letter queue,
// oldest first, bodies redacted (see Inspect).
func (c *Client) ListDeadLetters(ctx context.Context, dlq string, limit int) ([]Message, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := c.pool.Query(ctx, `
		SELECT id, queue, body, attributes, sent_at, receive_count, '00000000-0000-0000-0000-000000000000'::uuid,
			coalesce(source_queue, ''), coalesce(dead_letter_reason, '')
		FROM jobqueue_messages WHERE queue = $1 ORDER BY id LIMIT $2`, dlq, limit)
	if err != nil {
		return nil, fmt.Errorf("jobqueue: list %s: %w", dlq, err)
	}
	msgs, err := pgx.CollectRows(rows, scanMessage)
	if err != nil {
		return nil, fmt.Errorf("jobqueue: list %s: %w", dlq, err)
	}
	for i := range msgs {
		msgs[i].ReceiptHandle = ""
		msgs[i].Body = c.redacted(msgs[i].SourceQueue, msgs[i].Body)
	}
	return msgs, nil
}

// Inspect returns one message without receiving it; its body passes
// through the redaction function of its source queue (card data never
// leaves through the operator's tools).
func (c *Client) Inspect(ctx context.Context, id int64) (Message, error) {
	rows, err := c.pool.Query(ctx, `
		SELECT id, queue, body, attributes, sent_at, receive_count, '00000000-0000-0000-0000-000000000000'::uuid,
			coalesce(source_queue, ''), coalesce(dead_letter_reason, '')
		FROM jobqueue_messages WHERE id = $1`, id)
	if err != nil {
		return Message{}, fmt.Errorf("jobqueue: inspect %d: %w", id, err)
	}
	m, err := pgx.CollectExactlyOneRow(rows, scanMessage)
	if errors.Is(err, pgx.ErrNoRows) {
		return Message{}, fmt.Errorf("%w: %d", ErrMessageNotFound, id)
	}
	if err != nil {
		return Message{}, fmt.Errorf("jobqueue: inspect %d: %w", id, err)
	}
	m.ReceiptHandle = ""
	src := m.SourceQueue
	if src == "" {
		src = m.Queue
	}
	m.Body = c.redacted(src, m.Body)
	return m, nil
}

func (c *Client) redacted(queue string, body []byte) []byte {
	if f := c.redact[queue]; f != nil {
		return f(body)
	}
	return body
}

// RedriveInput selects what Redrive moves.
type RedriveInput struct {
	DLQ string
	// IDs to move; empty: all.
	IDs []int64
	// DryRun counts what would move and moves nothing.
	DryRun bool
	// RatePerSecond bounds how many messages move per second (0: no
	// bound), so a redrive does not flood the workers or the provider.
	RatePerSecond int
}

// Redrive moves messages from a dead-letter queue back to the queues they
// came from, visible at once with their receive count reset. Body and
// attributes are unchanged, so the job's idempotency key is too. It returns
// how many moved (or would move, for a dry run).
func (c *Client) Redrive(ctx context.Context, in RedriveInput) (int, error) {
	filter := `queue = $1 AND source_queue IS NOT NULL AND (cardinality($2::bigint[]) = 0 OR id = ANY($2))`
	ids := in.IDs
	if ids == nil {
		ids = []int64{}
	}
	if in.DryRun {
		var n int
		if err := c.pool.QueryRow(ctx, `SELECT count(*) FROM jobqueue_messages WHERE `+filter, in.DLQ, ids).Scan(&n); err != nil {
			return 0, fmt.Errorf("jobqueue: redrive dry run: %w", err)
		}
		return n, nil
	}
	batch := 100
	var tick *time.Ticker
	if in.RatePerSecond > 0 {
		batch = min(batch, in.RatePerSecond)
		tick = time.NewTicker(time.Duration(float64(time.Second) * float64(batch) / float64(in.RatePerSecond)))
		defer tick.Stop()
	}
	moved := 0
	for {
		tag, err := c.pool.Exec(ctx, `
			WITH picked AS (SELECT id FROM jobqueue_messages WHERE `+filter+` ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
			UPDATE jobqueue_messages m SET queue = m.source_queue, source_queue = NULL, dead_letter_reason = NULL, dead_lettered_at = NULL,
				receive_count = 0, visible_at = now(), receipt = NULL
			FROM picked WHERE m.id = picked.id`, in.DLQ, ids, batch)
		if err != nil {
			return moved, fmt.Errorf("jobqueue: redrive: %w", err)
		}
		moved += int(tag.RowsAffected())
		if tag.RowsAffected() > 0 {
			// Wake the receivers of every queue: the sources may differ.
			if _, err := c.pool.Exec(ctx, `SELECT pg_notify($1, q) FROM (SELECT name AS q FROM jobqueue_queues) s`, NotifyChannel); err != nil {
				return moved, fmt.Errorf("jobqueue: notify: %w", err)
			}
		}
		if tag.RowsAffected() < int64(batch) {
			c.log.InfoContext(ctx, "redrive done", "dlq", in.DLQ, "moved", moved)
			return moved, nil
		}
		if tick != nil {
			select {
			case <-ctx.Done():
				return moved, ctx.Err()
			case <-tick.C:
			}
		}
	}
}

// Purge deletes messages of a queue (ids, or all when empty) for good, as
// by decided for reason (both required), and records it in the service's
// audit log (pkg/audit: who, when, why, which queue, how many and which
// ids) in the same transaction: a purge without its record cannot commit.
func (c *Client) Purge(ctx context.Context, queue string, ids []int64, by, reason string) (int, error) {
	if err := (audit.Entry{Actor: by, Action: "jobqueue.purge", Target: queue, Reason: reason}).Check(); err != nil {
		return 0, fmt.Errorf("%w: a purge needs who (--by) and why (--reason): %w", ErrInvalid, err)
	}
	if ids == nil {
		ids = []int64{}
	}
	var purged []int64
	err := pgdb.InTx(ctx, c.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM jobqueue_messages WHERE queue = $1 AND (cardinality($2::bigint[]) = 0 OR id = ANY($2)) RETURNING id`, queue, ids)
		if err != nil {
			return err
		}
		if purged, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			return err
		}
		slices.Sort(purged)
		detail := map[string]any{"messages": len(purged)}
		if len(purged) <= 1000 {
			detail["ids"] = purged
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: by, Action: "jobqueue.purge", Target: queue, Reason: reason, Detail: detail})
	})
	if err != nil {
		return 0, fmt.Errorf("jobqueue: purge %s: %w", queue, err)
	}
	c.log.WarnContext(ctx, "queue purged", "queue", queue, "messages", len(purged), "by", by, "reason", reason)
	return len(purged), nil
}

// Prune deletes messages older than their queue's retention (a dead
// letter: counted from when it was dead-lettered), batch at a time, and
// expired dedup ids. It returns how many messages it deleted.
func (c *Client) Prune(ctx context.Context, batch int) (int, error) {
	if batch <= 0 {
		batch = 1000
	}
	total := 0
	for {
		tag, err := c.pool.Exec(ctx, `
			DELETE FROM jobqueue_messages WHERE id IN (
				SELECT m.id FROM jobqueue_messages m JOIN jobqueue_queues q ON q.name = m.queue
				WHERE coalesce(m.dead_lettered_at, m.sent_at) < now() - q.retention ORDER BY m.id LIMIT $1)`, batch)
		if err != nil {
			return total, fmt.Errorf("jobqueue: prune: %w", err)
		}
		total += int(tag.RowsAffected())
		if tag.RowsAffected() < int64(batch) {
			break
		}
	}
	if _, err := c.pool.Exec(ctx, `DELETE FROM jobqueue_dedup WHERE expires_at <= now()`); err != nil {
		return total, fmt.Errorf("jobqueue: prune dedup ids: %w", err)
	}
	return total, nil
}

// QueueStats is a queue's depth.
type QueueStats struct {
	Queue           string
	Visible         int64
	InFlight        int64
	Delayed         int64
	OldestAge       time.Duration
	IsDeadLetter    bool
	DeadLetterDepth int64
	// Pause is the queue's pause state (Pause, Resume).
	Pause PauseState
}

// Stats returns every queue's depth.
func (c *Client) Stats(ctx context.Context) ([]QueueStats, error) {
	rows, err := c.pool.Query(ctx, `
		SELECT q.name,
			count(m.id) FILTER (WHERE m.visible_at <= now()),
			count(m.id) FILTER (WHERE m.visible_at > now() AND m.receipt IS NOT NULL),
			count(m.id) FILTER (WHERE m.visible_at > now() AND m.receipt IS NULL),
			coalesce(extract(epoch FROM now() - min(m.sent_at)), 0)::float8,
			EXISTS (SELECT 1 FROM jobqueue_queues s WHERE s.dead_letter_queue = q.name),
			p.paused_at, coalesce(p.paused_by, ''), coalesce(p.reason, '')
		FROM jobqueue_queues q LEFT JOIN jobqueue_messages m ON m.queue = q.name LEFT JOIN jobqueue_state p ON p.queue = q.name
		GROUP BY q.name, p.paused_at, p.paused_by, p.reason ORDER BY q.name`)
	if err != nil {
		return nil, fmt.Errorf("jobqueue: stats: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (QueueStats, error) {
		var s QueueStats
		var (
			age      float64
			pausedAt *time.Time
		)
		err := r.Scan(&s.Queue, &s.Visible, &s.InFlight, &s.Delayed, &age, &s.IsDeadLetter, &pausedAt, &s.Pause.PausedBy, &s.Pause.Reason)
		s.OldestAge = time.Duration(age * float64(time.Second))
		if pausedAt != nil {
			s.Pause.Paused, s.Pause.PausedAt = true, *pausedAt
		}
		if s.IsDeadLetter {
			s.DeadLetterDepth = s.Visible + s.InFlight + s.Delayed
		}
		return s, err
	})
}

type clientMetrics struct {
	sent, received, deleted, deadLettered *prometheus.CounterVec
	receiveErrors                         *prometheus.CounterVec
	coalesced                             *prometheus.HistogramVec
}

func (m *clientMetrics) register(reg prometheus.Registerer) error {
	mk := func(opts prometheus.CounterOpts) *prometheus.CounterVec {
		return prometheus.NewCounterVec(opts, []string{"queue"})
	}
	m.sent = mk(prometheus.CounterOpts{Name: "jobqueue_sent_total", Help: "Messages sent."})
	m.received = mk(prometheus.CounterOpts{Name: "jobqueue_received_total", Help: "Messages received (each receive of a message counts)."})
	m.deleted = mk(prometheus.CounterOpts{Name: "jobqueue_deleted_total", Help: "Messages deleted after processing."})
	m.deadLettered = mk(prometheus.CounterOpts{Name: "jobqueue_dead_lettered_total", Help: "Messages moved to a dead-letter queue, by source queue."})
	m.receiveErrors = mk(prometheus.CounterOpts{Name: "jobqueue_receive_errors_total", Help: "Receives that failed (database down or unreachable, missing queue); a worker backs off after each."})
	m.coalesced = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "jobqueue_coalesced_calls",
		Help:    "Calls carried by one coalesced statement, by operation (receive, delete); Options.NoCoalescing: none.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 100},
	}, []string{"op"})
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.sent, m.received, m.deleted, m.deadLettered, m.receiveErrors, m.coalesced} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("jobqueue metrics: %w", err)
		}
	}
	return nil
}

// NewCollector exports queue depths on scrape: jobqueue_visible_messages,
// jobqueue_in_flight_messages, jobqueue_delayed_messages,
// jobqueue_oldest_message_age_seconds, jobqueue_dead_letter_depth and
// jobqueue_paused (1 while paused), by queue. Each scrape runs one query
// with a 2s timeout.
func (c *Client) NewCollector() prometheus.Collector { return &collector{c: c} }

type collector struct{ c *Client }

var (
	descVisible  = prometheus.NewDesc("jobqueue_visible_messages", "Messages ready to be received.", []string{"queue"}, nil)
	descInFlight = prometheus.NewDesc("jobqueue_in_flight_messages", "Messages received and not yet deleted or visible again.", []string{"queue"}, nil)
	descDelayed  = prometheus.NewDesc("jobqueue_delayed_messages", "Messages sent with a delay, not yet visible.", []string{"queue"}, nil)
	descOldest   = prometheus.NewDesc("jobqueue_oldest_message_age_seconds", "Age of the oldest message in the queue.", []string{"queue"}, nil)
	descDLQ      = prometheus.NewDesc("jobqueue_dead_letter_depth", "Messages in a dead-letter queue.", []string{"queue"}, nil)
	descPaused   = prometheus.NewDesc("jobqueue_paused", "1 while the queue is paused (no receives), else 0.", []string{"queue"}, nil)
)

func (col *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descVisible, descInFlight, descDelayed, descOldest, descDLQ, descPaused} {
		ch <- d
	}
}

func (col *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	stats, err := col.c.Stats(ctx)
	if err != nil {
		col.c.log.Warn("jobqueue metrics", "err", err)
		return
	}
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(descVisible, prometheus.GaugeValue, float64(s.Visible), s.Queue)
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(s.InFlight), s.Queue)
		ch <- prometheus.MustNewConstMetric(descDelayed, prometheus.GaugeValue, float64(s.Delayed), s.Queue)
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, s.OldestAge.Seconds(), s.Queue)
		paused := 0.0
		if s.Pause.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, paused, s.Queue)
		if s.IsDeadLetter {
			ch <- prometheus.MustNewConstMetric(descDLQ, prometheus.GaugeValue, float64(s.DeadLetterDepth), s.Queue)
		}
	}
}
