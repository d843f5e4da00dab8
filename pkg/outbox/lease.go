package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
)

// errLeaseExpired stops a leader whose lease ran out before a heartbeat
// renewed it (the process was frozen, or the database did not answer):
// the server may already have ended the lock session and a standby may
// lead.
var errLeaseExpired = errors.New("leader lease expired before a heartbeat renewed it")

// lease is the leader's own view of how long it may still publish: until
// 2/3 of LeaderLease after the last heartbeat that succeeded was sent.
// The server ends the lock session no earlier than LeaderLease after that
// heartbeat finished, so the leader stops first, with a third of the lease
// to spare. Times are monotonic (time.Since), unaffected by wall-clock
// steps; a frozen process's clock keeps running, so on waking it sees the
// lease expired.
type lease struct {
	base  time.Time
	valid time.Duration // until base + lease/3·2 after the last renewal
	until atomic.Int64  // time.Duration since base
	// epoch is the outbox_leader epoch a LeaderLease leader holds (its
	// fencing token); 0 under LeaderAdvisory.
	epoch int64
}

func newLease(sent time.Time, d time.Duration) *lease {
	l := &lease{base: sent, valid: d * 2 / 3}
	l.renew(sent)
	return l
}

// renew extends the lease from the moment a successful heartbeat was sent.
func (l *lease) renew(sent time.Time) { l.until.Store(int64(sent.Sub(l.base) + l.valid)) }

// held reports whether the leader may still publish.
func (l *lease) held() bool { return time.Since(l.base) < time.Duration(l.until.Load()) }

// lockConn takes a connection out of the pool for the leader lock and
// gives its session the lease: idle_session_timeout = LeaderLease (the
// server ends the session, and the lock with it, when no query arrives
// for that long: a frozen or cut-off holder), and TCP keepalive on the
// server's side (pgdb.ServerKeepAliveSQL). The connection never returns to
// the pool.
func (r *Relay) lockConn(ctx context.Context) (*pgx.Conn, error) {
	pc, err := r.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire lock connection: %w", err)
	}
	// The lock lives as long as this session; the connection must not go
	// back to the pool holding it.
	conn := pc.Hijack()
	setup := fmt.Sprintf("SET idle_session_timeout = %d; %s", r.cfg.LeaderLease.Milliseconds(), pgdb.ServerKeepAliveSQL)
	if _, err := conn.Exec(ctx, setup); err != nil {
		closeConn(ctx, conn)
		return nil, fmt.Errorf("lock connection lease (idle_session_timeout needs PostgreSQL 14+): %w", err)
	}
	return conn, nil
}

// closeConn closes conn, waiting at most a second for the server: the
// connection may lead to a host that is gone.
func closeConn(ctx context.Context, conn *pgx.Conn) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = conn.Close(cctx)
}

// keep owns the lock connection while this relay leads: it waits there
// for NOTIFYs (forwarded to wake) and sends a heartbeat every
// LeaderLease/3, which must answer within LeaderLease/3 and renews l. It
// returns nil when ctx ends, and an error when the connection breaks or a
// heartbeat fails or is late: the caller steps down.
func (r *Relay) keep(ctx context.Context, conn *pgx.Conn, l *lease, wake chan<- struct{}) error {
	every := r.cfg.LeaderLease / 3
	next := time.Now().Add(every)
	for {
		wctx, cancel := context.WithDeadline(ctx, next)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			select {
			case wake <- struct{}{}:
			default:
			}
			continue
		case !errors.Is(err, context.DeadlineExceeded):
			// The session is gone (ended by the server: the lease ran
			// out while this process was frozen; a restart), and the
			// lock with it.
			return fmt.Errorf("leader connection: %w", err)
		}
		sent := time.Now()
		hctx, cancel := context.WithTimeout(ctx, every)
		_, err = conn.Exec(hctx, "SELECT 1")
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("leader heartbeat: %w", err)
		}
		l.renew(sent)
		next = sent.Add(every)
	}
}
