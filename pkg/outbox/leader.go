package outbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
)

// Leadership is how the relays of one database elect their leader.
type Leadership string

const (
	// LeaderAdvisory (the default) is a session advisory lock on a
	// dedicated connection, with idle_session_timeout as its lease and
	// LISTEN on the same session (see Leases). It needs a direct
	// connection or a session-mode pool.
	LeaderAdvisory Leadership = "advisory"
	// LeaderLease is a row in outbox_leader (LeaseSchema): holder, epoch,
	// expires_at on the server's clock, taken and renewed in one-statement
	// transactions, so it works through PgBouncer in transaction mode
	// (ADR 0042). Every write the leader makes to the outbox (marks,
	// parks) and every batch it reads checks its epoch in the same
	// transaction: a leader that lost the lease cannot change a row.
	LeaderLease Leadership = "lease"
)

// LeaseSchema creates outbox_leader, the lease LeaderLease elects by. Put
// it in a migration after Schema (services/orders/migrations/00031).
const LeaseSchema = `
CREATE TABLE outbox_leader (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    epoch      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
`

// errFenced stops a leader whose epoch is no longer the lease's: another
// relay took it (after it expired), so this one must not read or change
// rows.
var errFenced = errors.New("outbox leader lease: another relay holds it now (fenced)")

// lostLeadership reports whether err means this relay no longer leads.
func lostLeadership(err error) bool {
	return errors.Is(err, errLeaseExpired) || errors.Is(err, errFenced)
}

// fence is the lease check every write of a LeaderLease leader carries:
// it locks the lease row FOR SHARE, so a takeover (which updates the row)
// waits for the write to commit, and a write that runs after a takeover
// sees the new epoch and finds nothing. %[1]d and %[2]d are the
// parameters holding the lease name and the epoch.
const fence = `lease AS (
	SELECT FROM outbox_leader WHERE name = $%[1]d AND epoch = $%[2]d AND expires_at > clock_timestamp() FOR SHARE)`

// leaseSession competes for the outbox_leader row until it gets it, then
// leads until ctx ends or the lease is lost, and releases it on the way
// out (a standby leads at its next try instead of after the expiry).
func (r *Relay) leaseSession(ctx context.Context) error {
	var (
		epoch int64
		sent  time.Time
	)
	for {
		sent = time.Now()
		var err error
		if epoch, err = r.tryLease(ctx); err != nil {
			return err
		}
		if epoch != 0 {
			break
		}
		if !wait(ctx, r.cfg.LeaderRetry) {
			return nil
		}
	}
	l := newLease(sent, r.cfg.LeaderLease)
	l.epoch = epoch
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wake := make(chan struct{}, 1)
	kept := make(chan error, 1)
	go func() {
		err := r.renewLease(lctx, l)
		cancel() // the lead loop stops when the lease does
		kept <- err
	}()
	listened := make(chan struct{})
	go func() {
		defer close(listened)
		if r.cfg.ListenURL != "" {
			r.listen(lctx, wake)
		}
	}()
	r.leader.Store(true)
	r.m.leader.Set(1)
	r.log.InfoContext(ctx, "relay is leader", "leadership", string(LeaderLease), "epoch", epoch, "lease", r.cfg.LeaderLease.String())
	err := r.lead(lctx, l, wake)
	cancel()
	r.leader.Store(false)
	r.m.leader.Set(0)
	err = errors.Join(err, <-kept)
	<-listened
	r.releaseLease(ctx, l)
	r.log.InfoContext(ctx, "relay stepped down", "epoch", epoch, "err", err)
	return err
}

// tryLease takes the lease when it is free, expired or this relay's own
// (a new epoch each time), in one statement on the server's clock. It
// returns the new epoch, or 0 while another relay holds it.
func (r *Relay) tryLease(ctx context.Context) (int64, error) {
	rows, err := r.pool.Query(ctx, `
		INSERT INTO outbox_leader AS l (name, holder, epoch, expires_at)
		VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond')
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = l.epoch + 1, expires_at = excluded.expires_at
		WHERE l.expires_at <= clock_timestamp() OR l.holder = excluded.holder
		RETURNING epoch`, r.cfg.LockName, r.holder, r.cfg.LeaderLease.Milliseconds())
	if err != nil {
		return 0, fmt.Errorf("try leader lease: %w", err)
	}
	epochs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, fmt.Errorf("try leader lease: %w", err)
	}
	if len(epochs) == 0 {
		return 0, nil
	}
	return epochs[0], nil
}

// renewLease renews l every LeaderLease/3 while ctx lives. A renewal
// that fails is tried again while l is held; it returns errLeaseExpired
// once l ran out unrenewed, errFenced when another relay took the lease,
// and nil when ctx ends.
func (r *Relay) renewLease(ctx context.Context, l *lease) error {
	every := r.cfg.LeaderLease / 3
	next := time.Now().Add(every)
	for {
		if !wait(ctx, time.Until(next)) {
			return nil
		}
		if r.beforeRenew != nil {
			r.beforeRenew()
		}
		sent := time.Now()
		hctx, cancel := context.WithTimeout(ctx, every)
		tag, err := r.pool.Exec(hctx, `UPDATE outbox_leader SET expires_at = clock_timestamp() + $3 * interval '1 millisecond'
			WHERE name = $1 AND epoch = $2`, r.cfg.LockName, l.epoch, r.cfg.LeaderLease.Milliseconds())
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil && tag.RowsAffected() == 0:
			return errFenced
		case err == nil:
			l.renew(sent)
			next = sent.Add(every)
		case !l.held():
			return fmt.Errorf("%w: renew: %w", errLeaseExpired, err)
		default:
			r.log.WarnContext(ctx, "renew leader lease failed; trying again while it lasts", "err", err)
			next = time.Now().Add(every / 4)
		}
	}
}

// releaseLease ends l at once, so a standby need not wait for it to
// expire. It changes nothing once another relay took the lease.
func (r *Relay) releaseLease(ctx context.Context, l *lease) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if _, err := r.pool.Exec(rctx, `UPDATE outbox_leader SET expires_at = clock_timestamp() WHERE name = $1 AND epoch = $2`,
		r.cfg.LockName, l.epoch); err != nil {
		r.log.WarnContext(ctx, "release leader lease (it expires by itself)", "err", err)
	}
}

// fencedExec runs update, an UPDATE of outbox that ends with its WHERE
// clause, as this leader's write: under LeaderLease it commits only while
// l's epoch holds the lease (fence), and returns errFenced otherwise.
func (r *Relay) fencedExec(ctx context.Context, l *lease, update string, args ...any) error {
	if l.epoch == 0 {
		_, err := r.pool.Exec(ctx, update, args...)
		return err
	}
	n := len(args)
	sql := fmt.Sprintf(`WITH `+fence+`,
		done AS (%[3]s AND EXISTS (SELECT FROM lease) RETURNING 1)
		SELECT EXISTS (SELECT FROM lease), (SELECT count(*) FROM done)`, n+1, n+2, update)
	var (
		held bool
		rows int64
	)
	if err := r.pool.QueryRow(ctx, sql, append(args, r.cfg.LockName, l.epoch)...).Scan(&held, &rows); err != nil {
		return err
	}
	if !held {
		return errFenced
	}
	return nil
}

// txReader reads batches for a LeaderLease leader: each read is its own
// transaction (what a transaction pooler carries) with the reader's
// planner settings set for it alone (SET LOCAL; see openReader), and
// checks the lease first, so a leader that lost it reads nothing more.
type txReader struct {
	r *Relay
	l *lease
}

func (t txReader) read(ctx context.Context, skip []int64) ([]row, error) {
	var batch []row
	err := pgx.BeginFunc(ctx, t.r.pool, func(tx pgx.Tx) error {
		var held bool
		var a, b, c string
		if err := tx.QueryRow(ctx, `SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true),
			set_config('plan_cache_mode', 'force_custom_plan', true),
			EXISTS (SELECT FROM outbox_leader WHERE name = $1 AND epoch = $2 AND expires_at > clock_timestamp())`,
			t.r.cfg.LockName, t.l.epoch).Scan(&a, &b, &c, &held); err != nil {
			return fmt.Errorf("read batch: check lease: %w", err)
		}
		if !held {
			return errFenced
		}
		var err error
		batch, err = t.r.readBatch(ctx, tx, skip)
		return err
	})
	return batch, err
}

func (txReader) broken() bool              { return false }
func (txReader) close(ctx context.Context) {}

// listen forwards NOTIFYs on NotifyChannel to wake, on its own connection
// to ListenURL (a direct one: LISTEN needs a session), reconnecting with
// backoff until ctx ends. Without it the leader polls every PollInterval.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	policy := backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2}
	for attempt := 1; ctx.Err() == nil; attempt++ {
		err := r.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		r.log.WarnContext(ctx, "relay listener lost; polling meanwhile", "err", err)
		if !wait(ctx, policy.Delay(attempt)) {
			return
		}
	}
}

func (r *Relay) listenOnce(ctx context.Context, wake chan<- struct{}) error {
	pc, err := pgdb.Config{URL: r.cfg.ListenURL}.PoolConfig()
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, pc.ConnConfig)
	if err != nil {
		return fmt.Errorf("connect listener: %w", err)
	}
	defer closeConn(ctx, conn)
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	for {
		// A NOTIFY sent before the LISTEN took effect reached nobody: look
		// once after it (and after each NOTIFY).
		select {
		case wake <- struct{}{}:
		default:
		}
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
	}
}

// newHolder names this relay in outbox_leader: host, process, and a
// random part (two relays in one process are two holders).
func newHolder() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b))
}
