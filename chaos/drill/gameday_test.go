package drill

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/chaos/invariant"
)

// relays are the processes relay-killed and broker-down both restart.
var relays = []string{"orders-relay", "payments-relay"}

// fakes are candidate drills with the resources of the real ones.
func fakes() []Drill {
	return []Drill{
		{Name: "relay-killed", Resource: "relays", Processes: relays}, {Name: "broker-down", Resource: "nats", Processes: relays},
		{Name: "redis-down", Resource: "redis"},
		{Name: "psp-errors", Resource: "psp"}, {Name: "psp-timeout-after-charge", Resource: "psp"},
		{Name: "worker-killed", Resource: "workers"}, {Name: "consumer-killed", Resource: "consumers"},
	}
}

func overlap(a, b Step) bool { return a.At < b.End() && b.At < a.End() }

func TestScheduleIsReproducibleAndHealsInsideTheWindow(t *testing.T) {
	t.Parallel()
	for _, window := range []time.Duration{5 * time.Second, 30 * time.Second, time.Minute, 150 * time.Second} {
		distinct := map[string]bool{}
		byName := map[string]Drill{}
		for _, d := range fakes() {
			byName[d.Name] = d
		}
		for seed := int64(1); seed <= 300; seed++ {
			steps := Schedule(seed, window, fakes())
			shuffled := fakes()
			rand.New(rand.NewPCG(uint64(seed), 1)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if again := Schedule(seed, window, shuffled); !reflect.DeepEqual(steps, again) {
				t.Fatalf("window %s seed %d: not reproducible:\n%v\n%v", window, seed, steps, again)
			}
			distinct[fmtSteps(steps)] = true
			if len(steps) < 3 || len(steps) > 5 {
				t.Errorf("window %s seed %d: %d steps, want 3–5: %v", window, seed, len(steps), steps)
			}
			overlapping := false
			for i, s := range steps {
				if s.At < 0 || s.For <= 0 || s.End() > window*9/10 {
					t.Errorf("window %s seed %d: step %v does not heal inside 90%% of the window", window, seed, s)
				}
				for _, o := range steps[i+1:] {
					if !overlap(s, o) {
						continue
					}
					overlapping = true
					if byName[s.Drill].clashes(byName[o.Drill]) {
						t.Errorf("window %s seed %d: %v and %v overlap on %s or a process", window, seed, s, o, s.Resource)
					}
				}
			}
			if !overlapping {
				t.Errorf("window %s seed %d: no two steps overlap: %v", window, seed, steps)
			}
		}
		if len(distinct) < 290 {
			t.Errorf("window %s: 300 seeds gave only %d distinct schedules", window, len(distinct))
		}
	}
	if !reflect.DeepEqual(Schedule(1, time.Minute, fakes()), Schedule(1, time.Minute, fakes())) ||
		reflect.DeepEqual(Schedule(1, time.Minute, fakes()), Schedule(2, time.Minute, fakes())) {
		t.Error("seed 1 twice must match and differ from seed 2")
	}
	if s := Schedule(1, time.Minute, nil); s != nil {
		t.Errorf("no candidates: %v", s)
	}
	// One resource: the steps never overlap.
	one := []Drill{{Name: "psp-errors", Resource: "psp"}, {Name: "psp-timeout-after-charge", Resource: "psp"}}
	for seed := int64(1); seed <= 50; seed++ {
		steps := Schedule(seed, time.Minute, one)
		for i, s := range steps {
			for _, o := range steps[i+1:] {
				if overlap(s, o) {
					t.Fatalf("seed %d: one resource, yet %v overlaps %v", seed, s, o)
				}
			}
		}
	}
}

func fmtSteps(steps []Step) string {
	var b strings.Builder
	for _, s := range steps {
		b.WriteString(s.String() + ";")
	}
	return b.String()
}

// TestScheduleKeepsProcessSharersApart: two faults on different resources
// that restart the same processes never overlap (one's heal would start
// what the other keeps down).
func TestScheduleKeepsProcessSharersApart(t *testing.T) {
	t.Parallel()
	cands := []Drill{{Name: "relay-killed", Resource: "relays", Processes: relays}, {Name: "broker-down", Resource: "nats", Processes: relays}}
	for seed := int64(1); seed <= 200; seed++ {
		steps := Schedule(seed, time.Minute, cands)
		for i, s := range steps {
			for _, o := range steps[i+1:] {
				if overlap(s, o) {
					t.Fatalf("seed %d: %v and %v overlap, both restart %v", seed, s, o, relays)
				}
			}
		}
	}
}

// TestScheduleOfTheRealDrills: the drills in All() marked GameDay give a
// schedule (they span at least two resources), every step names one of
// them, and every GameDay drill names its Resource.
func TestScheduleOfTheRealDrills(t *testing.T) {
	t.Parallel()
	cands := gameDayCandidates()
	byName := map[string]Drill{}
	for _, d := range cands {
		if d.Resource == "" {
			t.Errorf("%s: GameDay without a Resource", d.Name)
		}
		if d.Name == GameDayName {
			t.Error("the game day is its own candidate")
		}
		byName[d.Name] = d
	}
	steps := Schedule(1, time.Minute, cands)
	if len(steps) < 2 {
		t.Fatalf("schedule of %d candidates: %v", len(cands), steps)
	}
	for _, s := range steps {
		if byName[s.Drill].Resource != s.Resource {
			t.Errorf("step %v: not a candidate's", s)
		}
	}
}

// fakeDrill counts its Inject and Heal calls; its Inject fails when fail
// is set.
type fakeDrill struct {
	injects, heals atomic.Int32
	fail           bool
}

func (f *fakeDrill) drill(name, resource string) Drill {
	return Drill{Name: name, Resource: resource, GameDay: true, Fault: "fake " + name, AllowPaymentFailed: name == "b",
		Inject: func(context.Context, *Run) error {
			f.injects.Add(1)
			if f.fail {
				return errors.New("the fake fault could not be injected")
			}
			return nil
		},
		Heal: func(context.Context, *Run) error { f.heals.Add(1); return nil },
	}
}

// TestGameDayRun runs the nemesis over two fake drills on different
// resources (the schedule always picks both: the first two steps
// overlap on different resources) without waiting for the step times:
// every step is injected and healed once and the effect row holds; when
// one Inject fails, the row is VIOLATED and says which, and the failed
// step is healed all the same.
func TestGameDayRun(t *testing.T) {
	t.Parallel()
	for _, fail := range []bool{false, true} {
		t.Run(map[bool]string{false: "every inject works", true: "an inject fails"}[fail], func(t *testing.T) {
			t.Parallel()
			a, b := &fakeDrill{}, &fakeDrill{fail: fail}
			cands := []Drill{a.drill("a", "ra"), b.drill("b", "rb")}
			noWait := func(ctx context.Context, _ time.Duration) bool { return ctx.Err() == nil }
			gd := gameDay(func() []Drill { return cands }, noWait)
			r := &Run{Cfg: Config{FaultFor: time.Minute, Seed: 7, Log: io.Discard}, Values: map[string]float64{}, healed: make(chan struct{})}
			if err := gd.Inject(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			<-r.nemesis.done // every step ran (noWait)
			if err := gd.Heal(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			if !r.AllowPaymentFailed {
				t.Error("b allows payment_failed and was picked: the run must too")
			}
			want := Schedule(7, time.Minute, cands)
			nb := int32(0)
			for _, s := range want {
				if s.Drill == "b" {
					nb++
				}
			}
			if got := b.injects.Load(); got != nb || b.heals.Load() != nb || a.injects.Load() != a.heals.Load() || nb == 0 {
				t.Errorf("b: %d injects, %d heals, want %d each; a: %d injects, %d heals", got, b.heals.Load(), nb, a.injects.Load(), a.heals.Load())
			}
			res := gd.Effect(r)
			t.Logf("| %s | %s | %s |", res.Invariant, map[bool]string{true: "held", false: "VIOLATED"}[res.Held], res.Evidence)
			if res.Held == fail {
				t.Fatalf("effect held = %t with a failing inject = %t: %s", res.Held, fail, res.Evidence)
			}
			if fail && !strings.Contains(res.Evidence, "b (rb): inject failed, healed: inject FAILED: the fake fault could not be injected") {
				t.Errorf("evidence does not name the failed step: %s", res.Evidence)
			}
			if !strings.HasPrefix(res.Evidence, "seed 7: ") || res.Counts["scheduled"] != len(want) {
				t.Errorf("evidence %q, counts %v", res.Evidence, res.Counts)
			}
			rep := Report{Drill: gd, Cfg: r.Cfg, Results: []invariant.Result{res}}
			rep.finish(r)
			if len(rep.Schedule) != len(want) || rep.Schedule[0].Drill != want[0].Drill {
				t.Errorf("report schedule %v, want %v", rep.Schedule, want)
			}
			if !strings.Contains(strings.Join(rep.Timeline, "\n"), "game day: inject b (rb)") {
				t.Errorf("timeline lacks the injects:\n%s", strings.Join(rep.Timeline, "\n"))
			}
		})
	}
}

// TestGameDayHealAfterCancel: when the window closes before the steps
// ran, Heal heals what was injected and the effect row is VIOLATED.
func TestGameDayHealAfterCancel(t *testing.T) {
	t.Parallel()
	a, b := &fakeDrill{}, &fakeDrill{}
	cands := []Drill{a.drill("a", "ra"), b.drill("b", "rb")}
	never := func(ctx context.Context, _ time.Duration) bool { <-ctx.Done(); return false }
	gd := gameDay(func() []Drill { return cands }, never)
	r := &Run{Cfg: Config{FaultFor: time.Minute, Seed: 3, Log: io.Discard}, Values: map[string]float64{}, healed: make(chan struct{})}
	if err := gd.Inject(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if err := gd.Heal(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if a.injects.Load()+b.injects.Load() != 0 {
		t.Error("a step ran although its time never came")
	}
	if res := gd.Effect(r); res.Held || !strings.Contains(res.Evidence, "not started") {
		t.Errorf("effect %+v", res)
	}
	// Heal without Inject (the drill failed before the window) is safe.
	if err := gd.Heal(context.Background(), &Run{Cfg: Config{Log: io.Discard}}); err != nil {
		t.Error(err)
	}
}
