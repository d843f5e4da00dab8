package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// leaseCfg is fast with the outbox_leader lease (ADR 0042).
func leaseCfg() outbox.RelayConfig {
	cfg := fast
	cfg.Leader = outbox.LeaderLease
	cfg.LeaderLease = 1500 * time.Millisecond
	cfg.LeaderRetry = 100 * time.Millisecond
	return cfg
}

// bouncerPool opens a pool to b's database through a PgBouncer in
// transaction mode, with pgx in exec mode (no named prepared statements),
// as a relay deployed behind one connects.
func bouncerPool(t *testing.T, bouncerURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgdb.Open(context.Background(), pgdb.Config{URL: bouncerURL + "&default_query_exec_mode=exec", MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func newRelayOn(t *testing.T, pool *pgxpool.Pool, sink outbox.Sink, cfg outbox.RelayConfig) *outbox.Relay {
	t.Helper()
	r, err := outbox.NewRelay(pool, sink, cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitLeader waits until r leads.
func waitLeader(t *testing.T, r *outbox.Relay, what string) {
	t.Helper()
	testinfra.Eventually(t, 30*time.Second, func() error {
		if !r.IsLeader() {
			return errors.New(what + " does not lead")
		}
		return nil
	})
}

// watchLeaders counts the moments at which more than one relay believes
// it leads, until the test ends.
func watchLeaders(t *testing.T, relays ...*outbox.Relay) *atomic.Int64 {
	var both atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			n := 0
			for _, r := range relays {
				if r.IsLeader() {
					n++
				}
			}
			if n > 1 {
				both.Add(1)
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return &both
}

// emitMany writes perWriter events from each of writers goroutines over
// keys keys, through pool (PgBouncer: Publish's transaction-scoped lock and
// NOTIFY work there).
func emitMany(t *testing.T, b *bundle, pool *pgxpool.Pool, writers, perWriter, keys int) []events.Envelope {
	t.Helper()
	bb := *b
	bb.db = &testinfra.Database{Pool: pool, URL: b.db.URL, Name: b.db.Name}
	var (
		mu   sync.Mutex
		sent []events.Envelope
		wg   sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				ev := bb.emit(t, "key-"+strconv.Itoa((w+i)%keys), nil)
				mu.Lock()
				sent = append(sent, ev)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return sent
}

// TestLeaseRelaysThroughPgBouncer: two relays elect their leader with the
// outbox_leader lease through PgBouncer in transaction mode (pool size 2:
// clients share server sessions). Exactly one leads at any moment; every
// row is published once, in order per key; when the leader is stopped the
// standby leads within the lease and publishes the rest; nothing is lost.
func TestLeaseRelaysThroughPgBouncer(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	bouncer := testinfra.PgBouncer(t, b.db, testinfra.PgBouncerConfig{PoolSize: 2})
	cfg := leaseCfg()
	r1 := newRelayOn(t, bouncerPool(t, bouncer), b.sink(), cfg)
	r2 := newRelayOn(t, bouncerPool(t, bouncer), b.sink(), cfg)
	both := watchLeaders(t, r1, r2)
	stop1 := runRelay(t, r1)
	waitLeader(t, r1, "the first relay")
	stop2 := runRelay(t, r2)

	writers := bouncerPool(t, bouncer)
	sent := emitMany(t, b, writers, 4, 25, 6)
	testinfra.Eventually(t, 30*time.Second, drained(t, b))
	if !r1.IsLeader() || r2.IsLeader() {
		t.Fatalf("leaders: first %v, second %v; want the first alone", r1.IsLeader(), r2.IsLeader())
	}

	stopped := time.Now()
	stop1()
	waitLeader(t, r2, "the standby")
	t.Logf("the standby led %s after the leader stopped (lease %s)", time.Since(stopped).Round(time.Millisecond), cfg.LeaderLease)
	sent = append(sent, emitMany(t, b, writers, 4, 25, 6)...)
	testinfra.Eventually(t, 30*time.Second, drained(t, b))
	stop2()
	if n := both.Load(); n > 0 {
		t.Errorf("both relays believed they led at %d samples", n)
	}
	checkExactlyOnceInOrder(t, sent, b.received(t))
}

// TestLeaseFencesAFrozenLeader: the leader publishes a batch and freezes
// before it marks it (and before its next renewal); its lease expires on
// the server's clock, the standby takes it, publishes the rows again (the
// broker drops the copies) and marks them. Both believe they lead. When
// the old leader wakes, its mark and its renewal carry its old epoch: the
// fence rejects both, it changes no row (the marks stay the new
// leader's) and steps down.
func TestLeaseFencesAFrozenLeader(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	bouncer := testinfra.PgBouncer(t, b.db, testinfra.PgBouncerConfig{PoolSize: 2})
	cfg := leaseCfg()
	var markFrozen, renewFrozen atomic.Bool
	thaw := make(chan struct{})
	old := newRelayOn(t, bouncerPool(t, bouncer), b.sink(), cfg)
	outbox.SetBeforeMark(old, func() {
		if markFrozen.Load() {
			<-thaw
		}
	})
	outbox.SetBeforeRenew(old, func() {
		if renewFrozen.Load() {
			<-thaw
		}
	})
	successor := newRelayOn(t, bouncerPool(t, bouncer), b.sink(), cfg)
	stopOld := runRelay(t, old)
	waitLeader(t, old, "the first relay")
	stopSuccessor := runRelay(t, successor)
	defer stopOld()
	defer close(thaw)

	markFrozen.Store(true)
	// One transaction, so that the leader reads them in one batch.
	var sent []events.Envelope
	for i := range 6 {
		ev, err := events.New("test", "widget.changed", "f"+strconv.Itoa(i%2), 1, int64(i/2+1), map[string]any{"i": i}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, ev)
	}
	if err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error { return b.ob.Publish(ctx, tx, sent...) }); err != nil {
		t.Fatal(err)
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if got := len(b.received(t)); got != len(sent) {
			return fmt.Errorf("the broker has %d of %d events from the leader", got, len(sent))
		}
		return nil
	})
	renewFrozen.Store(true) // frozen now: it neither marks nor renews
	testinfra.Eventually(t, 30*time.Second, func() error {
		if !successor.IsLeader() {
			return errors.New("the standby has not taken the expired lease")
		}
		return drained(t, b)()
	})
	if !old.IsLeader() {
		t.Fatal("the frozen leader stepped down; it cannot know while frozen")
	}
	marks := publishedAt(t, b)

	thaw <- struct{}{} // the mark
	thaw <- struct{}{} // the renewal
	testinfra.Eventually(t, 10*time.Second, func() error {
		if old.IsLeader() {
			return errors.New("the woken leader has not stepped down")
		}
		return nil
	})
	after := publishedAt(t, b)
	for id, at := range marks {
		if !after[id].Equal(at) {
			t.Errorf("row %d: published_at %s, marked by the new leader at %s: the old leader wrote after losing its lease",
				id, after[id].Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
		}
	}
	var epoch int64
	if err := b.db.Pool.QueryRow(ctx, `SELECT epoch FROM outbox_leader`).Scan(&epoch); err != nil || epoch != 2 {
		t.Errorf("lease epoch %d (%v); want 2: the old leader took it back", epoch, err)
	}
	sent = append(sent, b.emit(t, "k0", nil))
	testinfra.Eventually(t, 10*time.Second, drained(t, b))
	stopSuccessor()
	checkExactlyOnceInOrder(t, sent, b.received(t))
}

// publishedAt is every row's published_at.
func publishedAt(t *testing.T, b *bundle) map[int64]time.Time {
	t.Helper()
	rows, err := b.db.Pool.Query(context.Background(), `SELECT id, published_at FROM outbox WHERE published_at IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]time.Time{}
	var (
		id int64
		at time.Time
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &at}, func() error { out[id] = at; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLeaseLeaderWakesOnListenURL: through PgBouncer the leader cannot
// LISTEN; with ListenURL (a direct connection) it still wakes on
// Publish's NOTIFY instead of waiting for its poll interval (a minute
// here).
func TestLeaseLeaderWakesOnListenURL(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	bouncer := testinfra.PgBouncer(t, b.db, testinfra.PgBouncerConfig{PoolSize: 2})
	cfg := leaseCfg()
	cfg.PollInterval = time.Minute
	cfg.ListenURL = b.db.URL
	r := newRelayOn(t, bouncerPool(t, bouncer), b.sink(), cfg)
	runRelay(t, r)
	testinfra.Eventually(t, 10*time.Second, func() error {
		if !r.IsLeader() {
			return errors.New("the relay does not lead yet")
		}
		// Let the first read and the listener's first look pass.
		var listening int
		if err := b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&listening); err != nil {
			return err
		}
		if listening == 0 {
			return errors.New("the relay's listener is not up yet")
		}
		return nil
	})
	sent := []events.Envelope{b.emit(t, "k", nil)}
	testinfra.Eventually(t, 20*time.Second, drained(t, b))
	checkExactlyOnceInOrder(t, sent, b.received(t))
}

// TestAdvisoryLeaderIsNotSafeThroughPgBouncer documents why LeaderLease
// exists: through PgBouncer in transaction mode the advisory lock is taken
// by a server session that every client shares (one here), and a session
// lock is re-entrant, so both relays believe they lead.
func TestAdvisoryLeaderIsNotSafeThroughPgBouncer(t *testing.T) {
	t.Parallel()
	nt := testinfra.NATS(t)
	b := setup(t, nt.JS, nt.Name("OUT"))
	bouncer := testinfra.PgBouncer(t, b.db, testinfra.PgBouncerConfig{PoolSize: 1})
	cfg := fast // LeaderAdvisory
	r1 := newRelayOn(t, bouncerPool(t, bouncer), b.sink(), cfg)
	r2 := newRelayOn(t, bouncerPool(t, bouncer), b.sink(), cfg)
	runRelay(t, r1)
	runRelay(t, r2)
	testinfra.Eventually(t, 30*time.Second, func() error {
		if !r1.IsLeader() || !r2.IsLeader() {
			return fmt.Errorf("leaders: %v and %v; through PgBouncer both take the advisory lock", r1.IsLeader(), r2.IsLeader())
		}
		return nil
	})
}
