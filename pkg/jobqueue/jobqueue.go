package jobqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Limits, as in SQS.
const (
	MaxReceiveBatch = 10
	MaxWaitTime     = 20 * time.Second
	MaxDelay        = 15 * time.Minute
	DedupWindow     = 5 * time.Minute
	// NotifyChannel is the LISTEN/NOTIFY channel; the payload is the queue.
	NotifyChannel = "shopfloor_jobqueue"
)

// Errors.
var (
	// ErrStaleReceipt: the receipt handle is not the message's current one
	// (received again since, deleted, or moved to the DLQ).
	ErrStaleReceipt = errors.New("jobqueue: receipt handle is stale")
	// ErrQueueNotFound: no queue of that name.
	ErrQueueNotFound = errors.New("jobqueue: queue does not exist")
	// ErrMessageNotFound: no message with that id (deleted or pruned).
	ErrMessageNotFound = errors.New("jobqueue: message does not exist")
	// ErrInvalid: a parameter is out of range (message size, delay, batch).
	ErrInvalid = errors.New("jobqueue: invalid parameter")
)

// Queue holds a queue's attributes. Zero values take the defaults.
type Queue struct {
	Name string
	// VisibilityTimeout: how long a received message stays invisible.
	// Default 30s.
	VisibilityTimeout time.Duration
	// MaxReceiveCount: receives before the message moves to
	// DeadLetterQueue. Default 5. Ignored without a DeadLetterQueue.
	MaxReceiveCount int
	// DeadLetterQueue names an existing queue; empty: no redrive policy.
	DeadLetterQueue string
	// Retention: messages older than this are pruned, counted from when
	// they were sent, or, in a dead-letter queue, from when they were
	// dead-lettered (a job that failed for days keeps its full time in
	// the DLQ for a person to look at). Default 4 days; give dead-letter
	// queues of anything about money DeadLetterRetention.
	Retention time.Duration
	// DeliveryDelay: default delay of new messages, 0–15 min.
	DeliveryDelay time.Duration
	// MaxMessageBytes bounds a body. Default 256 KiB.
	MaxMessageBytes int
}

func (q Queue) withDefaults() Queue {
	if q.VisibilityTimeout <= 0 {
		q.VisibilityTimeout = 30 * time.Second
	}
	if q.MaxReceiveCount <= 0 {
		q.MaxReceiveCount = 5
	}
	if q.Retention <= 0 {
		q.Retention = 4 * 24 * time.Hour
	}
	if q.MaxMessageBytes <= 0 {
		q.MaxMessageBytes = 256 << 10
	}
	return q
}

// Message is a received message.
type Message struct {
	ID            int64
	Queue         string
	Body          []byte
	Attributes    map[string]string
	SentAt        time.Time
	ReceiveCount  int
	ReceiptHandle string
	// SourceQueue and DeadLetterReason are set on messages in a DLQ.
	SourceQueue      string
	DeadLetterReason string
}

// Options configures a Client.
type Options struct {
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registerer receives the client's counters; nil: none.
	Registerer prometheus.Registerer
	// Redact hides sensitive parts of a queue's bodies in Inspect
	// (key: queue name). Without one, Inspect shows the body.
	Redact map[string]func([]byte) []byte
	// AsyncAcks commits the client's own acknowledgement statements
	// (Receive, and DeleteMessage, DeleteMessageBatch, MoveToDeadLetter on
	// the pool, ChangeMessageVisibility) without waiting for the WAL
	// flush. A PostgreSQL crash can then forget the last few hundred
	// milliseconds of them: deleted messages come back, receives are
	// undone (the message is visible again, its receive count one lower).
	// Sends, and acknowledgements in the caller's transaction, stay as
	// durable as the caller's commit. Handlers must be idempotent anyway
	// (at-least-once); this trades a rare extra delivery after a database
	// crash for 2–4× the single-message throughput. Default false. ADR
	// 0018.
	AsyncAcks bool
	// NoCoalescing sends every Receive and every DeleteMessage on the
	// pool as its own statement. By default concurrent calls are
	// coalesced: receives of one queue (same visibility timeout) that
	// arrive while one is in flight go out together as one statement, and
	// so do deletes on the pool, without waiting for more (coalesce.go).
	// Each caller still gets its own messages and receipt handles.
	NoCoalescing bool
}

// Client sends and receives messages on one database.
type Client struct {
	pool      *pgxpool.Pool
	log       *slog.Logger
	redact    map[string]func([]byte) []byte
	asyncAcks bool
	coalesce  bool
	notify    *notifier
	m         clientMetrics
	receives  *combiner[receiveKey, int, receiveResult]
	deletes   *combiner[struct{}, string, error]
}

// New returns a client. Call Close to stop its listener.
func New(pool *pgxpool.Pool, opts Options) (*Client, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{pool: pool, log: log, redact: opts.Redact, asyncAcks: opts.AsyncAcks, coalesce: !opts.NoCoalescing}
	c.newCombiners()
	if err := c.m.register(opts.Registerer); err != nil {
		return nil, err
	}
	c.notify = newNotifier(pool, log)
	return c, nil
}

// Close stops the client's LISTEN connection. Receives in progress return.
func (c *Client) Close() { c.notify.close() }

// DB is satisfied by *pgxpool.Pool and pgx.Tx.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// DeadLetterRetention is how long the dead-letter queues of money-related
// jobs (charges, refunds) and customer e-mails keep a message after it was
// dead-lettered: long enough for a person to see it after a holiday, and
// the same as a stream's dead letters (pkg/stream's DLQMaxAge).
const DeadLetterRetention = 30 * 24 * time.Hour

// CreateQueue creates the queue or updates its attributes.
func (c *Client) CreateQueue(ctx context.Context, q Queue) error {
	q = q.withDefaults()
	if q.DeliveryDelay < 0 || q.DeliveryDelay > MaxDelay {
		return fmt.Errorf("%w: queue %s delivery delay %s outside 0–15m", ErrInvalid, q.Name, q.DeliveryDelay)
	}
	var dlq *string
	if q.DeadLetterQueue != "" {
		dlq = &q.DeadLetterQueue
	}
	_, err := c.pool.Exec(ctx, `
		INSERT INTO jobqueue_queues (name, visibility_timeout, max_receive_count, dead_letter_queue, retention, delivery_delay, max_message_bytes)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (name) DO UPDATE SET visibility_timeout = $2, max_receive_count = $3,
			dead_letter_queue = $4, retention = $5, delivery_delay = $6, max_message_bytes = $7`,
		q.Name, q.VisibilityTimeout, q.MaxReceiveCount, dlq, q.Retention, q.DeliveryDelay, q.MaxMessageBytes)
	if err != nil {
		return fmt.Errorf("jobqueue: create queue %s: %w", q.Name, err)
	}
	return nil
}

// SendInput is one message to send.
type SendInput struct {
	Body       []byte
	Attributes map[string]string
	// Delay overrides the queue's delivery delay when non-nil (0–15 min).
	Delay *time.Duration
	// DedupID: a second message with the same id on the same queue inside
	// 5 minutes is accepted and dropped.
	DedupID string
}

// SendResult reports one sent message.
type SendResult struct {
	// ID is the message id; 0 when Duplicate.
	ID int64
	// Duplicate: dropped because of DedupID.
	Duplicate bool
}

// Send enqueues one message in tx.
func (c *Client) Send(ctx context.Context, tx pgx.Tx, queue string, in SendInput) (SendResult, error) {
	res, err := c.SendBatch(ctx, tx, queue, []SendInput{in})
	if err != nil {
		return SendResult{}, err
	}
	return res[0], nil
}

// SendBatch enqueues messages in tx (at most 10, as in SQS). It validates
// every message before writing any (checkBatch). Then it claims the dedup
// ids, message by message (claimDedupIDs), and inserts every message that
// is not a duplicate in one statement (insert). Without dedup ids a batch
// is one statement (queue lookup, size check, insert and NOTIFY together).
func (c *Client) SendBatch(ctx context.Context, tx pgx.Tx, queue string, ins []SendInput) ([]SendResult, error) {
	if err := checkBatch(ctx, tx, queue, ins); err != nil {
		return nil, err
	}
	out := make([]SendResult, len(ins))
	rows, err := claimDedupIDs(ctx, tx, queue, ins, out)
	if err != nil {
		return nil, err
	}
	if len(rows.fresh) > 0 {
		ids, err := c.insert(ctx, tx, queue, rows.bodies, rows.attrs, rows.delays, rows.ownDelay)
		if err != nil {
			var big errTooLarge
			if errors.As(err, &big) {
				i := rows.fresh[big.n]
				return nil, tooLarge(queue, i, len(ins[i].Body), big.max)
			}
			return nil, err
		}
		for k, i := range rows.fresh {
			out[i].ID = ids[k]
		}
	}
	c.m.sent.WithLabelValues(queue).Add(float64(len(ins)))
	return out, nil
}

// checkBatch refuses a batch of the wrong size or with a delay out of
// range. When a message has a dedup id it also checks the queue and the
// sizes, before any dedup id is claimed, so a rejected batch claims none
// (without dedup ids, insert checks them).
func checkBatch(ctx context.Context, tx pgx.Tx, queue string, ins []SendInput) error {
	if len(ins) == 0 || len(ins) > MaxReceiveBatch {
		return fmt.Errorf("%w: batch of %d messages (1–10)", ErrInvalid, len(ins))
	}
	dedup := false
	for i, in := range ins {
		if in.Delay != nil && (*in.Delay < 0 || *in.Delay > MaxDelay) {
			return fmt.Errorf("%w: message %d delay %s outside 0–15m", ErrInvalid, i, *in.Delay)
		}
		dedup = dedup || in.DedupID != ""
	}
	if !dedup {
		return nil
	}
	var maxBytes int
	err := tx.QueryRow(ctx, `SELECT max_message_bytes FROM jobqueue_queues WHERE name = $1`, queue).Scan(&maxBytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %s", ErrQueueNotFound, queue)
	}
	if err != nil {
		return fmt.Errorf("jobqueue: send to %s: %w", queue, err)
	}
	for i, in := range ins {
		if len(in.Body) > maxBytes {
			return tooLarge(queue, i, len(in.Body), maxBytes)
		}
	}
	return nil
}

// freshRows are the messages of a batch to insert: their index in the
// batch and insert's columns.
type freshRows struct {
	fresh    []int
	bodies   [][]byte
	attrs    []string
	delays   []time.Duration
	ownDelay []bool
}

// claimDedupIDs claims the dedup id of every message that has one, marks
// in out the messages whose id was claimed inside DedupWindow as
// duplicates, and returns the others.
func claimDedupIDs(ctx context.Context, tx pgx.Tx, queue string, ins []SendInput, out []SendResult) (freshRows, error) {
	rows := freshRows{
		bodies:   make([][]byte, 0, len(ins)),
		attrs:    make([]string, 0, len(ins)),
		delays:   make([]time.Duration, 0, len(ins)),
		ownDelay: make([]bool, 0, len(ins)),
	}
	for i, in := range ins {
		if in.DedupID != "" {
			var ok bool
			err := tx.QueryRow(ctx, `
				INSERT INTO jobqueue_dedup (queue, dedup_id, expires_at) VALUES ($1, $2, now() + $3::interval)
				ON CONFLICT (queue, dedup_id) DO UPDATE SET expires_at = EXCLUDED.expires_at
					WHERE jobqueue_dedup.expires_at <= now()
				RETURNING true`, queue, in.DedupID, DedupWindow).Scan(&ok)
			if errors.Is(err, pgx.ErrNoRows) {
				out[i] = SendResult{Duplicate: true}
				continue
			}
			if err != nil {
				return freshRows{}, fmt.Errorf("jobqueue: dedup on %s: %w", queue, err)
			}
		}
		a, err := json.Marshal(orEmpty(in.Attributes))
		if err != nil {
			return freshRows{}, fmt.Errorf("jobqueue: attributes: %w", err)
		}
		rows.fresh = append(rows.fresh, i)
		rows.bodies, rows.attrs = append(rows.bodies, in.Body), append(rows.attrs, string(a))
		rows.delays, rows.ownDelay = append(rows.delays, ptrOr(in.Delay)), append(rows.ownDelay, in.Delay != nil)
	}
	return rows, nil
}

// insert writes messages in one statement: it finds the queue, checks
// every body against its maximum size (inserting none if one is too
// large), inserts, and notifies long pollers. It returns the ids in the
// input's order.
func (c *Client) insert(ctx context.Context, tx pgx.Tx, queue string, bodies [][]byte, attrs []string, delays []time.Duration, ownDelay []bool) ([]int64, error) {
	// Rows are inserted, and take their identity values, in ORDER BY n
	// order; sorting the returned ids gives them back in the input's order
	// whatever order RETURNING uses.
	rows, err := tx.Query(ctx, `
		WITH q AS (
			SELECT max_message_bytes, delivery_delay FROM jobqueue_queues WHERE name = $1
		), m AS (
			SELECT * FROM unnest($2::bytea[], $3::jsonb[], $4::interval[], $5::bool[]) WITH ORDINALITY AS m(body, attributes, delay, own_delay, n)
		), too_large AS (
			SELECT min(m.n) AS n, min(q.max_message_bytes) AS max FROM m, q WHERE octet_length(m.body) > q.max_message_bytes
		), ins AS (
			INSERT INTO jobqueue_messages (queue, body, attributes, visible_at)
			SELECT $1, m.body, m.attributes, now() + CASE WHEN m.own_delay THEN m.delay ELSE q.delivery_delay END
			FROM m, q WHERE NOT EXISTS (SELECT 1 FROM too_large WHERE n IS NOT NULL)
			ORDER BY m.n
			RETURNING id
		)
		SELECT 'id', ins.id, 0 FROM ins, (SELECT pg_notify($6, $1)) AS notify
		UNION ALL
		SELECT 'no queue', 0, 0 WHERE NOT EXISTS (SELECT 1 FROM q)
		UNION ALL
		SELECT 'too large', n, max FROM too_large WHERE n IS NOT NULL`,
		queue, bodies, attrs, delays, ownDelay, NotifyChannel)
	if err != nil {
		return nil, fmt.Errorf("jobqueue: send to %s: %w", queue, err)
	}
	var (
		ids     []int64
		problem error
	)
	for rows.Next() {
		var (
			kind  string
			v     int64
			limit int
		)
		if err := rows.Scan(&kind, &v, &limit); err != nil {
			rows.Close()
			return nil, fmt.Errorf("jobqueue: send to %s: %w", queue, err)
		}
		switch kind {
		case "id":
			ids = append(ids, v)
		case "no queue":
			problem = fmt.Errorf("%w: %s", ErrQueueNotFound, queue)
		case "too large":
			problem = errTooLarge{n: int(v) - 1, max: limit}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("jobqueue: send to %s: %w", queue, err)
	}
	if problem != nil {
		return nil, problem
	}
	if len(ids) != len(bodies) {
		return nil, fmt.Errorf("jobqueue: send to %s: %d of %d messages inserted", queue, len(ids), len(bodies))
	}
	slices.Sort(ids)
	return ids, nil
}

// errTooLarge reports the first message (index into the insert) larger
// than the queue allows.
type errTooLarge struct{ n, max int }

func (e errTooLarge) Error() string {
	return fmt.Sprintf("message %d is larger than %d bytes", e.n, e.max)
}

func tooLarge(queue string, i, size, maxBytes int) error {
	return fmt.Errorf("%w: message %d is %d bytes, queue %s allows %d", ErrInvalid, i, size, queue, maxBytes)
}

func ptrOr(d *time.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return *d
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// ReceiveInput configures Receive.
type ReceiveInput struct {
	// MaxMessages 1–10. Default 1.
	MaxMessages int
	// VisibilityTimeout overrides the queue's when > 0.
	VisibilityTimeout time.Duration
	// WaitTime > 0 long-polls for up to that long (max 20s).
	WaitTime time.Duration
}

// Receive returns up to MaxMessages visible messages of queue, each with a
// new receipt handle. Messages received more than the queue's
// MaxReceiveCount times move to its dead-letter queue instead. A failed
// receive (the database down or unreachable, no such queue, an invalid
// input) counts in jobqueue_receive_errors_total; one that ends because
// ctx ended does not.
func (c *Client) Receive(ctx context.Context, queue string, in ReceiveInput) ([]Message, error) {
	msgs, err := c.receive(ctx, queue, in)
	if err != nil && ctx.Err() == nil {
		c.m.receiveErrors.WithLabelValues(queue).Inc()
	}
	return msgs, err
}

func (c *Client) receive(ctx context.Context, queue string, in ReceiveInput) ([]Message, error) {
	if in.MaxMessages == 0 {
		in.MaxMessages = 1
	}
	if in.MaxMessages < 1 || in.MaxMessages > MaxReceiveBatch {
		return nil, fmt.Errorf("%w: MaxMessages %d (1–10)", ErrInvalid, in.MaxMessages)
	}
	if in.WaitTime < 0 || in.WaitTime > MaxWaitTime {
		return nil, fmt.Errorf("%w: WaitTime %s (0–20s)", ErrInvalid, in.WaitTime)
	}
	if in.WaitTime == 0 {
		msgs, _, err := c.receiveOnce(ctx, queue, in)
		return msgs, err
	}
	deadline := time.Now().Add(in.WaitTime)
	for {
		wake := c.notify.subscribe(queue)
		msgs, next, err := c.receiveOnce(ctx, queue, in)
		if err != nil || len(msgs) > 0 {
			c.notify.unsubscribe(queue, wake)
			return msgs, err
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			c.notify.unsubscribe(queue, wake)
			return nil, nil
		}
		if !next.IsZero() {
			wait = min(wait, time.Until(next)+time.Millisecond)
		}
		// A fallback re-check in case a notification was missed while the
		// listener reconnected.
		wait = min(wait, 2*time.Second)
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			c.notify.unsubscribe(queue, wake)
			return nil, ctx.Err()
		case <-wake:
		case <-t.C:
		}
		t.Stop()
		c.notify.unsubscribe(queue, wake)
	}
}

// receiveOnce claims up to in.MaxMessages visible messages (coalesced
// with concurrent receives of the queue unless Options.NoCoalescing). When
// there are none it returns when the next invisible message of the queue
// becomes visible (zero if none).
func (c *Client) receiveOnce(ctx context.Context, queue string, in ReceiveInput) ([]Message, time.Time, error) {
	if c.coalesce {
		r, err := c.receives.do(ctx, receiveKey{queue, in.VisibilityTimeout}, in.MaxMessages)
		if err != nil {
			return nil, time.Time{}, err
		}
		return r.msgs, r.next, r.err
	}
	msgs, err := c.claim(ctx, queue, in.MaxMessages, in.VisibilityTimeout)
	if err != nil || len(msgs) > 0 {
		return msgs, time.Time{}, err
	}
	next, err := c.nextVisible(ctx, queue)
	return nil, next, err
}

// claim claims up to limit visible messages in one statement (no explicit
// transaction): pick with FOR UPDATE SKIP LOCKED, move those past the
// queue's MaxReceiveCount to its DLQ, deliver the rest with new receipts.
func (c *Client) claim(ctx context.Context, queue string, limit int, visibility time.Duration) ([]Message, error) {
	rows, err := c.ackDB(c.pool).Query(ctx, `
		WITH q AS (
			SELECT name, visibility_timeout, max_receive_count, dead_letter_queue FROM jobqueue_queues WHERE name = $1
		), picked AS (
			SELECT m.id, m.receive_count >= q.max_receive_count AND q.dead_letter_queue IS NOT NULL AS dead
			FROM jobqueue_messages m, q
			WHERE m.queue = $1 AND m.visible_at <= now()
				AND NOT EXISTS (SELECT 1 FROM jobqueue_state s WHERE s.queue = $1) -- Pause
			ORDER BY m.visible_at, m.id LIMIT $2 FOR UPDATE OF m SKIP LOCKED
		), dead AS (
			UPDATE jobqueue_messages m SET queue = q.dead_letter_queue, source_queue = m.queue, visible_at = now(),
				receipt = NULL, dead_letter_reason = 'maxReceiveCount ' || q.max_receive_count || ' exceeded', dead_lettered_at = now()
			FROM picked p, q WHERE m.id = p.id AND p.dead
			RETURNING m.id
		), delivered AS (
			UPDATE jobqueue_messages m SET receive_count = m.receive_count + 1,
				visible_at = now() + CASE WHEN $3::interval > '0' THEN $3::interval ELSE q.visibility_timeout END,
				receipt = gen_random_uuid(), first_received_at = coalesce(m.first_received_at, now())
			FROM picked p, q WHERE m.id = p.id AND NOT p.dead
			RETURNING m.id, m.queue, m.body, m.attributes, m.sent_at, m.receive_count, m.receipt,
				coalesce(m.source_queue, ''), coalesce(m.dead_letter_reason, '')
		)
		SELECT d.*, false AS dead, (SELECT dead_letter_queue FROM q) FROM delivered d
		UNION ALL
		SELECT x.id, '', NULL, '{}', now(), 0, NULL, '', '', true, (SELECT dead_letter_queue FROM q) FROM dead x
		UNION ALL
		SELECT 0, '', NULL, '{}', now(), 0, NULL, '', '', NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM q)`,
		queue, limit, visibility)
	if err != nil {
		return nil, fmt.Errorf("jobqueue: receive from %s: %w", queue, err)
	}
	var (
		msgs    []Message
		deadIDs []int64
		dlq     *string
		noQueue bool
	)
	for rows.Next() {
		var (
			m       Message
			attrs   []byte
			receipt *uuid.UUID
			dead    *bool
		)
		if err := rows.Scan(&m.ID, &m.Queue, &m.Body, &attrs, &m.SentAt, &m.ReceiveCount, &receipt, &m.SourceQueue, &m.DeadLetterReason, &dead, &dlq); err != nil {
			rows.Close()
			return nil, fmt.Errorf("jobqueue: receive from %s: %w", queue, err)
		}
		switch {
		case dead == nil:
			noQueue = true
		case *dead:
			deadIDs = append(deadIDs, m.ID)
		default:
			if err := json.Unmarshal(attrs, &m.Attributes); err != nil {
				rows.Close()
				return nil, fmt.Errorf("jobqueue: attributes of %d: %w", m.ID, err)
			}
			m.ReceiptHandle = strconv.FormatInt(m.ID, 10) + "." + receipt.String()
			msgs = append(msgs, m)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("jobqueue: receive from %s: %w", queue, err)
	}
	if noQueue {
		return nil, fmt.Errorf("%w: %s", ErrQueueNotFound, queue)
	}
	if len(deadIDs) > 0 && dlq != nil {
		if _, err := c.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, *dlq); err != nil {
			return nil, fmt.Errorf("jobqueue: notify: %w", err)
		}
		c.m.deadLettered.WithLabelValues(queue).Add(float64(len(deadIDs)))
		c.log.WarnContext(ctx, "messages moved to the dead-letter queue", "queue", queue, "dlq", *dlq, "ids", deadIDs)
	}
	c.m.received.WithLabelValues(queue).Add(float64(len(msgs)))
	return msgs, nil
}

// nextVisible returns when the next invisible message of queue becomes
// visible (zero if none).
func (c *Client) nextVisible(ctx context.Context, queue string) (time.Time, error) {
	var next *time.Time
	if err := c.pool.QueryRow(ctx, `SELECT min(visible_at) FROM jobqueue_messages WHERE queue = $1 AND visible_at > now()`, queue).Scan(&next); err != nil {
		return time.Time{}, fmt.Errorf("jobqueue: receive from %s: %w", queue, err)
	}
	if next == nil {
		return time.Time{}, nil
	}
	return *next, nil
}

func scanMessage(row pgx.CollectableRow) (Message, error) {
	var m Message
	var attrs []byte
	var receipt uuid.UUID
	if err := row.Scan(&m.ID, &m.Queue, &m.Body, &attrs, &m.SentAt, &m.ReceiveCount, &receipt, &m.SourceQueue, &m.DeadLetterReason); err != nil {
		return m, err
	}
	if err := json.Unmarshal(attrs, &m.Attributes); err != nil {
		return m, err
	}
	m.ReceiptHandle = strconv.FormatInt(m.ID, 10) + "." + receipt.String()
	return m, nil
}

func parseHandle(h string) (int64, uuid.UUID, error) {
	idPart, rPart, ok := strings.Cut(h, ".")
	id, err1 := strconv.ParseInt(idPart, 10, 64)
	r, err2 := uuid.Parse(rPart)
	if !ok || err1 != nil || err2 != nil {
		return 0, uuid.UUID{}, fmt.Errorf("%w: receipt handle %q is malformed", ErrInvalid, h)
	}
	return id, r, nil
}

// DeleteMessage deletes the delivery identified by receiptHandle, in db (a
// pool, or the caller's transaction to commit it with the job's result).
// On the client's own pool, concurrent deletes are coalesced into one
// statement unless Options.NoCoalescing.
func (c *Client) DeleteMessage(ctx context.Context, db DB, receiptHandle string) error {
	id, receipt, err := parseHandle(receiptHandle)
	if err != nil {
		return err
	}
	if p, ok := db.(*pgxpool.Pool); ok && p == c.pool && c.coalesce {
		errDelete, err := c.deletes.do(ctx, struct{}{}, receiptHandle)
		if err != nil {
			return err
		}
		return errDelete
	}
	var queue string
	err = c.ackDB(db).QueryRow(ctx, `DELETE FROM jobqueue_messages WHERE id = $1 AND receipt = $2 RETURNING queue`, id, receipt).Scan(&queue)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrStaleReceipt
	}
	if err != nil {
		return fmt.Errorf("jobqueue: delete %d: %w", id, err)
	}
	c.m.deleted.WithLabelValues(queue).Inc()
	return nil
}

// DeleteMessageBatch deletes up to 10 deliveries in one statement and
// returns, per handle, nil or ErrStaleReceipt (or ErrInvalid for a
// malformed handle).
func (c *Client) DeleteMessageBatch(ctx context.Context, db DB, receiptHandles []string) ([]error, error) {
	if len(receiptHandles) == 0 || len(receiptHandles) > MaxReceiveBatch {
		return nil, fmt.Errorf("%w: batch of %d handles (1–10)", ErrInvalid, len(receiptHandles))
	}
	return c.deleteHandles(ctx, db, receiptHandles)
}

// deleteHandles deletes any number of deliveries in one statement.
func (c *Client) deleteHandles(ctx context.Context, db DB, receiptHandles []string) ([]error, error) {
	errs := make([]error, len(receiptHandles))
	ids := make([]int64, 0, len(receiptHandles))
	receipts := make([]uuid.UUID, 0, len(receiptHandles))
	for i, h := range receiptHandles {
		id, r, err := parseHandle(h)
		if err != nil {
			errs[i] = err
			continue
		}
		ids, receipts = append(ids, id), append(receipts, r)
	}
	rows, err := c.ackDB(db).Query(ctx, `
		DELETE FROM jobqueue_messages m USING unnest($1::bigint[], $2::uuid[]) AS h(id, receipt)
		WHERE m.id = h.id AND m.receipt = h.receipt RETURNING m.id, m.receipt, m.queue`, ids, receipts)
	if err != nil {
		return nil, fmt.Errorf("jobqueue: delete batch: %w", err)
	}
	// Keyed by id and receipt: two handles of one message (an earlier
	// delivery's and the current one) get one nil and one ErrStaleReceipt.
	type delivery struct {
		id      int64
		receipt uuid.UUID
	}
	deleted := map[delivery]bool{}
	for rows.Next() {
		var d delivery
		var queue string
		if err := rows.Scan(&d.id, &d.receipt, &queue); err != nil {
			rows.Close()
			return nil, fmt.Errorf("jobqueue: delete batch: %w", err)
		}
		deleted[d] = true
		c.m.deleted.WithLabelValues(queue).Inc()
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("jobqueue: delete batch: %w", err)
	}
	for i, h := range receiptHandles {
		if errs[i] != nil {
			continue
		}
		id, r, _ := parseHandle(h)
		if !deleted[delivery{id, r}] {
			errs[i] = ErrStaleReceipt
		}
	}
	return errs, nil
}

// ChangeMessageVisibility makes the delivery invisible for timeout from now
// (0: visible at once, releasing it). It is how a worker extends a long job
// (heartbeat) or schedules a retry.
func (c *Client) ChangeMessageVisibility(ctx context.Context, receiptHandle string, timeout time.Duration) error {
	if timeout < 0 || timeout > 12*time.Hour {
		return fmt.Errorf("%w: visibility timeout %s (0–12h)", ErrInvalid, timeout)
	}
	id, receipt, err := parseHandle(receiptHandle)
	if err != nil {
		return err
	}
	var queue string
	err = c.ackDB(c.pool).QueryRow(ctx, `UPDATE jobqueue_messages SET visible_at = now() + $3::interval
		WHERE id = $1 AND receipt = $2 RETURNING queue`, id, receipt, timeout).Scan(&queue)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrStaleReceipt
	}
	if err != nil {
		return fmt.Errorf("jobqueue: change visibility of %d: %w", id, err)
	}
	if timeout == 0 {
		if _, err := c.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, queue); err != nil {
			return fmt.Errorf("jobqueue: notify: %w", err)
		}
	}
	return nil
}

// MoveToDeadLetter moves the delivery to its queue's DLQ now, with reason
// (a permanent failure that retrying cannot fix).
func (c *Client) MoveToDeadLetter(ctx context.Context, db DB, receiptHandle, reason string) error {
	id, receipt, err := parseHandle(receiptHandle)
	if err != nil {
		return err
	}
	var queue string
	err = c.ackDB(db).QueryRow(ctx, `
		UPDATE jobqueue_messages m SET queue = q.dead_letter_queue, source_queue = m.queue, visible_at = now(),
			receipt = NULL, dead_letter_reason = $3, dead_lettered_at = now()
		FROM jobqueue_queues q
		WHERE m.id = $1 AND m.receipt = $2 AND q.name = m.queue AND q.dead_letter_queue IS NOT NULL
		RETURNING m.source_queue`, id, receipt, reason).Scan(&queue)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w (or its queue has no dead-letter queue)", ErrStaleReceipt)
	}
	if err != nil {
		return fmt.Errorf("jobqueue: dead-letter %d: %w", id, err)
	}
	c.m.deadLettered.WithLabelValues(queue).Inc()
	return nil
}
