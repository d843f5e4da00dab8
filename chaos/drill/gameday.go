package drill

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/chaos/invariant"
)

// GameDayName is the game day's drill name.
const GameDayName = "game-day"

// gameDayDrills are the drills of the game day: overlapping faults from a seeded schedule.
func gameDayDrills() []Drill { return []Drill{gameDay(gameDayCandidates, sleep)} }

// gameDayCandidates are the drills the nemesis may pick: every drill of
// All with GameDay set, except the game day itself. Read when the game
// day runs, so drills added later take part without a change here.
func gameDayCandidates() []Drill {
	var out []Drill
	for _, d := range All() {
		if d.GameDay && d.Name != GameDayName {
			out = append(out, d)
		}
	}
	return out
}

// Step is one fault of the game day's schedule: the drill whose Inject
// runs At after the fault window opened and whose Heal runs For later.
// Injected, Healed and Err record what happened when it ran.
type Step struct {
	Drill    string
	Resource string
	At, For  time.Duration

	Injected, Healed bool
	// InjectedAt and HealedAt are when the Inject and the Heal that
	// worked returned, after the window opened (0: did not happen). They
	// lag At and End() by the time the drills' Injects and Heals take,
	// since the steps' Injects and Heals run one at a time.
	InjectedAt, HealedAt time.Duration
	// Err says what failed (the Inject, the Heal, or the step never ran).
	Err string
}

// End is when the step heals, after the fault window opened.
func (s Step) End() time.Duration { return s.At + s.For }

// Outcome says in words what happened to the step.
func (s Step) Outcome() string {
	var out string
	switch {
	case s.Injected && s.Healed:
		out = "injected and healed"
	case s.Injected:
		out = "injected, not healed"
	case s.Healed:
		out = "inject failed, healed"
	default:
		out = "not injected"
	}
	if s.Err != "" {
		out += ": " + s.Err
	}
	return out
}

// String is the step's timeline line: "10s–40s redis-down (redis): outcome".
func (s Step) String() string {
	return fmt.Sprintf("%s–%s %s (%s): %s", s.At, s.End(), s.Drill, s.Resource, s.Outcome())
}

// clashes reports whether d and o must not overlap in a game day: they
// break the same resource, or both kill or start one process (one's heal
// would start what the other keeps down).
func (d Drill) clashes(o Drill) bool {
	if d.Resource == o.Resource {
		return true
	}
	for _, p := range d.Processes {
		if slices.Contains(o.Processes, p) {
			return true
		}
	}
	return false
}

// Schedule draws the game day's schedule from seed: 3 to 5 faults among
// candidates (sorted by name first, so their order does not matter) inside
// a fault window of the given length. Every step starts at or after 0 and
// heals by 90% of the window (the rest is left for the heals to finish
// before the game day's own Heal); each lasts a fifth to a half of the
// window; the first two overlap (when the candidates span at least two
// resources); two steps that clash (the same Resource, or a process both
// kill or start) never overlap and are at least 2 s (or 2 ticks) apart.
// Times are whole seconds, or thirtieths of a window shorter than 30 s. The same seed, window and candidates give the
// same schedule (math/rand/v2's PCG is specified); it is sorted by start.
// With fewer candidate resources fewer steps may fit; with no candidate
// or no window it is empty.
func Schedule(seed int64, window time.Duration, candidates []Drill) []Step {
	cands := slices.Clone(candidates)
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].Name < cands[j].Name })
	cands = slices.CompactFunc(cands, func(a, b Drill) bool { return a.Name == b.Name })
	if len(cands) == 0 || window <= 0 {
		return nil
	}
	tick := time.Second
	if window < 30*time.Second {
		tick = max(window/30, 1)
	}
	n := int(window / tick)
	if n < 10 {
		return nil
	}
	last := n - n/10 // every step heals by here
	minLen, maxLen := max(n/5, 1), max(n/2, 1)
	gap := max(int((2*time.Second)/tick), 1)
	if gap > n/10 {
		gap = max(n/10, 1)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)) //nolint:gosec // G404: a reproducible schedule, not a secret
	between := func(lo, hi int) int { return lo + rng.IntN(hi-lo+1) }

	type span struct {
		d        Drill
		at, size int
	}
	var steps []span
	conflicts := func(d Drill, at, size int) bool {
		for _, s := range steps {
			if s.d.clashes(d) && at < s.at+s.size+gap && s.at < at+size+gap {
				return true
			}
		}
		return false
	}
	used := map[string]bool{}
	pick := func(pool []Drill) Drill {
		var fresh []Drill
		for _, d := range pool {
			if !used[d.Name] {
				fresh = append(fresh, d)
			}
		}
		if len(fresh) > 0 {
			pool = fresh
		}
		return pool[rng.IntN(len(pool))]
	}
	want := 3 + rng.IntN(3)

	// Two overlapping faults on different resources first.
	first := pick(cands)
	size := between(minLen, maxLen)
	at := between(0, last-size)
	steps = append(steps, span{first, at, size})
	used[first.Name] = true
	var others []Drill
	for _, d := range cands {
		if !d.clashes(first) {
			others = append(others, d)
		}
	}
	if len(others) > 0 {
		second := pick(others)
		size2 := between(minLen, maxLen)
		at2 := between(max(0, at-size2+1), min(at+size-1, last-size2))
		steps = append(steps, span{second, at2, size2})
		used[second.Name] = true
	}
	// Then the rest wherever they fit.
	for try := 0; len(steps) < want && try < 200; try++ {
		d := pick(cands)
		size := between(minLen, maxLen)
		at := between(0, last-size)
		if conflicts(d, at, size) {
			continue
		}
		steps = append(steps, span{d, at, size})
		used[d.Name] = true
	}
	out := make([]Step, len(steps))
	for i, s := range steps {
		out[i] = Step{Drill: s.d.Name, Resource: s.d.Resource, At: time.Duration(s.at) * tick, For: time.Duration(s.size) * tick}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].At != out[j].At {
			return out[i].At < out[j].At
		}
		return out[i].Drill < out[j].Drill
	})
	return out
}

// maxOverlap is the largest number of steps injected at the same time.
func maxOverlap(steps []Step) int {
	best := 0
	for _, s := range steps {
		n := 0
		for _, o := range steps {
			if o.At <= s.At && s.At < o.End() {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}

// RandomSeed returns a non-zero seed for the game day's schedule.
func RandomSeed() int64 {
	var b [8]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	s := int64(binary.LittleEndian.Uint64(b[:]) >> 1)
	if s == 0 {
		s = 1
	}
	return s
}

// nemesis runs the game day's schedule: one goroutine per step, which
// injects at the step's start and heals at its end. Inject and Heal calls
// of the steps never run at the same time (mu): drills share the Run
// (Values) and were written to run alone; the faults still overlap.
type nemesis struct {
	cancel context.CancelFunc
	done   chan struct{}
	opened time.Time // when the window opened: the steps' times count from here

	mu     sync.Mutex
	drills map[int]Drill // by step index
	active map[int]bool  // steps whose Inject ran (even when it failed) and that were not healed
}

// gameDay is the game-day drill over the drills candidates returns; wait
// sleeps until a step's time (a test passes one that does not wait).
func gameDay(candidates func() []Drill, wait func(context.Context, time.Duration) bool) Drill {
	d := Drill{
		Name: GameDayName,
		Fault: "a nemesis injects 3–5 faults of the game-day drills (chaos list: game day yes) on a schedule drawn from --seed: " +
			"at least two overlap, never two on one resource or process, each heals inside the fault window",
		Proves: "faults that overlap, as in real incidents, break no invariant: every order converges, one charge per paid order, " +
			"one e-mail per (order, kind), projections and lags drain, nothing dead-lettered; the same seed replays the same schedule",
	}
	d.Inject = func(ctx context.Context, r *Run) error {
		if r.Cfg.Seed == 0 {
			r.Cfg.Seed = RandomSeed()
		}
		cands := candidates()
		steps := Schedule(r.Cfg.Seed, r.Cfg.FaultFor, cands)
		if len(steps) == 0 {
			return fmt.Errorf("game day: no schedule: %d candidate drills for a %s window", len(cands), r.Cfg.FaultFor)
		}
		byName := map[string]Drill{}
		for _, c := range cands {
			byName[c.Name] = c
		}
		n := &nemesis{done: make(chan struct{}), drills: map[int]Drill{}, active: map[int]bool{}}
		r.mu.Lock()
		r.schedule = steps
		r.nemesis = n
		r.mu.Unlock()
		r.Logf("game day: seed %d, %d faults, at most %d at once (times after the window opened):", r.Cfg.Seed, len(steps), maxOverlap(steps))
		for _, st := range steps {
			r.Logf("  %s–%s %s (%s)", st.At, st.End(), st.Drill, st.Resource)
			n.drills[len(n.drills)] = byName[st.Drill]
			if byName[st.Drill].AllowPaymentFailed {
				r.AllowPaymentFailed = true
			}
		}
		nctx, cancel := context.WithCancel(ctx)
		n.cancel = cancel
		n.opened = time.Now()
		var wg sync.WaitGroup
		for i, st := range steps {
			wg.Go(func() { n.step(nctx, r, i, st, wait) })
		}
		go func() { wg.Wait(); close(n.done) }()
		return nil
	}
	d.Heal = func(ctx context.Context, r *Run) error {
		r.mu.Lock()
		n := r.nemesis
		r.mu.Unlock()
		if n == nil {
			return nil // Inject failed before the nemesis started
		}
		n.cancel()
		<-n.done
		n.mu.Lock()
		defer n.mu.Unlock()
		var errs []error
		for i := range len(n.drills) {
			if !n.active[i] {
				continue
			}
			dr := n.drills[i]
			r.Logf("game day: heal %s (still injected at the end of the window)", dr.Name)
			// Each heal has its own budget: one that hangs must not
			// leave the next fault in place.
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healBudget)
			err := dr.Heal(hctx, r)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("heal %s: %w", dr.Name, err))
				r.setStep(i, func(s *Step) { s.Err = joinMsg(s.Err, "heal FAILED: "+err.Error()) })
				continue
			}
			delete(n.active, i)
			at := time.Since(n.opened)
			r.setStep(i, func(s *Step) { s.Healed, s.HealedAt = true, at })
		}
		return errors.Join(errs...)
	}
	d.Effect = gameDayEffect
	return d
}

// step runs step i: Inject at its start, Heal at its end. When ctx ends
// first, the step is left to the game day's Heal.
func (n *nemesis) step(ctx context.Context, r *Run, i int, st Step, wait func(context.Context, time.Duration) bool) {
	if !wait(ctx, time.Until(n.opened.Add(st.At))) {
		r.setStep(i, func(s *Step) { s.Err = joinMsg(s.Err, "not started: the window closed first") })
		return
	}
	dr := n.drills[i]
	n.mu.Lock()
	if ctx.Err() != nil {
		n.mu.Unlock()
		r.setStep(i, func(s *Step) { s.Err = joinMsg(s.Err, "not started: the window closed first") })
		return
	}
	r.Logf("game day: inject %s (%s) for %s: %s", dr.Name, dr.Resource, st.For, dr.Fault)
	n.active[i] = true // Heal is safe after a failed or partial Inject
	if err := dr.Inject(ctx, r); err != nil {
		r.Logf("game day: inject %s FAILED: %v", dr.Name, err)
		r.setStep(i, func(s *Step) { s.Err = joinMsg(s.Err, "inject FAILED: "+err.Error()) })
	} else {
		at := time.Since(n.opened)
		r.setStep(i, func(s *Step) { s.Injected, s.InjectedAt = true, at })
	}
	n.mu.Unlock()
	if !wait(ctx, time.Until(n.opened.Add(st.End()))) {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healBudget)
	defer cancel()
	r.Logf("game day: heal %s", dr.Name)
	if err := dr.Heal(hctx, r); err != nil {
		r.Logf("game day: heal %s FAILED (retried at the end of the window): %v", dr.Name, err)
		r.setStep(i, func(s *Step) { s.Err = joinMsg(s.Err, "heal at its end FAILED: "+err.Error()) })
		return
	}
	delete(n.active, i)
	at := time.Since(n.opened)
	r.setStep(i, func(s *Step) { s.Healed, s.HealedAt = true, at })
}

// setStep changes step i of the run's schedule.
func (r *Run) setStep(i int, f func(*Step)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i < len(r.schedule) {
		f(&r.schedule[i])
	}
}

func joinMsg(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// gameDayEffect holds when the schedule has steps and every one was
// injected and healed; the evidence lists the schedule.
func gameDayEffect(r *Run) invariant.Result {
	r.mu.Lock()
	steps := slices.Clone(r.schedule)
	r.mu.Unlock()
	res := invariant.Result{Invariant: effectName}
	if len(steps) == 0 {
		res.Evidence = "no schedule: the nemesis did not start"
		return res
	}
	ok := 0
	parts := make([]string, len(steps))
	for i, s := range steps {
		if s.Injected && s.Healed && s.Err == "" {
			ok++
		}
		parts[i] = s.String()
	}
	res.Held = ok == len(steps)
	res.Evidence = fmt.Sprintf("seed %d: %d of %d scheduled faults injected and healed, at most %d at once: %s",
		r.Cfg.Seed, ok, len(steps), maxOverlap(steps), strings.Join(parts, "; "))
	res.Counts = map[string]int{"scheduled": len(steps), "injected_and_healed": ok, "max_overlap": maxOverlap(steps)}
	return res
}
