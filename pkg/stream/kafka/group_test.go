package kafkastream_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestNewGroupValidates(t *testing.T) {
	t.Parallel()
	h := func(context.Context, stream.Delivery) error { return nil }
	seeds := []string{"127.0.0.1:1"}
	tests := map[string]kafkastream.GroupConfig{
		"no topic":              {Name: "g"},
		"no name":               {Topic: "T"},
		"dot in name":           {Topic: "T", Name: "a.b"},
		"negative deliver":      {Topic: "T", Name: "g", MaxDeliver: -1},
		"start time missing":    {Topic: "T", Name: "g", Deliver: stream.DeliverByStartTime},
		"negative start offset": {Topic: "T", Name: "g", Deliver: stream.DeliverByStartSequence, StartOffset: -1},
		"unknown policy":        {Topic: "T", Name: "g", Deliver: 42},
		"rebalance too short":   {Topic: "T", Name: "g", HandlerTimeout: time.Minute, RebalanceTimeout: time.Second},
	}
	for name, cfg := range tests {
		if _, err := kafkastream.NewGroup(seeds, cfg, h, nil); !errors.Is(err, stream.ErrInvalid) {
			t.Errorf("%s: NewGroup = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := kafkastream.NewGroup(seeds, kafkastream.GroupConfig{Topic: "T", Name: "g"}, nil, nil); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("nil handler: NewGroup = %v, want ErrInvalid", err)
	}
	if _, err := kafkastream.NewGroup(nil, kafkastream.GroupConfig{Topic: "T", Name: "g"}, h, nil); !errors.Is(err, stream.ErrInvalid) {
		t.Errorf("no seeds: NewGroup = %v, want ErrInvalid", err)
	}
}

func TestRunRefusesWrongPartitionCount(t *testing.T) {
	t.Parallel()
	k := setup(t, 4)
	cfg := testGroup(k.topic, "g")
	cfg.Partitions = 8
	g, err := kafkastream.NewGroup(k.seeds, cfg, func(context.Context, stream.Delivery) error { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Run(context.Background()); !errors.Is(err, stream.ErrPartitionsChanged) {
		t.Fatalf("Run = %v, want ErrPartitionsChanged", err)
	}
}

// versions publishes versions from..to of each key, interleaved across
// keys, with ID "<key>-v<version>" and the version as payload.
func versions(t *testing.T, k kafka, keys []string, from, to int) {
	t.Helper()
	var msgs []stream.Message
	for v := from; v <= to; v++ {
		for _, key := range keys {
			msgs = append(msgs, stream.Message{ID: fmt.Sprintf("%s-v%d", key, v), Key: key, Payload: []byte(strconv.Itoa(v))})
		}
	}
	for i, r := range k.pub.PublishAsync(context.Background(), msgs) {
		if r.Err != nil {
			t.Fatalf("publish %s: %v", msgs[i].ID, r.Err)
		}
	}
}

func keyNames(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("order-%d", i)
	}
	return keys
}

// orderCheck is an idempotent per-key store of versions: the next version
// of a key is applied, one already applied is a duplicate (allowed:
// at-least-once), anything else breaks per-key order.
type orderCheck struct {
	mu         sync.Mutex
	last       map[string]int
	applied    int
	duplicates int
	violations []string
}

func newOrderCheck() *orderCheck { return &orderCheck{last: map[string]int{}} }

func (o *orderCheck) apply(d stream.Delivery) {
	v, _ := strconv.Atoi(string(d.Payload))
	o.mu.Lock()
	defer o.mu.Unlock()
	switch last := o.last[d.Key]; {
	case v == last+1:
		o.last[d.Key] = v
		o.applied++
	case v <= last:
		o.duplicates++
	default:
		o.violations = append(o.violations, fmt.Sprintf("%s: version %d after %d", d.Key, v, last))
	}
}

// done reports nil once every key has all n versions applied, and any
// order violation as an error.
func (o *orderCheck) done(keys []string, n int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.violations) > 0 {
		return fmt.Errorf("per-key order broken: %v", o.violations)
	}
	for _, key := range keys {
		if o.last[key] != n {
			return fmt.Errorf("key %s at version %d of %d (applied %d in all)", key, o.last[key], n, o.applied)
		}
	}
	return nil
}

// TestPerKeyOrderAcrossInstances: two instances of one group on 8
// partitions, some handler calls failing once, one instance stopped in the
// middle; every key's versions reach the effect in order, and all of them.
func TestPerKeyOrderAcrossInstances(t *testing.T) {
	t.Parallel()
	const versionsPerKey = 30
	k := setup(t, 8)
	keys := keyNames(20)
	check := newOrderCheck()
	var calls atomic.Int64
	failed := sync.Map{}
	h := func(_ context.Context, d stream.Delivery) error {
		if n := calls.Add(1); n%7 == 0 {
			if _, again := failed.LoadOrStore(d.ID, true); !again {
				return errors.New("fails once")
			}
		}
		check.apply(d)
		return nil
	}
	a := k.start(t, testGroup(k.topic, "g"), h)
	k.start(t, testGroup(k.topic, "g"), h)
	versions(t, k, keys, 1, versionsPerKey/2)
	testinfra.Eventually(t, 20*time.Second, func() error {
		if c := calls.Load(); c < int64(len(keys)*versionsPerKey/4) {
			return fmt.Errorf("%d handler calls", c)
		}
		return nil
	})
	a.stop()
	versions(t, k, keys, versionsPerKey/2+1, versionsPerKey)
	testinfra.Eventually(t, 30*time.Second, func() error { return check.done(keys, versionsPerKey) })
	t.Logf("applied %d, duplicates %d", check.applied, check.duplicates)
}

// TestBacklogBeyondTheQueueIsDrained: a partition with many times more
// records than a worker queues (its fetching is paused and resumed over
// and over) is handled completely and in order.
func TestBacklogBeyondTheQueueIsDrained(t *testing.T) {
	t.Parallel()
	k := setup(t, 1)
	keys := keyNames(3)
	check := newOrderCheck()
	k.start(t, testGroup(k.topic, "g"), func(_ context.Context, d stream.Delivery) error { check.apply(d); return nil })
	versions(t, k, keys, 1, 2000)
	testinfra.Eventually(t, 60*time.Second, func() error { return check.done(keys, 2000) })
}
