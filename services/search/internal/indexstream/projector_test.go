package indexstream_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/search/internal/indexpg"
	"github.com/shopfloor/shopfloor/services/search/internal/indexstream"
	"github.com/shopfloor/shopfloor/services/search/internal/searchtest"
	"github.com/shopfloor/shopfloor/services/search/migrations"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

const partitions = 4

// delivery is ev as the group hands it over at seq.
func delivery(ev searchtest.Event, seq uint64, n int) stream.Delivery {
	return stream.Delivery{ID: ev.ID, Key: ev.Key, Partition: stream.Partition(ev.Key, partitions), Sequence: seq, NumDelivered: n,
		Published: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(seq) * time.Millisecond), Payload: ev.Payload}
}

// dump is a projection's content in a canonical text form: every column
// that the events determine (not applied_at, not the positions, which
// count duplicates too).
func dump(t *testing.T, db *testinfra.Database, p indexpg.Projection) string {
	t.Helper()
	var q []string
	if p.Texts != "" {
		q = []string{
			`SELECT product_id, version, status, category, sku, prices::text, images::text, has_text, source_stream, source_partition, source_sequence, event_id, event_time FROM ` + p.Docs + ` ORDER BY 1`,
			`SELECT product_id, locale, config::text, name, description, category, sku, version, tsv::text FROM ` + p.Texts + ` ORDER BY 1, 2`,
		}
	} else {
		q = []string{`SELECT order_id, customer_id, customer_email, status, currency, total_minor, items::text, item_text, version, placed_at, updated_at,
			source_stream, source_partition, source_sequence, event_id, tsv::text FROM ` + p.Docs + ` ORDER BY 1`}
	}
	var b strings.Builder
	for _, sql := range q {
		rows, err := db.Pool.Query(context.Background(), sql)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&b, vals...)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// TestProjectionConvergesWhateverTheDeliveryOrder: a projection fed the stream in order equals one fed
// the same events the way a consumer group may really see them: keys
// interleaved differently and handled concurrently (per-key order kept),
// deliveries repeated at once (lost acks), and old events published again
// after newer ones of their key (a re-publish beyond the dedup window, a
// redrive). The checker (indexpg.Compare) agrees.
func TestProjectionConvergesWhateverTheDeliveryOrder(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"products", "orders"} {
		for seed := range uint64(3) {
			t.Run(fmt.Sprintf("%s/seed%d", kind, seed), func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				rng := rand.New(rand.NewPCG(seed, 7))
				db := testinfra.Postgres(t, migrations.FS)
				var hist [][]searchtest.Event
				var err error
				live := indexpg.LiveProducts
				if kind == "orders" {
					live = indexpg.LiveOrders
					hist, err = searchtest.Orders(rng, 60)
				} else {
					hist, err = searchtest.Products(rng, 40, 5)
				}
				if err != nil {
					t.Fatal(err)
				}
				// The stream: one interleaving, sequences in that order.
				log := searchtest.Interleave(rng, hist)
				seqOf := make(map[string]uint64, len(log))
				for i, ev := range log {
					seqOf[ev.ID] = uint64(i + 1)
				}

				inOrder := &indexstream.Projector{Pool: db.Pool, Projection: live, Stream: "S", Log: slog.New(slog.DiscardHandler)}
				for _, ev := range log {
					if err := inOrder.Handle(ctx, delivery(ev, seqOf[ev.ID], 1)); err != nil {
						t.Fatal(err)
					}
				}

				shuffled := live.WithSuffix("rshuf")
				if err := indexpg.CreateTables(ctx, db.Pool, live, shuffled); err != nil {
					t.Fatal(err)
				}
				other := &indexstream.Projector{Pool: db.Pool, Projection: shuffled, Stream: "S", Log: slog.New(slog.DiscardHandler)}
				// Four workers, each owning the keys that hash to it (as
				// partitions do), each with its own interleaving.
				const workers = 4
				var perWorker [workers][][]searchtest.Event
				for _, h := range hist {
					f := fnv.New32a()
					f.Write([]byte(h[0].Key))
					perWorker[f.Sum32()%workers] = append(perWorker[f.Sum32()%workers], h)
				}
				republishSeq := uint64(len(log))
				var mu sync.Mutex
				nextSeq := func() uint64 { mu.Lock(); defer mu.Unlock(); republishSeq++; return republishSeq }
				var wg sync.WaitGroup
				errs := make(chan error, workers)
				for w := range workers {
					wrng := rand.New(rand.NewPCG(seed, uint64(w)+100))
					order := searchtest.Interleave(wrng, perWorker[w])
					wg.Go(func() {
						var seen []searchtest.Event
						for _, ev := range order {
							n := 1 + wrng.IntN(3) // delivered up to three times in a row
							for k := 1; k <= n; k++ {
								if err := other.Handle(ctx, delivery(ev, seqOf[ev.ID], k)); err != nil {
									errs <- err
									return
								}
							}
							seen = append(seen, ev)
							if wrng.IntN(4) == 0 { // an earlier event stored again, later
								old := seen[wrng.IntN(len(seen))]
								if err := other.Handle(ctx, delivery(old, nextSeq(), 1)); err != nil {
									errs <- err
									return
								}
							}
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatal(err)
				}
				// Duplicates re-stored later have new sequences but are
				// stale, so documents keep their original source.
				if a, b := dump(t, db, live), dump(t, db, shuffled); a != b {
					t.Fatalf("projections differ:\nin order:\n%s\nshuffled:\n%s", a, b)
				}
				d, err := indexpg.Compare(ctx, db.Pool, live, shuffled)
				if err != nil || d.Differences() != 0 || d.InFlight != 0 || d.LiveDocuments != int64(len(hist)) {
					t.Fatalf("checker: %+v, %v; want no differences over %d documents", d, err, len(hist))
				}

				// As the service's batch group hands them over: each
				// partition's deliveries in stream order, in batches of 1 to
				// 16, each batch one transaction (HandleBatch).
				batched := live.WithSuffix("rbatch")
				if err := indexpg.CreateTables(ctx, db.Pool, live, batched); err != nil {
					t.Fatal(err)
				}
				bp := &indexstream.Projector{Pool: db.Pool, Projection: batched, Stream: "S", Log: slog.New(slog.DiscardHandler)}
				byPartition := map[int][]stream.Delivery{}
				for _, ev := range log {
					d := delivery(ev, seqOf[ev.ID], 1)
					byPartition[d.Partition] = append(byPartition[d.Partition], d)
				}
				brng := rand.New(rand.NewPCG(seed, 99))
				for _, ds := range byPartition {
					for len(ds) > 0 {
						k := min(len(ds), 1+brng.IntN(16))
						if err := bp.HandleBatch(ctx, ds[:k]); err != nil {
							t.Fatal(err)
						}
						ds = ds[k:]
					}
				}
				if a, b := dump(t, db, live), dump(t, db, batched); a != b {
					t.Fatalf("projections differ:\nin order:\n%s\nbatched:\n%s", a, b)
				}
				lp, err := indexpg.Positions(ctx, db.Pool, live)
				if err != nil {
					t.Fatal(err)
				}
				bpos, err := indexpg.Positions(ctx, db.Pool, batched)
				if err != nil || !maps.Equal(lp, bpos) {
					t.Fatalf("positions: batched %v (%v), in order %v", bpos, err, lp)
				}
			})
		}
	}
}

// TestStaleEventsAreNoOps: a redelivery (equal version) and an overtaken
// event (older version) change nothing and are counted as stale; types
// the index does not use are counted as ignored; poison is permanent.
func TestStaleEventsAreNoOps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations.FS)
	reg := prometheus.NewRegistry()
	m, err := indexstream.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := indexstream.NewMetrics(reg); err != nil || again == nil {
		t.Fatalf("second registration on one registry: %v", err)
	}
	p := &indexstream.Projector{Pool: db.Pool, Projection: indexpg.LiveProducts, Stream: "CATALOG", Metrics: m, Log: slog.New(slog.DiscardHandler)}
	hist, err := searchtest.Products(rand.New(rand.NewPCG(1, 1)), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	id := hist[0][0].Key
	v1 := hist[0][0]
	mk := func(v int64, name string) searchtest.Event {
		t.Helper()
		ev, err := searchtest.Envelope("catalog", "product.updated", id, v, map[string]any{"id": id, "version": v, "category": "lamps", "status": "active",
			"translations": map[string]any{"en-US": map[string]any{"name": name}}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	v3 := mk(3, "Third lamp")
	v2 := mk(2, "Second lamp")
	count := func(outcome string) float64 { return counter(t, reg, "CATALOG", outcome) }
	steps := []struct {
		ev      searchtest.Event
		seq     uint64
		outcome string
	}{
		{v1, 1, "applied"},
		{v1, 1, "stale"}, // redelivery
		{v3, 3, "applied"},
		{v2, 2, "stale"}, // overtaken
		{v3, 4, "stale"}, // re-published duplicate
	}
	for i, st := range steps {
		before := count(st.outcome)
		if err := p.Handle(ctx, delivery(st.ev, st.seq, 1)); err != nil {
			t.Fatal(err)
		}
		if got := count(st.outcome); got != before+1 {
			t.Errorf("step %d: %s counter %v → %v, want +1", i, st.outcome, before, got)
		}
	}
	var version int64
	var name string
	if err := db.Pool.QueryRow(ctx, `SELECT p.version, t.name FROM products p JOIN product_texts t USING (product_id) WHERE product_id = $1`, id).
		Scan(&version, &name); err != nil || version != 3 || name != "Third lamp" {
		t.Fatalf("stored v%d %q (%v), want v3 \"Third lamp\"", version, name, err)
	}
	var seq int64
	if err := db.Pool.QueryRow(ctx, `SELECT sequence FROM catalog_positions`).Scan(&seq); err != nil || seq != 4 {
		t.Fatalf("position = %d (%v), want 4: stale events are finished too", seq, err)
	}

	ignored, err := searchtest.Envelope("catalog", "product.reviewed", id, 9, map[string]any{"id": id}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Handle(ctx, delivery(ignored, 5, 1)); err != nil || count("ignored") != 1 {
		t.Fatalf("unknown type: %v, ignored = %v", err, count("ignored"))
	}
	noID, err := searchtest.Envelope("catalog", "product.updated", id, 4, map[string]any{"version": 4, "status": "active"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	numericID, err := searchtest.Envelope("catalog", "product.updated", id, 4, map[string]any{"id": 5}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]stream.Delivery{
		"unreadable":           {ID: "x", Partition: 0, Sequence: 6, Payload: []byte("{")},
		"no id":                delivery(noID, 7, 1),
		"id of the wrong type": delivery(numericID, 8, 1),
	} {
		if err := p.Handle(ctx, d); !stream.IsPermanent(err) {
			t.Errorf("%s: err = %v, want permanent", name, err)
		}
	}
	if err := db.Pool.QueryRow(ctx, `SELECT sequence FROM catalog_positions`).Scan(&seq); err != nil || seq != 5 {
		t.Fatalf("position after poison = %d (%v), want 5: poison is not finished here", seq, err)
	}
}

// counter reads search_projection_events_total{stream, outcome} from reg.
func counter(t *testing.T, reg *prometheus.Registry, streamName, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "search_projection_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "stream") == streamName && label(m, "outcome") == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
