package drill

import (
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

func TestPoisonKeySharesThePartition(t *testing.T) {
	for p := range 8 {
		k := poisonKey(p, 8)
		if got := stream.Partition(k, 8); got != p {
			t.Fatalf("poisonKey(%d, 8) = %s in partition %d", p, k, got)
		}
	}
}

func TestHandoverVictimsRunOnlyConsumerRoles(t *testing.T) {
	got := strings.Join(handoverVictims(), ",")
	want := "orders-consumer,payments-consumer-2,notifications-consumer-2,search-consumer-2,catalog-invalidation-2"
	if got != want {
		t.Fatalf("victims %s, want %s", got, want)
	}
	for _, g := range handoverGroups {
		if g.Victim == g.Survivor {
			t.Fatalf("%s/%s: the victim survives", g.Stream, g.Group)
		}
	}
}

func TestEvalHandoverGroup(t *testing.T) {
	g := handoverGroup{"ORDERS", "search", "search-consumer-2", "search"}
	kill := []partitionState{{AckFloor: 10}, {AckFloor: 20}, {AckFloor: 30}}
	cases := []struct {
		name   string
		gs     *handoverGroupState
		killed bool
		absent bool
		down   time.Duration
		ok     bool
		says   string
	}{
		{"moved on", &handoverGroupState{survivorUp: true, survivorBefore: 5, survivorAfter: 50, atKill: kill,
			atHeal: []partitionState{{AckFloor: 15}, {AckFloor: 20}, {AckFloor: 31}}}, true, false, 15 * time.Second, true, "2 moved on, 1 idle"},
		{"held within AckWait", &handoverGroupState{survivorUp: true, survivorAfter: 9, atKill: kill,
			atHeal: []partitionState{{AckFloor: 15}, {AckFloor: 20, AckPending: 1, Pending: 3}, {AckFloor: 31}}}, true, false, 15 * time.Second, true, "1 held by the dead instance"},
		{"stuck past AckWait", &handoverGroupState{survivorUp: true, survivorAfter: 9, atKill: kill,
			atHeal: []partitionState{{AckFloor: 15}, {AckFloor: 20, AckPending: 1}, {AckFloor: 31}}}, true, false, 40 * time.Second, false, "1 did not move"},
		{"survivor handled nothing", &handoverGroupState{survivorUp: true, survivorBefore: 7, survivorAfter: 7, atKill: kill,
			atHeal: []partitionState{{AckFloor: 10}, {AckFloor: 20}, {AckFloor: 30}}}, true, false, 15 * time.Second, false, "handled 0"},
		{"no survivor", &handoverGroupState{}, true, false, 15 * time.Second, false, "no survivor answered"},
		{"one instance", nil, false, true, 15 * time.Second, false, "was not running (one instance)"},
	}
	for _, c := range cases {
		v := evalHandoverGroup(g, c.gs, c.killed, c.absent, c.down, 30*time.Second)
		if v.ok != c.ok || !strings.Contains(v.evidence, c.says) {
			t.Errorf("%s: ok %t, %q; want %t and %q", c.name, v.ok, v.evidence, c.ok, c.says)
		}
	}
}

func TestCountAuditCountsOnlyTheRunsDLQDiscards(t *testing.T) {
	out := `{"time":"x","level":"INFO","msg":"service starting"}
{"id":3,"at":"2026-12-07T00:00:00Z","actor":"chaos-abc","action":"stream_dlq.discard","target":"ORDERS_DLQ/5","reason":"r"}
{"id":2,"at":"2026-12-07T00:00:00Z","actor":"someone","action":"stream_dlq.discard","target":"ORDERS_DLQ/4","reason":"r"}
{"id":1,"at":"2026-12-07T00:00:00Z","actor":"chaos-abc","action":"jobqueue.purge","target":"q","reason":"r"}
`
	if n := countAudit(out, "chaos-abc"); n != 1 {
		t.Fatalf("countAudit = %d, want 1", n)
	}
}

func TestParseCheckReadsTheReportAfterTheLogLines(t *testing.T) {
	out := `{"level":"INFO","msg":"replay started"}
{
  "stream": "CATALOG",
  "events": 240,
  "diff": {"live_documents": 200, "rebuilt_documents": 200, "mismatched": 1, "missing": 0, "extra": 2, "in_flight": 3}
}
`
	rep, err := parseCheck(out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stream != "CATALOG" || rep.Events != 240 || rep.Diff.Mismatched != 1 || rep.Diff.Extra != 2 || rep.Diff.InFlight != 3 {
		t.Fatalf("parsed %+v", rep)
	}
	if _, err := parseCheck(`{"level":"ERROR"}`); err == nil {
		t.Fatal("a log line parsed as a report")
	}
}

func TestPoisonBudgetIsTheRetryBudget(t *testing.T) {
	if b := poisonBudget(); b < 80*time.Second || b > 82*time.Second {
		t.Fatalf("poisonBudget = %s, want about 81s (service.ConsumerRetries)", b)
	}
}

// TestResentMailCountsOnlyOrdersWhoseMailsGrew: only an order whose e-mails grew since the reset was
// sent again; one whose count fell left the sink's window (it keeps the
// newest 10,000); the run's own orders are the shared #3 row's.
func TestResentMailCountsOnlyOrdersWhoseMailsGrew(t *testing.T) {
	t.Parallel()
	before := map[string]int{"a": 2, "b": 2, "c": 1, "mine": 1}
	now := map[string]int{"a": 2, "b": 3, "c": 0, "mine": 2}
	orders, mails, evicted, more := resentMail(before, now, map[string]bool{"mine": true})
	if orders != 3 || mails != 5 || evicted != 1 || len(more) != 1 || more[0] != "b 2→3" {
		t.Fatalf("resentMail = %d orders, %d mails, %d evicted, %v", orders, mails, evicted, more)
	}
}

// TestReplayExtendsTheConvergeDeadline: a replay's deadline grows with
// the retained history it re-reads (game-day seed 2 did not converge
// within 3 min after a replay of 64,867 events), and the run's
// extensions add up with their reasons.
func TestReplayExtendsTheConvergeDeadline(t *testing.T) {
	if got := replayDeadline(0); got != 0 {
		t.Errorf("replayDeadline(0) = %s, want 0", got)
	}
	if got, want := replayDeadline(64_867), 324*time.Second; got < want || got > want+time.Second {
		t.Errorf("replayDeadline(64867) = %s, want about %s (at %d/s)", got, want, replayReadRate)
	}
	r := &Run{}
	r.ExtendDeadline(time.Minute, "a")
	r.ExtendDeadline(30*time.Second, "b")
	if d, why := r.deadlineExtension(); d != 90*time.Second || why != "a; b" {
		t.Errorf("deadlineExtension() = %s %q, want 1m30s \"a; b\"", d, why)
	}
}

// TestHandoverFaultOutlastsThePinTTL: partition-handover's fault window is
// lengthened past the pin TTL (which is AckWait), so that a dead instance's
// partitions can be taken over before the heal, and the load keeps
// MinLoadAround on each side; a longer window asked for is kept.
func TestHandoverFaultOutlastsThePinTTL(t *testing.T) {
	d := partitionHandover()
	if d.MinFaultFor <= handoverAckWait {
		t.Fatalf("MinFaultFor %s, want more than the pin TTL %s", d.MinFaultFor, handoverAckWait)
	}
	for _, tt := range []struct {
		in, want   Config
		lengthened bool
	}{
		{Config{Duration: time.Minute, FaultFor: 30 * time.Second}, Config{Duration: 75 * time.Second, FaultFor: 45 * time.Second}, true},
		{Config{Duration: 3 * time.Minute, FaultFor: 30 * time.Second}, Config{Duration: 3 * time.Minute, FaultFor: 45 * time.Second}, true},
		{Config{Duration: 2 * time.Minute, FaultFor: time.Minute}, Config{Duration: 2 * time.Minute, FaultFor: time.Minute}, false},
	} {
		got := tt.in
		if changed := got.fit(d); changed != tt.lengthened || got.Duration != tt.want.Duration || got.FaultFor != tt.want.FaultFor {
			t.Errorf("fit(%v/%v) = %v/%v (changed %v), want %v/%v", tt.in.Duration, tt.in.FaultFor, got.Duration, got.FaultFor, changed,
				tt.want.Duration, tt.want.FaultFor)
		}
	}
	if changed := (&Config{Duration: time.Minute, FaultFor: time.Second}).fit(relayKilled()); changed {
		t.Error("a drill without a minimum had its window changed")
	}
}
