package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
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

// Sink publishes messages to the broker. PublishAll returns one result
// per message, in order: Err nil when the broker acknowledged (stored) it,
// with where it went. It may publish the messages concurrently; the relay
// never passes two messages with the same key in one call.
type Sink interface {
	PublishAll(ctx context.Context, msgs []Message) []Published
}

// Published is the broker's answer for one message. The relay records
// Partition and Sequence on the row (published_partition,
// published_sequence: PositionSchema), so that a row can be found in the
// stream; Sequence 0 means the broker did not say (recorded as NULL).
type Published struct {
	Partition int
	Sequence  uint64
	Err       error
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
	// LeaderRetry is how often a standby tries to become leader. Default
	// 1s; at most half of LeaderLease (each try also keeps the standby's
	// own session alive).
	LeaderRetry time.Duration
	// LeaderLease bounds how long a leader that stopped running (a frozen
	// process, a hung host, a network cut) keeps the leadership. It is the
	// lock session's idle_session_timeout (PostgreSQL 14+): the server
	// ends a session that sends no query for that long, and the lock with
	// it. The leader sends a heartbeat every LeaderLease/3, steps down when
	// one fails or takes longer than LeaderLease/3, and publishes nothing
	// once 2/3 of the lease have passed since the last heartbeat that
	// succeeded was sent, so it stops before a standby can lead. A standby
	// takes over within about LeaderLease + LeaderRetry. Default 6s,
	// minimum 300ms.
	LeaderLease time.Duration
	// ParkAfter parks a row (see the package doc) after this many refusals
	// by the broker in batches where the broker acknowledged other rows;
	// errors the Sink marks ErrPermanent park it at once. Default 20.
	ParkAfter int
	// Backoff between failed publish attempts. Default 200ms growing to 10s.
	Backoff backoff.Policy
	// LockName identifies the leader lock (the advisory lock's key, the
	// outbox_leader row's name); relays of one database with the same name
	// elect one leader. Default "shopfloor.outbox".
	LockName string
	// Leader picks the election: LeaderAdvisory (default) or LeaderLease,
	// which works through PgBouncer in transaction mode and needs
	// LeaseSchema (ADR 0042). LeaderLease, LeaderRetry and LockName mean
	// the same in both; under LeaderLease the lease's expiry is kept on
	// the server's clock and renewed every LeaderLease/3.
	Leader Leadership
	// ListenURL, under LeaderLease, is a URL the relay LISTENs on for the
	// NOTIFY Publish sends: a direct connection to PostgreSQL (LISTEN
	// needs a session a transaction pooler does not keep). Empty: the
	// leader polls every PollInterval.
	ListenURL string
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
	def(&c.LeaderRetry, time.Second)
	def(&c.LeaderLease, 6*time.Second)
	if c.ParkAfter <= 0 {
		c.ParkAfter = 20
	}
	if c.Backoff == (backoff.Policy{}) {
		c.Backoff = backoff.Policy{Initial: 200 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2}
	}
	if c.LockName == "" {
		c.LockName = "shopfloor.outbox"
	}
	if c.Stream == "" {
		c.Stream = "all"
	}
	if c.Leader == "" {
		c.Leader = LeaderAdvisory
	}
	return c
}

func (c RelayConfig) validate() error {
	if c.Leader != LeaderAdvisory && c.Leader != LeaderLease {
		return fmt.Errorf("outbox: Leader %q is neither %q nor %q", c.Leader, LeaderAdvisory, LeaderLease)
	}
	if c.ListenURL != "" && c.Leader != LeaderLease {
		return fmt.Errorf("outbox: ListenURL is for Leader %q (the advisory leader listens on its lock session)", LeaderLease)
	}
	if c.LeaderLease < 300*time.Millisecond {
		return fmt.Errorf("outbox: LeaderLease %s is below 300ms", c.LeaderLease)
	}
	if c.LeaderRetry > c.LeaderLease/2 {
		return fmt.Errorf("outbox: LeaderRetry %s must be at most half of LeaderLease %s (a standby's session must stay alive between tries)", c.LeaderRetry, c.LeaderLease)
	}
	return nil
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
	// refusals counts, per row, the broker's refusals in batches where it
	// acknowledged other rows (ParkAfter). Only the lead loop touches it;
	// it starts empty with each leadership.
	refusals map[int64]int
	// holder names this relay in outbox_leader (LeaderLease).
	holder string
	// beforeRenew and beforeMark, when set (tests), run before each lease
	// renewal and each mark UPDATE: a test stops them to act out a frozen
	// leader.
	beforeRenew, beforeMark func()
}

// NewRelay returns a relay; it does nothing until Run.
func NewRelay(pool *pgxpool.Pool, sink Sink, cfg RelayConfig, log *slog.Logger) (*Relay, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(cfg.LockName))
	r := &Relay{pool: pool, sink: sink, cfg: cfg, log: log.With("component", "outbox-relay"), lockID: int64(h.Sum64()), holder: newHolder()}
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

// session holds one dedicated connection with the lease (lockConn): it
// tries for the lock until it gets it, then leads until ctx ends, the
// connection fails or the lease runs out.
func (r *Relay) session(ctx context.Context) error {
	if r.cfg.Leader == LeaderLease {
		return r.leaseSession(ctx)
	}
	conn, err := r.lockConn(ctx)
	if err != nil {
		return err
	}
	defer closeConn(ctx, conn)
	var sent time.Time
	for {
		var got bool
		sent = time.Now()
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
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	l := newLease(sent, r.cfg.LeaderLease)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wake := make(chan struct{}, 1)
	kept := make(chan error, 1)
	go func() {
		err := r.keep(lctx, conn, l, wake)
		cancel() // the lead loop stops when the lease does
		kept <- err
	}()
	r.leader.Store(true)
	r.m.leader.Set(1)
	r.log.InfoContext(ctx, "relay is leader", "lease", r.cfg.LeaderLease.String())
	err = r.lead(lctx, l, wake)
	cancel()
	r.leader.Store(false)
	r.m.leader.Set(0)
	err = errors.Join(err, <-kept)
	r.log.InfoContext(ctx, "relay stepped down", "err", err)
	return err
}

// lead publishes while this relay holds the lease session took. Each
// round runs these phases, in order:
//
//  1. fetchBatch: the next unpublished, unparked rows in id order (read
//     ahead during the previous round when that one was full);
//  2. publish: read the next batch ahead when this one is full, publish
//     this one in key order and park its poison rows (publishBatch);
//  3. markPublished: once the previous batch's marking is done, record
//     this batch's acknowledged rows in the background;
//  4. after a failure, dropReadAhead (it may hold a failed or parked key's
//     later rows) and backOff; after a full batch, go on at once;
//  5. idle once caught up: finish marking, prune, sample the backlog and
//     sleep until a NOTIFY or PollInterval.
//
// It returns nil when ctx ends, errLeaseExpired once the lease ran out,
// and an error when the reader connection is gone.
func (r *Relay) lead(ctx context.Context, l *lease, wake <-chan struct{}) error {
	r.refusals = map[int64]int{}
	var reader batchReader = txReader{r: r, l: l}
	if l.epoch == 0 {
		conn, err := r.openReader(ctx)
		if err != nil {
			return err
		}
		reader = connReader{r: r, conn: conn}
	}
	defer reader.close(context.WithoutCancel(ctx))
	p := &pipeline{r: r, reader: reader, lease: l}
	defer p.drain()
	for {
		batch, err := p.fetchBatch(ctx)
		if err != nil && reader.broken() {
			// The reader's session is gone (a database restart, a
			// terminated backend): lead again with new connections.
			return fmt.Errorf("reader connection: %w", err)
		}
		if errors.Is(err, errFenced) {
			return err
		}
		var (
			acked  []position
			parked int
		)
		if err == nil && len(batch) > 0 {
			acked, parked, err = p.publish(ctx, batch)
		}
		err = p.markPublished(ctx, acked, err)
		if ctx.Err() != nil {
			return nil
		}
		if lostLeadership(err) {
			return err
		}
		if err != nil || parked > 0 {
			p.dropReadAhead()
		}
		if err != nil {
			if !p.backOff(ctx, err) {
				return nil
			}
			continue
		}
		p.recovered(ctx)
		if p.ahead != nil || parked > 0 {
			continue // more rows are waiting, and being read
		}
		if !p.idle(ctx, wake) {
			return nil
		}
	}
}

// pipeline is what the lead loop carries from one round to the next.
type pipeline struct {
	r      *Relay
	reader batchReader
	lease  *lease
	// marking records the previous batch's acknowledged rows while the
	// next batch is read and published.
	marking *mark
	// ahead reads the next batch while the current one is published.
	ahead *read
	// failures counts the failed rounds in a row (the backoff's attempt).
	failures  int
	lastPrune time.Time
}

// drain waits for the background marking and read-ahead, when leading
// ends.
func (p *pipeline) drain() {
	_ = p.marking.wait()
	if p.ahead != nil {
		_, _ = p.ahead.wait()
	}
}

// fetchBatch returns the batch read ahead, if one was, or reads one,
// leaving out the rows being marked.
func (p *pipeline) fetchBatch(ctx context.Context) ([]row, error) {
	if p.ahead != nil {
		batch, err := p.ahead.wait()
		p.ahead = nil
		return batch, err
	}
	return p.reader.read(ctx, p.marking.rows())
}

// publish publishes batch (publishBatch). When batch is full, more rows
// are waiting: it reads them meanwhile. The read leaves out this batch
// and the one being marked; it is dropped if this batch fails, so a
// failed key's later rows are never published first.
func (p *pipeline) publish(ctx context.Context, batch []row) ([]position, int, error) {
	if len(batch) == p.r.cfg.BatchSize {
		p.ahead = readAhead(ctx, p.reader, append(ids(batch), p.marking.rows()...))
	}
	return p.r.publishBatch(ctx, p.lease, batch)
}

// markPublished waits for the previous batch's marking, then starts
// marking acked. It returns the round's error: err, or else the previous
// marking's.
func (p *pipeline) markPublished(ctx context.Context, acked []position, err error) error {
	if merr := p.marking.wait(); merr != nil && err == nil {
		err = merr
	}
	p.marking = p.r.markPublished(ctx, p.lease, acked)
	return err
}

// dropReadAhead waits for the read-ahead, if any, and forgets its batch.
func (p *pipeline) dropReadAhead() {
	if p.ahead != nil {
		_, _ = p.ahead.wait()
		p.ahead = nil
	}
}

// backOff counts a failed round, lets the marking finish, samples the
// backlog and sleeps the backoff's delay. It reports whether ctx is still
// alive.
func (p *pipeline) backOff(ctx context.Context, err error) bool {
	p.failures++
	p.r.m.errors.Inc()
	delay := p.r.cfg.Backoff.Delay(p.failures)
	p.r.log.WarnContext(ctx, "publish failed, retrying", "attempt", p.failures, "retry_in", delay.String(), "err", err)
	_ = p.marking.wait()
	p.marking = nil
	p.r.sample(ctx)
	return wait(ctx, delay)
}

// recovered resets the failure count after a round that succeeded.
func (p *pipeline) recovered(ctx context.Context) {
	if p.failures > 0 {
		p.r.log.InfoContext(ctx, "publishing again", "after_failures", p.failures)
		p.failures = 0
	}
}

// idle runs once the relay has caught up: it finishes marking, prunes
// (at most once per PruneInterval), samples the backlog and sleeps until
// a NOTIFY wakes it or PollInterval passes. It reports whether ctx is
// still alive.
func (p *pipeline) idle(ctx context.Context, wake <-chan struct{}) bool {
	if err := p.marking.wait(); err != nil {
		// Not marked: the rows are read and published again (the
		// broker drops the duplicates by event id).
		p.r.log.WarnContext(ctx, "mark published failed", "err", err)
	}
	p.marking = nil
	if time.Since(p.lastPrune) >= p.r.cfg.PruneInterval {
		if err := p.r.prune(ctx); err != nil && ctx.Err() == nil {
			p.r.log.WarnContext(ctx, "prune failed", "err", err)
		}
		p.lastPrune = time.Now()
	}
	p.r.sample(ctx)
	t := time.NewTimer(p.r.cfg.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
	case <-t.C:
	}
	return true
}

// mark is an UPDATE recording acknowledged rows as published, running in
// the background. A nil *mark is a finished one with no rows.
type mark struct {
	ids  []int64
	done chan struct{}
	err  error
}

// position is where the broker stored an outbox row's message.
type position struct {
	id        int64
	partition int
	sequence  uint64
}

// markPublished starts marking rows published, with where each went. It
// uses a context that survives shutdown: the broker has the messages, so
// recording that is cheap and avoids re-publishing them. The UPDATE
// touches no indexed column (a HOT update where the page has room). Under
// LeaderLease it is fenced (fencedExec): a leader that lost the lease
// marks nothing, and its mark fails with errFenced.
func (r *Relay) markPublished(ctx context.Context, l *lease, acked []position) *mark {
	if len(acked) == 0 {
		return nil
	}
	ids, parts, seqs := make([]int64, len(acked)), make([]int32, len(acked)), make([]int64, len(acked))
	for i, a := range acked {
		ids[i], parts[i], seqs[i] = a.id, int32(a.partition), int64(a.sequence)
	}
	m := &mark{ids: ids, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		if r.beforeMark != nil {
			r.beforeMark()
		}
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := r.fencedExec(mctx, l, `
			UPDATE outbox o SET published_at = clock_timestamp(), published_partition = v.p, published_sequence = nullif(v.s, 0)
			FROM unnest($1::bigint[], $2::int[], $3::bigint[]) AS v(id, p, s) WHERE o.id = v.id`, ids, parts, seqs); err != nil {
			m.err = fmt.Errorf("mark %d rows published: %w", len(ids), err)
			return
		}
		r.m.published.Add(float64(len(ids)))
	}()
	return m
}

// rows are the ids being marked: the next batch must not read them again.
func (m *mark) rows() []int64 {
	if m == nil {
		return nil
	}
	return m.ids
}

func (m *mark) wait() error {
	if m == nil {
		return nil
	}
	<-m.done
	return m.err
}

type row struct {
	id      int64
	msg     Message
	headers []byte
}

// openReader takes a connection out of the pool for the leader's reads
// and tunes it for its one query, "the first BatchSize unpublished rows in
// id order, except skip":
//
//   - an ordered scan of the partial index that stops after BatchSize rows
//     is the only good plan, but after a burst of inserts (a backlog after
//     a broker outage, before autovacuum has analysed the table) the
//     planner estimates a few hundred rows and picks a bitmap scan of the
//     whole backlog plus a sort: 27 ms instead of 3 ms per batch with
//     14 000 rows waiting. Bitmap and sequential scans are off here.
//   - a custom plan on every execution turns the skip list into a
//     constant, so "<> ALL" is a hash lookup (PostgreSQL 15+); a cached
//     generic plan compares each row with every skipped id, ten times
//     slower with 2 000 ids.
//
// The connection is closed when leadership ends; it never returns to the
// pool with these settings. Only one read runs at a time.
func (r *Relay) openReader(ctx context.Context) (*pgx.Conn, error) {
	pc, err := r.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire reader connection: %w", err)
	}
	conn := pc.Hijack()
	if _, err := conn.Exec(ctx, `SET enable_bitmapscan = off; SET enable_seqscan = off; SET plan_cache_mode = force_custom_plan`); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("tune reader connection: %w", err)
	}
	return conn, nil
}

// readBatch reads up to BatchSize unpublished rows in id order on the
// reader connection, leaving out skip (rows being published or marked),
// parked rows and the rows of their keys that follow them (the probe of
// ParkSchema's index costs next to nothing while it is empty).
func (r *Relay) readBatch(ctx context.Context, reader Querier, skip []int64) ([]row, error) {
	if skip == nil {
		skip = []int64{}
	}
	rows, err := reader.Query(ctx, `
		SELECT id, event_id, stream, key, payload, headers
		FROM outbox o WHERE published_at IS NULL AND parked_at IS NULL AND id <> ALL($2)
			AND NOT EXISTS (SELECT FROM outbox p WHERE p.parked_at IS NOT NULL AND p.key = o.key AND p.id < o.id)
		ORDER BY id LIMIT $1`, r.cfg.BatchSize, skip)
	if err != nil {
		return nil, fmt.Errorf("read batch: %w", err)
	}
	batch, err := pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
		var rw row
		err := cr.Scan(&rw.id, &rw.msg.ID, &rw.msg.Stream, &rw.msg.Key, &rw.msg.Payload, &rw.headers)
		return rw, err
	})
	if err != nil {
		return nil, fmt.Errorf("read batch: %w", err)
	}
	for i := range batch {
		if err := json.Unmarshal(batch[i].headers, &batch[i].msg.Headers); err != nil {
			return nil, fmt.Errorf("outbox row %d headers: %w", batch[i].id, err)
		}
	}
	return batch, nil
}

// read is a readBatch running in the background.
type read struct {
	done  chan struct{}
	batch []row
	err   error
}

func readAhead(ctx context.Context, reader batchReader, skip []int64) *read {
	rd := &read{done: make(chan struct{})}
	go func() {
		defer close(rd.done)
		rd.batch, rd.err = reader.read(ctx, skip)
	}()
	return rd
}

// batchReader reads the leader's batches (readBatch): on a dedicated,
// tuned connection (connReader, LeaderAdvisory) or in a transaction of
// the pool each (txReader, LeaderLease). Only one read runs at a time.
type batchReader interface {
	read(ctx context.Context, skip []int64) ([]row, error)
	// broken reports whether the reader's connection is gone.
	broken() bool
	close(ctx context.Context)
}

// connReader reads on the connection openReader tuned.
type connReader struct {
	r    *Relay
	conn *pgx.Conn
}

func (c connReader) read(ctx context.Context, skip []int64) ([]row, error) {
	return c.r.readBatch(ctx, c.conn, skip)
}
func (c connReader) broken() bool              { return c.conn.IsClosed() }
func (c connReader) close(ctx context.Context) { _ = c.conn.Close(ctx) }

func (rd *read) wait() ([]row, error) {
	<-rd.done
	return rd.batch, rd.err
}

func ids(batch []row) []int64 {
	out := make([]int64, len(batch))
	for i, rw := range batch {
		out[i] = rw.id
	}
	return out
}

// publishBatch publishes batch in key order (publishInKeyOrder) and then
// parks its poison rows (parkPoisonRows). It returns the rows the broker
// acknowledged, for the caller to mark published, and how many rows it
// parked. It returns an error when a row failed to publish and was not
// parked, and errLeaseExpired (publishing nothing more) once l ran out.
func (r *Relay) publishBatch(ctx context.Context, l *lease, batch []row) ([]position, int, error) {
	acked, failed, err := r.publishInKeyOrder(ctx, l, batch)
	if err != nil {
		return acked, 0, err
	}
	if len(failed) == 0 {
		if len(r.refusals) > 0 {
			for _, a := range acked {
				delete(r.refusals, a.id)
			}
		}
		return acked, 0, nil
	}
	parked, err := r.parkPoisonRows(ctx, l, batch, acked, failed)
	return acked, parked, err
}

// publishInKeyOrder publishes batch in rounds: round n holds the n-th row
// of every key, so a key's rows reach the broker in id order. A key whose
// row the broker refused drops out of later rounds. It returns the rows
// acknowledged and, per key, the row refused; and errLeaseExpired
// (publishing nothing more) once l ran out.
func (r *Relay) publishInKeyOrder(ctx context.Context, l *lease, batch []row) ([]position, map[string]refusal, error) {
	var (
		acked  []position
		failed = map[string]refusal{} // key → its row the broker refused
		next   = map[string]int{}     // key → index of its next row in queue
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
			if _, ok := failed[k]; ok || next[k] >= len(queues[k]) {
				continue
			}
			idx = append(idx, queues[k][next[k]])
			next[k]++
		}
		if len(idx) == 0 {
			return acked, failed, nil
		}
		if !l.held() {
			// Frozen or cut off for most of the lease: a standby may
			// lead by now. Publish nothing more (what was acknowledged is
			// still marked).
			return acked, failed, errLeaseExpired
		}
		msgs := make([]Message, len(idx))
		for j, i := range idx {
			msgs[j] = batch[i].msg
		}
		results := r.sink.PublishAll(ctx, msgs)
		for j, i := range idx {
			if j < len(results) && results[j].Err == nil {
				acked = append(acked, position{id: batch[i].id, partition: results[j].Partition, sequence: results[j].Sequence})
				continue
			}
			perr := errors.New("sink returned no result")
			if j < len(results) {
				perr = results[j].Err
			}
			failed[batch[i].msg.Key] = refusal{id: batch[i].id, event: batch[i].msg.ID, key: batch[i].msg.Key, err: perr}
		}
	}
}

// parkPoisonRows records the broker's refusals of batch and parks the
// poison rows among them (refused). It returns how many rows it parked,
// and an error naming the refused rows it did not park.
func (r *Relay) parkPoisonRows(ctx context.Context, l *lease, batch []row, acked []position, failed map[string]refusal) (int, error) {
	parked, err := r.refused(ctx, l, failed, len(acked) > 0)
	if err != nil {
		return 0, err
	}
	if len(parked) == len(failed) {
		return len(parked), nil
	}
	var errs []error
	for _, f := range failed {
		if !slices.Contains(parked, f.id) {
			errs = append(errs, fmt.Errorf("event %s: %w", f.event, f.err))
		}
	}
	return len(parked), fmt.Errorf("%d of %d events not acknowledged: %w", len(batch)-len(acked), len(batch), errors.Join(errs...))
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

// sample refreshes the backlog gauges. Parked rows count in
// outbox_parked_rows, not in the backlog; the rows held behind them do.
func (r *Relay) sample(ctx context.Context) {
	var backlog, parked int64
	var oldest *time.Time
	err := r.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE parked_at IS NULL), min(created_at) FILTER (WHERE parked_at IS NULL),
		count(*) FILTER (WHERE parked_at IS NOT NULL) FROM outbox WHERE published_at IS NULL`).Scan(&backlog, &oldest, &parked)
	if err != nil {
		return
	}
	r.m.backlog.Set(float64(backlog))
	r.m.parked.Set(float64(parked))
	age := 0.0
	if oldest != nil {
		age = time.Since(*oldest).Seconds()
	}
	r.m.oldest.Set(age)
}

// Backlog returns the number of unpublished rows and the age of the
// oldest, parked rows left out (Parked lists them).
func Backlog(ctx context.Context, db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) (int64, time.Duration, error) {
	var n int64
	var oldest *time.Time
	if err := db.QueryRow(ctx, `SELECT count(*), min(created_at) FROM outbox WHERE published_at IS NULL AND parked_at IS NULL`).Scan(&n, &oldest); err != nil {
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
	backlog, oldest, leader, parked prometheus.Gauge
	published, errors               prometheus.Counter
}

func (m *metrics) register(reg prometheus.Registerer, stream string) error {
	labels := prometheus.Labels{"stream": stream}
	m.backlog = prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_backlog_rows", Help: "Unpublished outbox rows (sampled by the leader).", ConstLabels: labels})
	m.oldest = prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_oldest_unpublished_age_seconds", Help: "Age of the oldest unpublished outbox row.", ConstLabels: labels})
	m.leader = prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_relay_leader", Help: "1 when this instance's relay holds the leader lock.", ConstLabels: labels})
	m.parked = prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_parked_rows", Help: "Outbox rows parked because the broker refuses them (sampled by the leader); each holds its key's later rows.", ConstLabels: labels})
	m.published = prometheus.NewCounter(prometheus.CounterOpts{Name: "outbox_published_total", Help: "Outbox rows acknowledged by the broker.", ConstLabels: labels})
	m.errors = prometheus.NewCounter(prometheus.CounterOpts{Name: "outbox_publish_errors_total", Help: "Relay batches with at least one unacknowledged row.", ConstLabels: labels})
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.backlog, m.oldest, m.leader, m.parked, m.published, m.errors} {
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
