package kafkastream_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/inbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/stream/streamtest"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// migrations: the inbox and an effect table whose rows, in id order, are
// the order in which versions took effect.
var migrations = fstest.MapFS{
	"00001_effects.sql": {Data: []byte("-- +goose Up\n" + inbox.Schema + `
CREATE TABLE effects (id bigserial PRIMARY KEY, key text NOT NULL, version int NOT NULL);
-- +goose Down
DROP TABLE effects;
DROP TABLE inbox;
`)},
}

var errOutOfOrder = errors.New("out of order")

// applyVersion is a consumer's handler body: claim the event in the inbox
// and, if new, record the version as the key's next effect, in one
// transaction. A version that is not the key's next one fails the
// transaction (and is counted).
func applyVersion(ctx context.Context, db *pgxpool.Pool, d stream.Delivery, outOfOrder *atomic.Int64) (applied bool, err error) {
	v, _ := strconv.Atoi(string(d.Payload))
	err = pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		applied, err = inbox.Apply(ctx, tx, "g", d.ID, func(ctx context.Context, tx pgx.Tx) error {
			var last int
			if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM effects WHERE key = $1`, d.Key).Scan(&last); err != nil {
				return err
			}
			if v != last+1 {
				outOfOrder.Add(1)
				return stream.Permanent(fmt.Errorf("%w: %s version %d after %d", errOutOfOrder, d.Key, v, last))
			}
			_, err := tx.Exec(ctx, `INSERT INTO effects (key, version) VALUES ($1, $2)`, d.Key, v)
			return err
		})
		return err
	})
	return applied, err
}

// TestRebalanceKillOneMemberKeepsOrderAndAppliesOnce: two members of a
// group share 8 partitions; member A dies in the middle of the stream: its
// handler commits its transaction and then hangs (the offset is never
// committed), and A's client goes away without leaving the group (static
// membership: the coordinator notices only after the session timeout).
// Member B takes A's partitions from their committed offsets. Every key's
// versions take effect once each, in order, through the inbox on real
// PostgreSQL; the redelivered records of A are dropped as duplicates.
func TestRebalanceKillOneMemberKeepsOrderAndAppliesOnce(t *testing.T) {
	t.Parallel()
	const perKey = 40
	db := testinfra.Postgres(t, migrations).Pool
	k := setup(t, 8)
	keys := streamtest.Keys(20)
	var outOfOrder, duplicates, aCalls atomic.Int64
	dying := make(chan struct{})
	var died atomic.Bool
	cfgA := testGroup(k.topic, "g")
	cfgA.HandlerTimeout = time.Second
	cfgA.ClientOpts = []kgo.Opt{kgo.InstanceID("member-a")}
	a := k.start(t, cfgA, func(ctx context.Context, d stream.Delivery) error {
		applied, err := applyVersion(ctx, db, d, &outOfOrder)
		if err == nil && !applied {
			duplicates.Add(1)
		}
		if aCalls.Add(1) == 50 && died.CompareAndSwap(false, true) {
			close(dying)
		}
		if died.Load() {
			<-ctx.Done() // effect committed, offset never: a crash after the transaction
			return ctx.Err()
		}
		return err
	})
	k.start(t, testGroup(k.topic, "g"), func(ctx context.Context, d stream.Delivery) error {
		applied, err := applyVersion(ctx, db, d, &outOfOrder)
		if err == nil && !applied {
			duplicates.Add(1)
		}
		return err
	})
	versions(t, k, keys, 1, perKey/2)
	select {
	case <-dying:
	case <-time.After(30 * time.Second):
		t.Fatalf("member A handled only %d records", aCalls.Load())
	}
	go a.stop()
	versions(t, k, keys, perKey/2+1, perKey)
	testinfra.Eventually(t, 60*time.Second, func() error {
		var n int
		if err := db.QueryRow(context.Background(), `SELECT count(*) FROM effects`).Scan(&n); err != nil {
			return err
		}
		if n != len(keys)*perKey {
			return fmt.Errorf("%d effects of %d", n, len(keys)*perKey)
		}
		return nil
	})
	checkEffects(t, db, keys, perKey)
	if outOfOrder.Load() != 0 {
		t.Errorf("%d deliveries came out of order", outOfOrder.Load())
	}
	if duplicates.Load() == 0 {
		t.Errorf("no duplicate delivery: A's uncommitted record was not handed to B again")
	}
	t.Logf("A handled %d, duplicates dropped by the inbox %d", aCalls.Load(), duplicates.Load())
}

// checkEffects: each key has versions 1..perKey, each once, in order of
// taking effect.
func checkEffects(t *testing.T, db *pgxpool.Pool, keys []string, perKey int) {
	t.Helper()
	for _, key := range keys {
		rows, err := db.Query(context.Background(), `SELECT version FROM effects WHERE key = $1 ORDER BY id`, key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if v != i+1 {
				t.Fatalf("key %s: effects %v, want 1..%d once each, in order", key, got, perKey)
			}
		}
	}
}
