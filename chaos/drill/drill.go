// Package drill runs chaos drills against a running shopfloor: each drill
// keeps checkout load on the system, injects one fault in the middle of
// the load, heals it, waits for the system to converge and reports which
// invariants of DESIGN.md held, with the counts behind each verdict.
//
// A drill's timeline, for a load of Config.Duration:
//
//	0 ───── load (Config.Rate checkouts/s) ─────────────────────────── Duration ── converge (≤ Deadline) ── verdict
//	            └─ fault at (Duration−FaultFor)/2 ── FaultFor ── heal ┘
//
// Heal always runs, even when the drill is interrupted (Ctrl-C) or Inject
// failed half way: a drill never leaves the system broken.
//
// Every drill reports the shared invariants (package invariant) for the
// orders it placed, two rows about the checkout itself (every checkout
// accepted after a well-behaved client's retries; a repeated
// Idempotency-Key returns the same order), one row that shows the fault
// took effect (a drill whose fault did not bite proves nothing and is
// reported as violated), and its own rows (redis-down: catalog reads).
package drill

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/shopfloor/shopfloor/chaos/invariant"
)

// Drill is one fault and what it must not break.
type Drill struct {
	// Name is what `chaos run NAME` takes.
	Name string
	// Fault says what is injected, in one line.
	Fault string
	// Proves says what the drill shows when every row holds.
	Proves string
	// AllowPaymentFailed: under this fault a good card may end
	// payment_failed (the provider kept failing until the job's receives
	// ran out). No charge may be kept for such an order.
	AllowPaymentFailed bool
	// Inject breaks the system; Heal repairs it. Heal must be safe after
	// a failed or partial Inject.
	Inject, Heal func(ctx context.Context, r *Run) error
	// Effect returns the row that shows the fault took effect, from what
	// the run observed.
	Effect func(r *Run) invariant.Result
	// Probe, when set, starts with the load and returns a function that,
	// called once the system converged, stops it and returns its rows.
	Probe func(ctx context.Context, r *Run) func(ctx context.Context) []invariant.Result
	// Resource names what the fault breaks (postgres, nats, redis,
	// catalog, smtp, psp, relays, workers, consumers, …). The game day
	// never lets two faults on one resource overlap.
	Resource string
	// GameDay: the game day's nemesis may pick this fault. Its Inject and
	// Heal compose with other faults (the drill's verdicts do not depend
	// on its Probe, Heal is safe to call at any time).
	GameDay bool
	// Processes are the processes the drill kills, stops or starts, by
	// the names of `deploy/local/ctl.sh status`, which are also the
	// compose services (target.Compose runs `docker compose kill/start
	// NAME`). chaos/target's compose test renders those commands and
	// checks every name is a service of compose.yaml with
	// deploy/compose/compose.chaos.yaml. Empty when the drill controls no process
	// (links, provider faults) or only others' (game-day).
	Processes []string
	// MinFaultFor is the shortest fault window in which the drill's
	// effect can show (0: any). Execute lengthens Config.FaultFor to it,
	// and the load so that it runs MinLoadAround on each side of the
	// fault, and says so in the timeline.
	MinFaultFor time.Duration
	// NoCompose, when set, says why the drill cannot run against docker
	// compose (--runner compose); empty means it can. The compose test
	// reports such drills instead of skipping them silently.
	NoCompose string
	// Cluster: the drill needs a JetStream cluster (make run with
	// SHOPFLOOR_NATS_NODES=3, ADR 0041) and says so if it meets one
	// server; "all" leaves it out.
	Cluster bool
}

// All returns every drill, sorted by name.
func All() []Drill {
	ds := []Drill{relayKilled(), brokerDown(), redisDown(), pspTimeoutAfterCharge(), pspErrors(), workerKilled(), consumerKilled()}
	ds = append(ds, dataDrills()...)
	ds = append(ds, edgeDrills()...)
	ds = append(ds, cacheDrills()...)
	ds = append(ds, streamDrills()...)
	ds = append(ds, gameDayDrills()...)
	ds = append(ds, natsNodeKilled())
	sort.Slice(ds, func(i, j int) bool { return ds[i].Name < ds[j].Name })
	return ds
}

// Lookup returns the drills with the given names, in order; "all" stands
// for every drill but the cluster's (Drill.Cluster), which are named.
func Lookup(names ...string) ([]Drill, error) {
	byName := map[string]Drill{}
	for _, d := range All() {
		byName[d.Name] = d
	}
	var out []Drill
	for _, n := range names {
		if n == "all" {
			for _, d := range All() {
				if !d.Cluster {
					out = append(out, d)
				}
			}
			continue
		}
		d, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("no drill %q (chaos list shows them)", n)
		}
		out = append(out, d)
	}
	return out, nil
}
