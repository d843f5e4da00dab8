package stream_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestBatchGroupSpreadsPartitionsOverInstances: instance A of a batch
// group starts alone and takes every partition's pin; B starts later.
// While events keep coming, A hands partitions over until each holds its
// share, B handles events, and every key's events are still applied once
// and in order. Without the spreading B only stands by: the broker keeps
// each partition pinned to the instance that pulls it.
func TestBatchGroupSpreadsPartitionsOverInstances(t *testing.T) {
	t.Parallel()
	const keys, partitions = 40, 8
	nt, name, pub := setupStream(t, partitions)
	db := testinfra.Postgres(t, batchMigrations)
	rec := &recorder{}
	regs := map[string]*prometheus.Registry{"A": prometheus.NewRegistry(), "B": prometheus.NewRegistry()}
	run := func(instance string, js jetstream.JetStream) {
		cfg := batchGroup(name, "proj")
		cfg.Registerer = regs[instance]
		start(t, newBatchGroup(t, js, cfg, applier(db.Pool, "proj", instance, rec, nil)))
	}
	pinned := func(instance string) float64 {
		return counter(t, regs[instance], "stream_partitions_pinned", map[string]string{"group": "proj"})
	}

	run("A", nt.JS)
	var p published
	publishVersions(t, pub, &p, keys, 1, 3)
	waitEffects(t, db.Pool, keys*3, 30*time.Second)
	if got := pinned("A"); got != partitions {
		t.Fatalf("A alone holds %v partitions, want all %d", got, partitions)
	}

	_, js2 := connect(t, nt.URL)
	run("B", js2)
	// Events keep coming while the instances settle: a version of every
	// key every 100ms.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Go(func() {
		for v := 4; ; v++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			mu.Lock()
			publishVersions(t, pub, &p, keys, v, v)
			mu.Unlock()
		}
	})
	testinfra.Eventually(t, 60*time.Second, func() error {
		a, b := pinned("A"), pinned("B")
		if a > partitions/2 || b < partitions/2-1 {
			return fmt.Errorf("A holds %v partitions, B %v; want about half each", a, b)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	waitEffects(t, db.Pool, len(p.ids), 60*time.Second)
	checkEffects(t, db.Pool, &p)
	byB := 0
	for _, c := range rec.snapshot() {
		if c.instance == "B" {
			byB += len(c.ids)
		}
	}
	t.Logf("A holds %v partitions, B %v; B applied %d of %d events", pinned("A"), pinned("B"), byB, len(p.ids))
	if byB == 0 {
		t.Error("B handled nothing: the partitions stayed with A")
	}
}
