package drill

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/chaos/invariant"
	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

// --- building blocks --------------------------------------------------------

// everyInstance is name and the further instances of it the system runs
// (SHOPFLOOR_REPLICAS: target.Replica names among its endpoints).
func everyInstance(r *Run, name string) []string {
	names := []string{name}
	for k := 2; k <= target.MaxReplicas; k++ {
		if _, ok := r.Sys.Metrics[target.Replica(name, k)]; ok {
			names = append(names, target.Replica(name, k))
		}
	}
	return names
}

func kill(names ...string) func(context.Context, *Run) error {
	return func(ctx context.Context, r *Run) error {
		if r.Sys.Procs == nil {
			return errors.New("no process control configured (--runner)")
		}
		var errs []error
		for _, n := range names {
			if err := r.Sys.Procs.Kill(ctx, n); err != nil {
				errs = append(errs, err)
				continue
			}
			r.Logf("SIGKILL %s", n)
		}
		return errors.Join(errs...)
	}
}

func start(names ...string) func(context.Context, *Run) error {
	return func(ctx context.Context, r *Run) error {
		if r.Sys.Procs == nil {
			return errors.New("no process control configured (--runner)")
		}
		var errs []error
		for _, n := range names {
			if err := r.Sys.Procs.Start(ctx, n); err != nil {
				errs = append(errs, err)
				continue
			}
			r.Logf("started %s", n)
		}
		return errors.Join(errs...)
	}
}

func link(proxy string, enabled bool) func(context.Context, *Run) error {
	return func(ctx context.Context, r *Run) error {
		if err := r.Sys.ToxiproxyClient().SetEnabled(ctx, proxy, enabled); err != nil {
			return err
		}
		if enabled {
			r.Logf("toxiproxy: %s link restored", proxy)
		} else {
			r.Logf("toxiproxy: %s link cut (proxy disabled)", proxy)
		}
		return nil
	}
}

func providerFaults(change func(*pspsim.Faults)) func(context.Context, *Run) error {
	return func(ctx context.Context, r *Run) error {
		f := r.PSPFaultsBefore
		change(&f)
		if err := r.Sys.SetPSPFaults(ctx, f); err != nil {
			return err
		}
		r.Logf("provider faults: %+v", f)
		return nil
	}
}

func restoreProvider(ctx context.Context, r *Run) error {
	if err := r.Sys.SetPSPFaults(ctx, r.PSPFaultsBefore); err != nil {
		return err
	}
	r.Logf("provider faults restored")
	return nil
}

// pendingEffect: orders accepted during the fault could not finish
// before the heal.
func pendingEffect(r *Run) (bool, string) {
	return r.DuringFault > 0 && r.PendingAtHeal > 0,
		fmt.Sprintf("%d of %d orders accepted during the fault were not final at the heal", r.PendingAtHeal, r.DuringFault)
}

func backlogPeaks(r *Run) string {
	return fmt.Sprintf("outbox backlog peak: ORDERS %g, PAYMENTS %g", r.Samples.Peak("outbox backlog ORDERS"), r.Samples.Peak("outbox backlog PAYMENTS"))
}

const effectName = "the fault took effect (drill validity)"

// requestDelta is how many more provider requests ended in outcome on
// route than before the drill.
func requestDelta(ctx context.Context, r *Run, route, outcome string) (int, error) {
	now, err := r.Sys.PSPStats(ctx)
	if err != nil {
		return 0, err
	}
	return now.Requests[route][outcome] - r.PSPBefore.Requests[route][outcome], nil
}

// --- the drills -------------------------------------------------------------

func relayKilled() Drill {
	procs := []string{"orders-relay", "payments-relay"}
	return Drill{
		Name:      "relay-killed",
		Resource:  "relays",
		GameDay:   true,
		Processes: procs,
		Fault:     "SIGKILL orders-relay and payments-relay (outbox relays; payments-relay also runs the ORDERS consumer), start them again after the fault window",
		Proves:    "the transactional outbox loses nothing when its relay crashes: events written while it was down are published after the restart; no order is stuck",
		Inject:    kill(procs...),
		Heal:      start(procs...),
		Effect: func(r *Run) invariant.Result {
			ok, ev := pendingEffect(r)
			return invariant.Result{Invariant: effectName, Held: ok, Evidence: ev + "; " + backlogPeaks(r) + " (sampled after the restart)"}
		},
	}
}

// brokerRelayRestartAfter is how long into a broker outage broker-down
// restarts the relays: long enough that they have tried to publish the
// fault window's first events.
const brokerRelayRestartAfter = 3 * time.Second

func brokerDown() Drill {
	relays := []string{"orders-relay", "payments-relay"}
	return Drill{
		Name:     "broker-down",
		Resource: "nats",
		GameDay:  true,
		// The relays restart during the outage: a NATS client keeps what
		// it could not send in memory (its reconnect buffer) and sends it
		// on reconnect, which would hide a relay that marks an
		// unacknowledged event as published. Restarting them drops that
		// buffer, so only what the outbox kept can reach the stream.
		Processes: relays,
		Fault: fmt.Sprintf("cut every link to NATS (toxiproxy proxy nats disabled: open connections closed, new ones refused); %s later SIGKILL and start %s "+
			"(whatever their NATS clients buffered is gone); restore the link after the fault window", brokerRelayRestartAfter, strings.Join(relays, " and ")),
		Proves: "checkout does not depend on the broker; the outbox, not a client's memory, carries events through the outage: the backlog rises and drains after it, " +
			"relays restarted mid-outage publish everything once the broker is back; every order converges",
		Inject: func(ctx context.Context, r *Run) error {
			if err := link("nats", false)(ctx, r); err != nil {
				return err
			}
			if !sleep(ctx, brokerRelayRestartAfter) {
				return ctx.Err()
			}
			var errs []error
			for _, p := range relays {
				if err := kill(p)(ctx, r); err != nil {
					errs = append(errs, err)
					continue
				}
				errs = append(errs, start(p)(ctx, r))
			}
			return errors.Join(errs...)
		},
		Heal: link("nats", true),
		Effect: func(r *Run) invariant.Result {
			ok, ev := pendingEffect(r)
			peak := r.Samples.Peak("outbox backlog ORDERS")
			return invariant.Result{Invariant: effectName, Held: ok && peak > 0, Evidence: backlogPeaks(r) + "; " + ev}
		},
	}
}

func redisDown() Drill {
	return Drill{
		Name:     "redis-down",
		Resource: "redis",
		GameDay:  true,
		Fault:    "cut the link to Redis (toxiproxy proxy redis disabled), restore it after the fault window; meanwhile a prober reads 8 products from catalog and writes a new price to one of them every second",
		Proves:   "a cache outage makes catalog slower, never wrong (#6): every read answers 200, none older than a write committed 1s before, origin and CDN serve the current version after the heal; checkouts keep working",
		Inject:   link("redis", false),
		Heal:     link("redis", true),
		Effect: func(r *Run) invariant.Result {
			fo, br := r.Samples.Growth("catalog cache fail_open"), r.Samples.Peak("catalog cache breaker_open")
			return invariant.Result{Invariant: effectName, Held: fo > 0 || br > 0,
				Evidence: fmt.Sprintf("catalog cache: %g reads failed open to PostgreSQL, breaker open: %t", fo, br > 0)}
		},
		Probe: catalogProbe,
	}
}

func pspTimeoutAfterCharge() Drill {
	return Drill{
		Name:               "psp-timeout-after-charge",
		Resource:           "psp",
		GameDay:            true,
		Fault:              "the provider charges, then never answers, 30% of charge requests (timeout_after_charge_rate 0.3); switched off after the fault window",
		Proves:             "an ambiguous provider timeout never becomes a double charge (#2): the worker looks the charge up by its idempotency key before any retry; every order ends paid or payment_failed",
		AllowPaymentFailed: true,
		Inject:             providerFaults(func(f *pspsim.Faults) { f.TimeoutAfterChargeRate = 0.3 }),
		Heal:               restoreProvider,
		Effect: func(r *Run) invariant.Result {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			n, err := requestDelta(ctx, r, pspsim.RouteCreateCharge, pspsim.OutcomeFaultTimeout)
			found, _ := requestDelta(ctx, r, pspsim.RouteFindCharge, pspsim.OutcomeFound)
			if err != nil {
				return invariant.Result{Invariant: effectName, Evidence: err.Error()}
			}
			return invariant.Result{Invariant: effectName, Held: n > 0,
				Evidence: fmt.Sprintf("%d charges made and left unanswered; %d lookups by idempotency key found a charge", n, found)}
		},
	}
}

func pspErrors() Drill {
	return Drill{
		Name:     "psp-errors",
		Resource: "psp",
		GameDay:  true,
		Fault:    "the provider answers 30% of requests 500/503 and 30% of charges 429 with Retry-After 1s (nothing processed); switched off after the fault window",
		// The simulator processes none of these requests, so a retry
		// with a fresh key would charge once too: the stable key is
		// proven by psp-timeout-after-charge, where the provider charges
		// and does not answer.
		Proves: "a 5xx or 429 is a reason to retry, never to give up: backoff on 5xx, Retry-After on 429; good cards end paid, nothing is dead-lettered, " +
			"each paid order is charged once (#2); every order ends paid or payment_failed",
		AllowPaymentFailed: true,
		Inject: providerFaults(func(f *pspsim.Faults) {
			f.ErrorRate, f.RateLimitRate, f.RetryAfter = 0.3, 0.3, time.Second
		}),
		Heal: restoreProvider,
		Effect: func(r *Run) invariant.Result {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e, err := requestDelta(ctx, r, pspsim.RouteCreateCharge, pspsim.OutcomeFaultError)
			l, _ := requestDelta(ctx, r, pspsim.RouteCreateCharge, pspsim.OutcomeFaultRateLimited)
			if err != nil {
				return invariant.Result{Invariant: effectName, Evidence: err.Error()}
			}
			return invariant.Result{Invariant: effectName, Held: e+l > 0,
				Evidence: fmt.Sprintf("%d charge requests answered 5xx, %d answered 429", e, l)}
		},
	}
}

// inFlight sums jobqueue_in_flight_messages{queue} as process reports it.
func inFlight(ctx context.Context, sys *target.System, process, queue string) float64 {
	samples, err := target.Scrape(ctx, sys.Client(), sys.Metrics[process])
	if err != nil {
		return 0
	}
	for _, s := range samples {
		if s.Name == "jobqueue_in_flight_messages" && s.Label("queue") == queue {
			return s.Value
		}
	}
	return 0
}

func workerKilled() Drill {
	procs := []string{"payments-worker", "notifications-worker"}
	restore := func(ctx context.Context, r *Run) error {
		return errors.Join(r.Sys.SetSMTPDelay(ctx, 0), r.Sys.SetPSPFaults(ctx, r.PSPFaultsBefore))
	}
	return Drill{
		Name:      "worker-killed",
		Resource:  "workers",
		GameDay:   true,
		Processes: procs,
		Fault: "slow the provider (1s per request) and SMTP (300ms per message) for 3s so jobs are mid-call, then SIGKILL payments-worker and notifications-worker " +
			"and restore the speed; start them again after the fault window",
		Proves: "a job whose worker died is redelivered after its visibility timeout and finished once: exactly one charge per paid order (#2), exactly one e-mail per (order, kind) (#3)",
		Inject: func(ctx context.Context, r *Run) error {
			f := r.PSPFaultsBefore
			f.Latency = time.Second
			if err := r.Sys.SetPSPFaults(ctx, f); err != nil {
				return err
			}
			if err := r.Sys.SetSMTPDelay(ctx, 300*time.Millisecond); err != nil {
				return errors.Join(err, restore(ctx, r))
			}
			r.Logf("provider latency 1s, SMTP latency 300ms")
			sleep(ctx, 3*time.Second)
			r.Values["charges"] = inFlight(ctx, r.Sys, "payments", "charges")
			r.Values["emails"] = inFlight(ctx, r.Sys, "notifications", "emails")
			err := kill(procs...)(ctx, r)
			if rerr := restore(ctx, r); rerr != nil {
				return errors.Join(err, rerr)
			}
			r.Logf("jobs in flight at the kill: %g charges, %g e-mails; provider and SMTP speed restored", r.Values["charges"], r.Values["emails"])
			return err
		},
		Heal: func(ctx context.Context, r *Run) error {
			return errors.Join(restore(ctx, r), start(procs...)(ctx, r))
		},
		Effect: func(r *Run) invariant.Result {
			ok, ev := pendingEffect(r)
			n := r.Values["charges"] + r.Values["emails"]
			return invariant.Result{Invariant: effectName, Held: ok && n > 0,
				Evidence: fmt.Sprintf("in flight at the kill (redelivered after the visibility timeout): %g charge jobs, %g e-mail jobs; %s",
					r.Values["charges"], r.Values["emails"], ev)}
		},
	}
}

func consumerKilled() Drill {
	procs := []string{"search", "notifications"}
	return Drill{
		Name:      "consumer-killed",
		Resource:  "consumers",
		GameDay:   true,
		Processes: procs,
		Fault:     "SIGKILL search and notifications (the api+consumer processes of the ORDERS groups search and notifications), start them again after the fault window",
		Proves:    "stream consumers resume from their durable position: the lag built up while they were down drains to 0 and the projections (search, notifications, e-mails) converge without loss or duplicates (#3, #5)",
		Inject:    kill(procs...),
		Heal: func(ctx context.Context, r *Run) error {
			if len(r.Sys.KafkaBrokers) > 0 {
				// On Kafka (ADR 0046): records past the groups' committed
				// offsets, from the broker.
				for _, g := range []string{"search", "notifications"} {
					if n, err := r.Sys.KafkaLag(ctx, "ORDERS", g); err == nil {
						r.Values[g] = float64(n)
					}
				}
				r.Logf("consumer lag before the restart: search %g, notifications %g (Kafka committed offsets)", r.Values["search"], r.Values["notifications"])
			} else if js, err := r.Sys.JetStream(ctx); err == nil {
				r.Values["search"] = float64(js.Pending["ORDERS/search"])
				r.Values["notifications"] = float64(js.Pending["ORDERS/notifications"])
				r.Logf("consumer lag before the restart: search %g, notifications %g", r.Values["search"], r.Values["notifications"])
			}
			return start(procs...)(ctx, r)
		},
		Effect: func(r *Run) invariant.Result {
			s, n := r.Values["search"], r.Values["notifications"]
			source := "NATS /jsz"
			if len(r.Sys.KafkaBrokers) > 0 {
				source = "Kafka committed offsets"
			}
			return invariant.Result{Invariant: effectName, Held: s > 0 && n > 0,
				Evidence: fmt.Sprintf("ORDERS messages waiting when the consumers restarted: search %g, notifications %g (%s)", s, n, source)}
		},
	}
}
