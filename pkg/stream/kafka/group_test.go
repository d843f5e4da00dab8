package kafkastream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
	"github.com/shopfloor/shopfloor/pkg/stream/streamtest"
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

// versions publishes versions from..to of each key (streamtest.Versions).
func versions(t *testing.T, k kafka, keys []string, from, to int) {
	t.Helper()
	msgs := streamtest.Versions(keys, from, to)
	for i, r := range k.pub.PublishAsync(context.Background(), msgs) {
		if r.Err != nil {
			t.Fatalf("publish %s: %v", msgs[i].ID, r.Err)
		}
	}
}

// The shared expectations (per-key order across instances, dead letters,
// infrastructure errors) run in TestConformance; the tests here add what
// is Kafka's own.

// TestBacklogBeyondTheQueueIsDrained: a partition with many times more
// records than a worker queues (its fetching is paused and resumed over
// and over) is handled completely and in order.
func TestBacklogBeyondTheQueueIsDrained(t *testing.T) {
	t.Parallel()
	k := setup(t, 1)
	keys := streamtest.Keys(3)
	check := streamtest.NewOrderCheck()
	k.start(t, testGroup(k.topic, "g"), func(_ context.Context, d stream.Delivery) error { check.Apply(d); return nil })
	versions(t, k, keys, 1, 2000)
	testinfra.Eventually(t, 60*time.Second, func() error { return check.Done(keys, 2000) })
}
