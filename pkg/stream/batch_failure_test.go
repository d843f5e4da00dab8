package stream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestBatchDeadLettersMidBatch: a permanent failure and a spent retry
// budget in the middle of a batch send those two messages to the
// dead-letter stream with their payload and headers; every other message
// is applied, in order.
func TestBatchDeadLettersMidBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newDLQSetup(t, 1)
	db := testinfra.Postgres(t, batchMigrations)
	rec := &recorder{}
	var p published
	publishVersions(t, s.pub, &p, 3, 1, 4) // 12 messages
	poison, flaky := p.ids[3], p.ids[7]
	cfg := batchGroup(s.name, "notify")
	cfg.MaxDeliver = 3
	cfg.Registerer = s.reg
	start(t, newBatchGroup(t, s.nt.JS, cfg, applier(db.Pool, "notify", "A", rec, func(ds []stream.Delivery) error {
		for _, d := range ds {
			switch d.ID {
			case poison:
				return fmt.Errorf("decode %s: %w", d.ID, stream.Permanent(errors.New("unexpected end of JSON input")))
			case flaky:
				return errors.New("smtp: 451 try again later")
			}
		}
		return nil
	})))
	waitEffects(t, db.Pool, len(p.ids)-2, 30*time.Second)
	var dls []stream.DeadLetter
	testinfra.Eventually(t, 10*time.Second, func() error {
		var err error
		dls, err = s.dlq.List(ctx, "notify", 10)
		if err == nil && len(dls) != 2 {
			err = fmt.Errorf("%d dead letters", len(dls))
		}
		return err
	})
	es := checkEffects(t, db.Pool, &p, poison, flaky)
	want := slices.DeleteFunc(slices.Clone(p.ids), func(id string) bool { return id == poison || id == flaky })
	if len(es) != len(want) {
		t.Fatalf("%d effects for %d events", len(es), len(want))
	}
	for i, e := range es {
		if e.eventID != want[i] {
			t.Fatalf("effect %d is %s, want %s (stream order)", i, e.eventID, want[i])
		}
	}
	for _, tc := range []struct {
		dl       stream.DeadLetter
		id       string
		class    string
		attempts int
		err      string
	}{
		{dls[0], poison, "permanent", 1, "decode " + poison + ": permanent: unexpected end of JSON input"},
		{dls[1], flaky, "exhausted", 3, "smtp: 451 try again later"},
	} {
		dl, ack := tc.dl, p.acks[tc.id]
		if dl.EventID != tc.id || dl.ErrorClass != tc.class || dl.Attempts != tc.attempts || dl.Error != tc.err ||
			dl.OriginalSeq != ack.Sequence || dl.OriginalSubject != stream.Subject(s.name, 0) || string(dl.Payload) != "payload of "+tc.id {
			t.Errorf("dead letter = %+v, want %s %s after %d attempts (%q)", dl, tc.id, tc.class, tc.attempts, tc.err)
		}
		for _, h := range []string{"Version", "Event-Type", "traceparent", stream.HeaderKey} {
			if dl.Headers[h] == "" {
				t.Errorf("dead letter %s lost header %s: %v", tc.id, h, dl.Headers)
			}
		}
		if _, ok := dl.Headers["Nats-Pin-Id"]; ok {
			t.Errorf("dead letter %s carries the broker's pin header", tc.id)
		}
		if _, err := time.Parse(time.RFC3339, dl.Headers[stream.HeaderDLQFirstFailure]); err != nil {
			t.Errorf("dead letter %s: first failure header: %v", tc.id, err)
		}
	}
	for class, want := range map[string]float64{"permanent": 1, "exhausted": 1} {
		if got := counter(t, s.reg, "stream_dead_lettered_total", map[string]string{"group": "notify", "class": class}); got != want {
			t.Errorf("dead lettered %s = %v, want %v", class, got, want)
		}
	}
	poisonCalls := 0
	for _, c := range rec.snapshot() {
		if len(c.ids) == 1 && c.ids[0] == poison {
			poisonCalls++
		}
	}
	if poisonCalls != 1 {
		t.Errorf("the poison message was handled alone %d times, want 1 (no retries for Permanent)", poisonCalls)
	}
}

// TestBatchStopHandsBackInOrder: a stopping instance hands back the batch
// it holds and unpins the partition, so another instance applies it at
// once, in order. AckWait and the pin timeout are 30s here: without the
// hand-back and the unpin the second instance would wait that long.
func TestBatchStopHandsBackInOrder(t *testing.T) {
	t.Parallel()
	nt, name, pub := setupStream(t, 1)
	db := testinfra.Postgres(t, batchMigrations)
	rec := &recorder{}
	var p published
	publishVersions(t, pub, &p, 2, 1, 5) // 10 messages
	cfg := batchGroup(name, "proj")
	cfg.AckWait = 30 * time.Second
	holding := make(chan []string, 1)
	var once sync.Once
	a := start(t, newBatchGroup(t, nt.JS, cfg, func(ctx context.Context, ds []stream.Delivery) error {
		once.Do(func() {
			ids := make([]string, len(ds))
			for i, d := range ds {
				ids[i] = d.ID
			}
			holding <- ids
		})
		<-ctx.Done() // busy until the group stops
		return ctx.Err()
	}))
	var held []string
	select {
	case held = <-holding:
	case <-time.After(15 * time.Second):
		t.Fatal("instance A got no batch")
	}
	if len(held) < 2 {
		t.Errorf("instance A held %v, want a batch", held)
	}
	a.stop()

	start(t, newBatchGroup(t, nt.JS, cfg, applier(db.Pool, "proj", "B", rec, nil)))
	waitEffects(t, db.Pool, len(p.ids), 15*time.Second)
	es := checkEffects(t, db.Pool, &p)
	if len(es) != len(p.ids) {
		t.Fatalf("%d effects for %d events", len(es), len(p.ids))
	}
	for i, e := range es {
		if e.eventID != p.ids[i] || e.instance != "B" {
			t.Fatalf("effect %d is %s by %s, want %s by B", i, e.eventID, e.instance, p.ids[i])
		}
	}
	for _, c := range rec.snapshot() {
		for i, id := range c.ids {
			if slices.Contains(held, id) && c.attempts[i] != 2 {
				t.Errorf("%v: %s handed back once should arrive as delivery 2", c, id)
			}
		}
	}
}

// TestBatchInstanceDiesMidBatch: instance A gets stuck holding a batch
// while events keep coming; the broker moves the partition's pin to
// instance B, which is given later messages of the partition while A still
// holds earlier ones (the moment a consumer without the gate would break
// the order). Then A dies (its connection drops). B waits until A's
// messages are redelivered (AckWait) and applies everything: nothing is
// lost, no effect twice, every key in order.
func TestBatchInstanceDiesMidBatch(t *testing.T) {
	t.Parallel()
	const keys, partitions = 12, 2
	nt, name, pub := setupStream(t, partitions)
	db := testinfra.Postgres(t, batchMigrations)
	rec := &recorder{}
	cfg := batchGroup(name, "proj")

	ncA, jsA := connect(t, nt.URL)
	cfgA := cfg
	cfgA.HandlerTimeout = time.Minute // A stays stuck until it dies
	var (
		dead    atomic.Bool
		once    sync.Once
		applied atomic.Int64
	)
	holding := make(chan []stream.Delivery, 1)
	applyA := applier(db.Pool, "proj", "A", rec, nil)
	a := start(t, newBatchGroup(t, jsA, cfgA, func(ctx context.Context, ds []stream.Delivery) error {
		if applied.Load() > 0 && len(ds) > 1 {
			stuck := false
			once.Do(func() {
				stuck = true
				holding <- ds
			})
			if stuck {
				<-ctx.Done() // stuck with this batch until it dies
				return ctx.Err()
			}
		}
		if dead.Load() {
			return errors.New("dead")
		}
		err := applyA(ctx, ds)
		if err == nil {
			applied.Add(1)
		}
		return err
	}))
	var p published
	round := func(n int) { // n more versions of every key
		t.Helper()
		v := len(p.ids) / keys
		publishVersions(t, pub, &p, keys, v+1, v+n)
	}
	round(1)
	waitEffects(t, db.Pool, 1, 15*time.Second)
	var held []stream.Delivery
	for held == nil {
		round(1)
		select {
		case held = <-holding:
		case <-time.After(2 * time.Second):
		}
	}
	stuck := held[0].Partition
	before := consumerInfo(t, nt.JS, name, "proj", stuck)
	if len(before.PriorityGroups) != 1 || before.PriorityGroups[0].PinnedClientID == "" {
		t.Fatalf("partition %d not pinned: %+v", stuck, before.PriorityGroups)
	}

	_, jsB := connect(t, nt.URL)
	start(t, newBatchGroup(t, jsB, cfg, applier(db.Pool, "proj", "B", rec, nil)))
	round(3)
	// A stops pulling while stuck: after PinnedTTL the broker pins the
	// partition to B and gives B later messages while A holds earlier ones.
	testinfra.Eventually(t, 20*time.Second, func() error {
		info := consumerInfo(t, nt.JS, name, "proj", stuck)
		if pin := info.PriorityGroups[0].PinnedClientID; pin == before.PriorityGroups[0].PinnedClientID || pin == "" {
			return fmt.Errorf("partition %d still pinned to A", stuck)
		}
		if info.NumAckPending <= before.NumAckPending {
			return fmt.Errorf("B holds nothing yet (%d pending, A holds %d)", info.NumAckPending, before.NumAckPending)
		}
		return nil
	})

	dead.Store(true)
	ncA.Close() // A dies: no more acks, naks or heartbeats from it
	a.stop()
	round(3) // more events during the take-over
	waitEffects(t, db.Pool, len(p.ids), 60*time.Second)
	es := checkEffects(t, db.Pool, &p)
	by := map[string]string{}
	for _, e := range es {
		by[e.eventID] = e.instance
	}
	for _, d := range held {
		if by[d.ID] != "B" {
			t.Errorf("%s of the batch A died with applied by %q, want B", d.ID, by[d.ID])
		}
	}
	t.Logf("A died holding %d messages of partition %d; %d effects", len(held), stuck, len(es))
}

// TestBatchCrashLoopDeadLettersTheOldestOnly: with a budget of one
// delivery, the batch of an instance that died comes back to another
// instance over budget. The oldest message, the one that was being handled,
// goes to the dead-letter stream as exhausted without a handler call; the
// ones that were only held behind it are handled one at a time.
func TestBatchCrashLoopDeadLettersTheOldestOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newDLQSetup(t, 1)
	db := testinfra.Postgres(t, batchMigrations)
	rec := &recorder{}
	var p published
	publishVersions(t, s.pub, &p, 5, 1, 1)
	cfg := batchGroup(s.name, "worker")
	cfg.MaxDeliver = 1

	ncA, jsA := connect(t, s.nt.URL)
	holding := make(chan int, 1)
	var once sync.Once
	cfgA := cfg
	cfgA.HandlerTimeout = time.Minute // A stays blocked until it dies
	a := start(t, newBatchGroup(t, jsA, cfgA, func(ctx context.Context, ds []stream.Delivery) error {
		once.Do(func() { holding <- len(ds) })
		<-ctx.Done()
		return ctx.Err()
	}))
	select {
	case n := <-holding:
		t.Logf("A died holding %d messages", n)
	case <-time.After(15 * time.Second):
		t.Fatal("instance A got no batch")
	}
	ncA.Close()
	a.stop()

	start(t, newBatchGroup(t, s.nt.JS, cfg, applier(db.Pool, "worker", "B", rec, nil)))
	waitEffects(t, db.Pool, len(p.ids)-1, 20*time.Second)
	checkEffects(t, db.Pool, &p, p.ids[0])
	testinfra.Eventually(t, 10*time.Second, func() error {
		dls, err := s.dlq.List(ctx, "worker", 10)
		if err == nil && (len(dls) != 1 || dls[0].EventID != p.ids[0] || dls[0].ErrorClass != "exhausted" || dls[0].Attempts != 2) {
			err = fmt.Errorf("dead letters %+v, want %s exhausted after 2 deliveries", dls, p.ids[0])
		}
		return err
	})
	for _, c := range rec.snapshot() {
		if slices.Contains(c.ids, p.ids[0]) {
			t.Errorf("%v: the over-budget oldest message reached the handler", c)
		}
		if len(c.ids) != 1 {
			t.Errorf("%v: redelivered messages should be handled one at a time", c)
		}
	}
}
