package drill

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/chaos/invariant"
	"github.com/shopfloor/shopfloor/chaos/load"
)

// dataDrills are the drills of PostgreSQL and NATS killed or cut:
// postgres-killed, postgres-link-cut, nats-killed.
func dataDrills() []Drill {
	return []Drill{postgresKilled(), postgresLinkCut(), natsKilled()}
}

// pgServices are the services with a database, each behind its own
// Toxiproxy link postgres-<service> (deploy/local/run.sh).
var pgServices = []string{"orders", "payments", "catalog", "notifications", "search"}

func postgresKilled() Drill {
	return Drill{
		Name:      "postgres-killed",
		Resource:  "postgres",
		GameDay:   true,
		Processes: []string{"postgres"},
		Fault: "SIGKILL PostgreSQL (the run's own cluster: the postmaster and every backend at once, a crash), start it again after the fault window; " +
			"it recovers from its write-ahead log",
		Proves: "a database crash loses no accepted order (#1, every commit was flushed before the answer) and double-charges nobody (#2); " +
			"checkout answers 503 with Retry-After meanwhile, never 500; every service reconnects by itself (every admin listener's /readyz answers 200 after the heal)",
		Inject: kill("postgres"),
		Heal:   start("postgres"),
		Effect: func(r *Run) invariant.Result {
			n := r.Load().Retries[http.StatusServiceUnavailable] + r.Load().Retries[0]
			return invariant.Result{Invariant: effectName, Held: n > 0,
				Evidence: fmt.Sprintf("checkouts answered 503 or lost their connection while PostgreSQL was down: %d", n)}
		},
		Probe: func(ctx context.Context, r *Run) func(context.Context) []invariant.Result {
			return func(ctx context.Context) []invariant.Result {
				return []invariant.Result{unavailableRow(r.Load(), "PostgreSQL"), reconnectedRow(ctx, r)}
			}
		},
	}
}

// postgresLinkCut cuts one service's database link at a time: each
// service for an equal share of the fault window, in pgServices order.
func postgresLinkCut() Drill {
	var (
		mu   sync.Mutex
		done []string
	)
	return Drill{
		Name:     "postgres-link-cut",
		Resource: "postgres",
		GameDay:  true,
		Fault: "cut each service's PostgreSQL link in turn (Toxiproxy postgres-orders, -payments, -catalog, -notifications, -search disabled one after the other, " +
			"an equal share of the fault window each: open connections reset, new ones refused)",
		Proves: "every service survives losing its database connections mid-flight: no accepted order lost (#1), no double charge (#2), no duplicate e-mail (#3); " +
			"checkout answers 503 with Retry-After while orders' link is down, never 500; every pool reconnects by itself (/readyz 200 after the heal)",
		Inject: func(ctx context.Context, r *Run) error {
			mu.Lock()
			done = nil
			mu.Unlock()
			share := r.Cfg.FaultFor / time.Duration(len(pgServices))
			go func() {
				for _, svc := range pgServices {
					select {
					case <-r.Healed():
						return
					default:
					}
					if err := link("postgres-"+svc, false)(ctx, r); err != nil {
						r.Logf("cut postgres-%s: %v", svc, err)
						return
					}
					mu.Lock()
					done = append(done, svc)
					mu.Unlock()
					waited := sleepUntilHealed(ctx, r, share)
					if err := link("postgres-"+svc, true)(context.WithoutCancel(ctx), r); err != nil {
						r.Logf("restore postgres-%s: %v", svc, err)
					}
					if !waited {
						return
					}
				}
			}()
			return nil
		},
		Heal: func(ctx context.Context, r *Run) error {
			// Restores every link, whatever the turn had reached.
			tp := r.Sys.ToxiproxyClient()
			var errs []error
			for _, svc := range pgServices {
				if err := tp.SetEnabled(ctx, "postgres-"+svc, true); err != nil {
					errs = append(errs, err)
				}
			}
			if len(errs) > 0 {
				return fmt.Errorf("restore the PostgreSQL links: %v", errs)
			}
			return nil
		},
		Effect: func(r *Run) invariant.Result {
			mu.Lock()
			cut := slices.Clone(done)
			mu.Unlock()
			n := r.Load().Retries[http.StatusServiceUnavailable] + r.Load().Retries[0]
			return invariant.Result{Invariant: effectName, Held: len(cut) == len(pgServices) && n > 0,
				Evidence: fmt.Sprintf("links cut in turn: %s (of %d); checkouts answered 503 or lost their connection while orders' link was down: %d",
					strings.Join(cut, ", "), len(pgServices), n)}
		},
		Probe: func(ctx context.Context, r *Run) func(context.Context) []invariant.Result {
			return func(ctx context.Context) []invariant.Result {
				return []invariant.Result{unavailableRow(r.Load(), "orders' PostgreSQL link"), reconnectedRow(ctx, r)}
			}
		},
	}
}

func natsKilled() Drill {
	return Drill{
		Name:      "nats-killed",
		Resource:  "nats",
		GameDay:   true,
		Processes: []string{"nats"},
		Fault:     "SIGKILL nats-server, start it again after the fault window with its data (JetStream store_dir, sync_interval always)",
		Proves: "a broker crash loses nothing it acknowledged: the outboxes keep every event until the broker is back and publish it then, " +
			"consumers resume from their durable positions; every order converges, once (#1, #2, #3, #5); every service reconnects by itself",
		Inject: kill("nats"),
		Heal:   start("nats"),
		Effect: func(r *Run) invariant.Result {
			ok, ev := pendingEffect(r)
			peak := r.Samples.Peak("outbox backlog ORDERS")
			return invariant.Result{Invariant: effectName, Held: ok && peak > 0, Evidence: backlogPeaks(r) + "; " + ev}
		},
		Probe: func(ctx context.Context, r *Run) func(context.Context) []invariant.Result {
			return func(ctx context.Context) []invariant.Result { return []invariant.Result{reconnectedRow(ctx, r)} }
		},
	}
}

// sleepUntilHealed waits d, or until the drill heals or ctx ends; it
// reports whether d passed.
func sleepUntilHealed(ctx context.Context, r *Run, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Healed():
	case <-ctx.Done():
	}
	return false
}

// unavailableRow: while a dependency of checkout was down, checkout
// answered 503 with Retry-After (which the client retried), never another
// 5xx and never a dropped connection (answers.serverErrorsBut, as
// catalog-down and overload count them).
func unavailableRow(res load.Result, what string) invariant.Result {
	w := window(res, time.Time{}, time.Time{})
	other := w.serverErrorsBut(http.StatusServiceUnavailable)
	return invariant.Result{Invariant: "checkout answers 503 + Retry-After while " + what + " is down, never 500",
		Held: other == 0 && w.noRetryAfter503 == 0,
		Evidence: fmt.Sprintf("%s; 503 without Retry-After: %d; other 5xx or network errors: %d",
			w.statuses(), w.noRetryAfter503, other),
		Counts: map[string]int{"answered_503": w.byStatus[http.StatusServiceUnavailable], "no_retry_after": w.noRetryAfter503, "other_5xx": other}}
}

// reconnectedRow: after the heal every role process answers /readyz
// 200 on its admin listener: each reconnected to what it lost without a
// restart. It asks for up to 30 s, since a pool may still be dialling.
func reconnectedRow(ctx context.Context, r *Run) invariant.Result {
	row := invariant.Result{Invariant: "every service reconnects by itself (/readyz 200 after the heal)"}
	procs := make([]string, 0, len(r.Sys.Metrics))
	for p := range r.Sys.Metrics {
		procs = append(procs, p)
	}
	sort.Strings(procs)
	deadline := time.Now().Add(30 * time.Second)
	var notReady []string
	for {
		notReady = notReady[:0]
		for _, p := range procs {
			if err := r.Sys.Ready(ctx, p); err != nil {
				notReady = append(notReady, fmt.Sprintf("%s (%v)", p, err))
			}
		}
		if len(notReady) == 0 || time.Now().After(deadline) || !sleep(ctx, time.Second) {
			break
		}
	}
	row.Held = len(notReady) == 0 && len(procs) > 0
	row.Evidence = fmt.Sprintf("%d of %d processes ready", len(procs)-len(notReady), len(procs))
	if len(notReady) > 0 {
		row.Evidence += "; not ready: " + strings.Join(notReady, ", ")
	}
	return row
}
