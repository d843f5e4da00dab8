package indexpg_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/search/internal/index"
	"github.com/shopfloor/shopfloor/services/search/internal/indexpg"
	"github.com/shopfloor/shopfloor/services/search/migrations"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func product(id string, version int64, status, name string) index.Product {
	return index.Product{ID: id, Version: version, Status: status, Category: "lamps", SKU: "SKU-" + id,
		Prices: map[string]int64{"EUR": 100 * version}, Images: []string{}, HasText: true,
		Texts: []index.Text{{Locale: "en-US", Config: "english", Name: name, Description: "desc " + name}}}
}

func src(partition int, seq uint64) index.Source {
	return index.Source{Stream: "CATALOG", Partition: partition, Sequence: seq, EventID: fmt.Sprintf("ev-%d", seq),
		EventTime: t0.Add(time.Duration(seq) * time.Second), Published: t0.Add(time.Duration(seq) * time.Second)}
}

// applyProduct applies doc and advances the position, as the projector does.
func applyProduct(t *testing.T, pool *pgxpool.Pool, p indexpg.Projection, doc index.Product, s index.Source) bool {
	t.Helper()
	var applied bool
	err := pgdb.InTx(context.Background(), pool, func(tx pgx.Tx) error {
		var err error
		if applied, err = indexpg.ApplyProduct(context.Background(), tx, p, doc, s); err != nil {
			return err
		}
		return indexpg.Advance(context.Background(), tx, p, s)
	})
	if err != nil {
		t.Fatal(err)
	}
	return applied
}

type stored struct {
	version int64
	status  string
	names   map[string]string // locale → name
	seq     int64
}

func read(t *testing.T, pool *pgxpool.Pool, p indexpg.Projection, id string) stored {
	t.Helper()
	ctx := context.Background()
	var s stored
	err := pool.QueryRow(ctx, `SELECT version, status, source_sequence FROM `+p.Docs+` WHERE product_id = $1`, id).Scan(&s.version, &s.status, &s.seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return s
	}
	if err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT locale, name FROM `+p.Texts+` WHERE product_id = $1`, id)
	if err != nil {
		t.Fatal(err)
	}
	s.names = map[string]string{}
	var loc, name string
	if _, err := pgx.ForEachRow(rows, []any{&loc, &name}, func() error { s.names[loc] = name; return nil }); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestApplyProductNeverMovesBackward: an older or equal version is a no-op
// (texts included); a newer one replaces the document and its texts.
func TestApplyProductNeverMovesBackward(t *testing.T) {
	t.Parallel()
	db := testinfra.Postgres(t, migrations.FS)
	p := indexpg.LiveProducts
	v2 := product("a", 2, index.StatusActive, "Lamp two")
	v2.Texts = append(v2.Texts, index.Text{Locale: "de-DE", Config: "german", Name: "Lampe zwei"})
	steps := []struct {
		name string
		doc  index.Product
		seq  uint64
		want bool
		then stored
	}{
		{"first version seen", v2, 10, true, stored{version: 2, status: "active", names: map[string]string{"en-US": "Lamp two", "de-DE": "Lampe zwei"}, seq: 10}},
		{"older version", product("a", 1, index.StatusActive, "Lamp one"), 11, false, stored{version: 2, status: "active", names: map[string]string{"en-US": "Lamp two", "de-DE": "Lampe zwei"}, seq: 10}},
		{"equal version (duplicate)", product("a", 2, index.StatusArchived, "Other"), 12, false, stored{version: 2, status: "active", names: map[string]string{"en-US": "Lamp two", "de-DE": "Lampe zwei"}, seq: 10}},
		{"newer version drops a locale", product("a", 3, index.StatusArchived, "Lamp three"), 13, true, stored{version: 3, status: "archived", names: map[string]string{"en-US": "Lamp three"}, seq: 13}},
	}
	for _, st := range steps {
		if got := applyProduct(t, db.Pool, p, st.doc, src(1, st.seq)); got != st.want {
			t.Errorf("%s: applied = %t, want %t", st.name, got, st.want)
		}
		got := read(t, db.Pool, p, "a")
		if got.version != st.then.version || got.status != st.then.status || got.seq != st.then.seq || fmt.Sprint(got.names) != fmt.Sprint(st.then.names) {
			t.Errorf("%s: stored %+v, want %+v", st.name, got, st.then)
		}
	}
	// The position moved to the highest sequence and never back.
	if err := pgdb.InTx(context.Background(), db.Pool, func(tx pgx.Tx) error {
		return indexpg.Advance(context.Background(), tx, p, src(1, 5))
	}); err != nil {
		t.Fatal(err)
	}
	pos, err := indexpg.Positions(context.Background(), db.Pool, p)
	if err != nil || pos[1] != 13 || len(pos) != 1 {
		t.Fatalf("positions = %v, %v; want partition 1 at 13", pos, err)
	}
	applied, event, err := indexpg.Freshness(context.Background(), db.Pool, p)
	if err != nil || applied == nil || event == nil || !event.Equal(t0.Add(13*time.Second)) {
		t.Fatalf("freshness = %v, %v, %v; want the time of sequence 13", applied, event, err)
	}
}

// TestApplyOrderKeepsItems: a status event keeps the items order.placed
// brought; order.placed arriving after a newer status event (a redrive)
// changes nothing.
func TestApplyOrderKeepsItems(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations.FS)
	p := indexpg.LiveOrders
	apply := func(doc index.Order, seq uint64) bool {
		t.Helper()
		var applied bool
		if err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
			var err error
			applied, err = indexpg.ApplyOrder(ctx, tx, p, doc, src(0, seq))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return applied
	}
	items := []ordersapi.Line{{ProductID: "p1", SKU: "LAMP-1", Name: "Oak lamp", Quantity: 2, UnitPriceMinor: 500}}
	placed := index.Order{ID: "o1", Version: 1, CustomerID: "c1", CustomerEmail: "a@example.com", Status: ordersapi.StatusPendingPayment,
		Currency: "EUR", TotalMinor: 1000, Items: items, At: t0}
	paid := placed
	paid.Version, paid.Status, paid.Items, paid.At = 2, ordersapi.StatusPaid, nil, t0.Add(time.Minute)
	if !apply(placed, 1) || !apply(paid, 2) || apply(placed, 3) {
		t.Fatal("placed, paid, placed again: want applied, applied, stale")
	}
	page, err := indexpg.SearchOrders(ctx, db.Pool, p, index.OrderQuery{Q: "LAMP-1", Limit: 10})
	if err != nil || len(page.Hits) != 1 {
		t.Fatalf("search by item sku: %+v, %v", page, err)
	}
	h := page.Hits[0]
	if h.Status != ordersapi.StatusPaid || h.Version != 2 || len(h.Items) != 1 || h.Items[0].Name != "Oak lamp" || !h.PlacedAt.Equal(t0) || !h.UpdatedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("order after paid: %+v", h)
	}

	// o2: paid overtakes placed (redrive): indexed without items.
	o2paid := paid
	o2paid.ID = "o2"
	o2placed := placed
	o2placed.ID = "o2"
	if !apply(o2paid, 4) || apply(o2placed, 5) {
		t.Fatal("o2: paid then placed: want applied, stale")
	}
	page, err = indexpg.SearchOrders(ctx, db.Pool, p, index.OrderQuery{CustomerID: "c1", Status: ordersapi.StatusPaid, Limit: 10})
	if err != nil || len(page.Hits) != 2 {
		t.Fatalf("search by customer and status: %+v, %v", page, err)
	}
	for _, h := range page.Hits {
		if h.ID == "o2" && len(h.Items) != 0 {
			t.Errorf("o2 items = %+v, want none (order.placed was overtaken)", h.Items)
		}
	}
}

// TestCreateTablesAsTheAppRoleSaysToUseTheOwner: the app role the service
// runs as (ADR 0040) may not create a rebuild's tables; the error says
// what to run it as. The owner may, and the app role may then write them
// (default privileges).
func TestCreateTablesAsTheAppRoleSaysToUseTheOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.PostgresRoles(t, migrations.FS)
	rebuilt := indexpg.LiveProducts.WithSuffix("rapp")
	err := indexpg.CreateTables(ctx, db.Pool, indexpg.LiveProducts, rebuilt)
	if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "as the database's owner role") {
		t.Fatalf("CreateTables as the app role: %v; want permission denied and the owner named", err)
	}
	owner, err := pgdb.Open(ctx, pgdb.Config{URL: db.OwnerURL, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	if err := indexpg.CreateTables(ctx, owner, indexpg.LiveProducts, rebuilt); err != nil {
		t.Fatalf("CreateTables as the owner: %v", err)
	}
	applyProduct(t, db.Pool, rebuilt, product("p1", 1, index.StatusActive, "Lamp"), src(1, 1))
}

// TestSwapRedirectsLiveWriters: writers that name the live tables keep
// writing while a swap renames a rebuilt copy into place, and after it
// their writes land in the new tables; nothing fails, nothing is lost.
func TestSwapRedirectsLiveWriters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations.FS)
	live := indexpg.LiveProducts
	rebuilt := live.WithSuffix("rtest")
	if err := indexpg.CreateTables(ctx, db.Pool, live, rebuilt); err != nil {
		t.Fatal(err)
	}
	// The rebuilt copy already holds what the live one will have written
	// by the swap (a rebuild that caught up): position far ahead.
	applyProduct(t, db.Pool, rebuilt, product("seed", 1, index.StatusActive, "Seed lamp"), src(1, 1_000_000))
	applyProduct(t, db.Pool, rebuilt, product("seed2", 1, index.StatusActive, "Seed lamp"), src(2, 1_000_000))

	var (
		wg      sync.WaitGroup
		written atomic.Int64
		stop    = make(chan struct{})
		errs    = make(chan error, 1)
	)
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
					s := src(w+1, uint64(i+1))
					if _, err := indexpg.ApplyProduct(ctx, tx, live, product(id, 1, index.StatusActive, "Writer lamp "+id), s); err != nil {
						return err
					}
					return indexpg.Advance(ctx, tx, live, s)
				})
				if err != nil {
					select {
					case errs <- fmt.Errorf("writer %s: %w", id, err):
					default:
					}
					return
				}
				written.Add(1)
			}
		})
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if written.Load() < 20 {
			return fmt.Errorf("%d writes so far", written.Load())
		}
		return nil
	})
	var swapErr error
	for range 50 {
		if swapErr = indexpg.Swap(ctx, db.Pool, live, rebuilt, "otest", indexpg.SwapOptions{}); !errors.Is(swapErr, indexpg.ErrBusy) {
			break
		}
	}
	if swapErr != nil {
		t.Fatalf("swap: %v", swapErr)
	}
	before := written.Load()
	testinfra.Eventually(t, 10*time.Second, func() error {
		if written.Load() < before+20 {
			return fmt.Errorf("%d writes after the swap", written.Load()-before)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}

	// The live name is the former copy (it has the seed) and holds the
	// writes made after the swap; the old table holds the ones before.
	var inLive, inOld, seed int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM products WHERE product_id LIKE 'w%'),
		(SELECT count(*) FROM products_otest), (SELECT count(*) FROM products WHERE product_id = 'seed')`).Scan(&inLive, &inOld, &seed); err != nil {
		t.Fatal(err)
	}
	if seed != 1 || inLive < 20 || inOld < 20 || int64(inLive+inOld) < written.Load() {
		t.Fatalf("after swap: seed %d, %d writes in the new live table, %d in the old, %d written", seed, inLive, inOld, written.Load())
	}
	// Index names followed the tables.
	var idx []string
	rows, err := db.Pool.Query(ctx, `SELECT indexname FROM pg_indexes WHERE tablename IN ('products', 'product_texts') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	if idx, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(idx) != "[product_texts_name_idx product_texts_pkey product_texts_tsv_idx products_pkey]" {
		t.Errorf("live index names = %v", idx)
	}
	left, err := indexpg.Leftovers(ctx, db.Pool, live)
	if err != nil || fmt.Sprint(left) != "[catalog_positions_otest product_texts_otest products_otest]" {
		t.Errorf("leftovers = %v, %v", left, err)
	}
}

// TestSwapRefusesWhenBehind: a rebuilt projection behind the live one in
// any partition is not swapped in; nothing changes.
func TestSwapRefusesWhenBehind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations.FS)
	live := indexpg.LiveProducts
	rebuilt := live.WithSuffix("rtest")
	if err := indexpg.CreateTables(ctx, db.Pool, live, rebuilt); err != nil {
		t.Fatal(err)
	}
	applyProduct(t, db.Pool, live, product("a", 1, index.StatusActive, "A"), src(0, 10))
	applyProduct(t, db.Pool, live, product("b", 1, index.StatusActive, "B"), src(1, 11))
	applyProduct(t, db.Pool, rebuilt, product("a", 1, index.StatusActive, "A"), src(0, 10))
	if err := indexpg.Swap(ctx, db.Pool, live, rebuilt, "otest", indexpg.SwapOptions{CatchUp: 100 * time.Millisecond}); !errors.Is(err, indexpg.ErrBehind) {
		t.Fatalf("swap with partition 1 behind = %v, want ErrBehind", err)
	}
	if got := read(t, db.Pool, live, "b"); got.version != 1 {
		t.Fatalf("live changed by a refused swap: %+v", got)
	}
	applyProduct(t, db.Pool, rebuilt, product("b", 1, index.StatusActive, "B"), src(1, 11))
	if err := indexpg.Swap(ctx, db.Pool, live, rebuilt, "otest", indexpg.SwapOptions{}); err != nil {
		t.Fatalf("swap when caught up: %v", err)
	}
}

// TestCompareCountsOnlyDisagreementsPastTheEventAsDifferences: disagreements are differences when both projections have
// passed the explaining event, in flight otherwise.
func TestCompareCountsOnlyDisagreementsPastTheEventAsDifferences(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations.FS)
	live := indexpg.LiveProducts
	rebuilt := live.WithSuffix("rtest")
	if err := indexpg.CreateTables(ctx, db.Pool, live, rebuilt); err != nil {
		t.Fatal(err)
	}
	both := func(doc index.Product, s index.Source) {
		applyProduct(t, db.Pool, live, doc, s)
		applyProduct(t, db.Pool, rebuilt, doc, s)
	}
	both(product("same", 1, index.StatusActive, "Same"), src(0, 1))
	both(product("same2", 2, index.StatusArchived, "Same two"), src(1, 2))
	d, err := indexpg.Compare(ctx, db.Pool, live, rebuilt)
	if err != nil || d.Differences() != 0 || d.InFlight != 0 || d.LiveDocuments != 2 || d.RebuiltDocuments != 2 {
		t.Fatalf("equal projections: %+v, %v", d, err)
	}

	// Partition 0: both at 20. "mm" differs (live missed v2), "gone" is
	// only live, "new" only rebuilt.
	applyProduct(t, db.Pool, live, product("mm", 1, index.StatusActive, "M"), src(0, 3))
	applyProduct(t, db.Pool, rebuilt, product("mm", 2, index.StatusActive, "M"), src(0, 4))
	applyProduct(t, db.Pool, live, product("gone", 1, index.StatusActive, "G"), src(0, 5))
	applyProduct(t, db.Pool, rebuilt, product("new", 1, index.StatusActive, "N"), src(0, 6))
	both(product("filler", 1, index.StatusActive, "F"), src(0, 20))
	// Partition 1: live at 30, rebuilt at 2: live's newer docs are in flight.
	applyProduct(t, db.Pool, live, product("ahead", 1, index.StatusActive, "Ahead"), src(1, 30))
	applyProduct(t, db.Pool, live, product("same2", 3, index.StatusActive, "Same two"), src(1, 29))

	d, err = indexpg.Compare(ctx, db.Pool, live, rebuilt)
	if err != nil {
		t.Fatal(err)
	}
	if d.Mismatched != 1 || d.Missing != 1 || d.Extra != 1 || d.InFlight != 2 || d.Differences() != 3 {
		t.Fatalf("diff = %+v", d)
	}
	classes := map[string]string{}
	for _, s := range d.Samples {
		classes[s.ID] = s.Class
	}
	if classes["mm"] != indexpg.DiffMismatch || classes["gone"] != indexpg.DiffMissing || classes["new"] != indexpg.DiffExtra {
		t.Errorf("samples = %+v", d.Samples)
	}
}

// TestSwapPausesWritersWhileCatchingUp: a swap with the rebuilt copy
// behind pauses the live writers (readers go on), waits for the copy to
// catch up, then swaps; the paused write lands in the new live table.
func TestSwapPausesWritersWhileCatchingUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations.FS)
	pool, err := pgdb.Open(ctx, pgdb.Config{URL: db.URL, MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	live := indexpg.LiveProducts
	rebuilt := live.WithSuffix("rtest")
	if err := indexpg.CreateTables(ctx, pool, live, rebuilt); err != nil {
		t.Fatal(err)
	}
	applyProduct(t, pool, live, product("a", 1, index.StatusActive, "A"), src(0, 10))
	applyProduct(t, pool, rebuilt, product("a", 1, index.StatusActive, "A"), src(0, 5))

	swapped := make(chan error, 1)
	go func() {
		swapped <- indexpg.Swap(ctx, pool, live, rebuilt, "otest", indexpg.SwapOptions{CatchUp: time.Minute})
	}()
	// waiting counts sessions waiting for a lock on the live tables of this
	// test's database (pg_locks spans the server: parallel tests have
	// tables of the same names in their own databases).
	waiting := func() (int, error) {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
			WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND c.relname IN ('products', 'product_texts', 'catalog_positions') AND NOT l.granted`).Scan(&n)
		return n, err
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
			WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND c.relname = 'products' AND l.mode = 'ShareLock' AND l.granted`).Scan(&n)
		if err == nil && n == 0 {
			err = errors.New("swap holds no SHARE lock yet")
		}
		return err
	})
	// Readers go on.
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var n int
	if err := pool.QueryRow(rctx, `SELECT count(*) FROM products`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("read during the catch-up: %d, %v", n, err)
	}
	// A writer waits.
	wrote := make(chan bool, 1)
	go func() {
		wrote <- applyProductErr(pool, live, product("b", 1, index.StatusActive, "B"), src(1, 11)) == nil
	}()
	testinfra.Eventually(t, 10*time.Second, func() error {
		n, err := waiting()
		if err == nil && n == 0 {
			err = errors.New("the writer is not waiting")
		}
		return err
	})
	select {
	case err := <-swapped:
		t.Fatalf("swapped before the copy caught up: %v", err)
	default:
	}
	// The copy catches up (partition 0 to 10); the swap goes through.
	applyProduct(t, pool, rebuilt, product("c", 1, index.StatusActive, "C"), src(0, 10))
	if err := <-swapped; err != nil {
		t.Fatalf("swap: %v", err)
	}
	if !<-wrote {
		t.Fatal("the paused write failed")
	}
	if got := read(t, pool, live, "b"); got.version != 1 {
		t.Fatalf("paused write not in the new live table: %+v", got)
	}
	if got := read(t, pool, live, "c"); got.version != 1 {
		t.Fatalf("live is not the rebuilt copy: %+v", got)
	}
}

func applyProductErr(pool *pgxpool.Pool, p indexpg.Projection, doc index.Product, s index.Source) error {
	return pgdb.InTx(context.Background(), pool, func(tx pgx.Tx) error {
		if _, err := indexpg.ApplyProduct(context.Background(), tx, p, doc, s); err != nil {
			return err
		}
		return indexpg.Advance(context.Background(), tx, p, s)
	})
}
