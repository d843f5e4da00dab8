package drill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/chaos/invariant"
	"github.com/shopfloor/shopfloor/chaos/load"
	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

// Config is how hard and how long a drill pushes.
type Config struct {
	// Duration is how long checkout load runs. Default 60s.
	Duration time.Duration
	// FaultFor is how long the fault lasts, centred in the load. Default
	// Duration/2; at most Duration.
	FaultFor time.Duration
	// Rate is checkouts started per second. Default 20.
	Rate float64
	// Customers placing the orders. Default 10.
	Customers int
	// Deadline bounds the wait for convergence after the load. Default 3m.
	Deadline time.Duration
	// Seed draws the game day's schedule (Schedule): the same seed, fault
	// window and candidate drills give the same schedule. 0: the game day
	// draws a random seed and logs it. Other drills ignore it.
	Seed int64
	// Log receives the timeline as it happens (nil: discarded).
	Log io.Writer
}

// MinLoadAround is the load a lengthened fault window (Drill.MinFaultFor)
// keeps on each side of the fault.
const MinLoadAround = 15 * time.Second

// fit lengthens the fault window to d.MinFaultFor when it is shorter, and
// the load to keep MinLoadAround on each side; it reports whether it did.
func (c *Config) fit(d Drill) bool {
	if d.MinFaultFor <= c.FaultFor {
		return false
	}
	c.FaultFor = d.MinFaultFor
	c.Duration = max(c.Duration, c.FaultFor+2*MinLoadAround)
	return true
}

func (c *Config) defaults() {
	if c.Duration <= 0 {
		c.Duration = 60 * time.Second
	}
	if c.FaultFor <= 0 || c.FaultFor > c.Duration {
		c.FaultFor = c.Duration / 2
	}
	if c.Rate <= 0 {
		c.Rate = 20
	}
	if c.Customers <= 0 {
		c.Customers = 10
	}
	if c.Deadline <= 0 {
		c.Deadline = 3 * time.Minute
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Run is one execution of a drill: what the drill's functions see.
type Run struct {
	Sys *target.System
	Cfg Config
	// ID tells this run's customers, keys and probe writes apart.
	ID string
	// Products are the catalog products the load orders from.
	Products []catalogapi.Product

	start               time.Time
	FaultStart, HealEnd time.Time
	// PSPBefore are the provider's stats and faults before the drill.
	PSPBefore       pspsim.Stats
	PSPFaultsBefore pspsim.Faults
	// Samples are the peaks of backlogs, lags and queues during the drill.
	Samples *Sampler

	mu       sync.Mutex
	accepted []load.Order
	// DuringFault counts the orders accepted between the fault's start
	// and its heal; PendingAtHeal those of them not final at the heal.
	DuringFault, PendingAtHeal int
	notes                      []string
	// loadResult is the load's outcome once it stopped (Load).
	loadResult load.Result
	// Values lets Inject leave something for Heal and Effect.
	Values map[string]float64
	healed chan struct{}
	// AllowPaymentFailed, set by Inject, adds the drill's
	// AllowPaymentFailed at run time (the game day, when its schedule
	// picked a drill that allows it).
	AllowPaymentFailed bool
	// schedule is the game day's schedule with each step's outcome
	// (guarded by mu; the report lists it).
	schedule []Step
	// nemesis runs the game day's schedule (guarded by mu).
	nemesis *nemesis
	// loads are the extra load generators a drill started (StartLoad).
	loads map[string]*extraLoad
	// extendBy and extendWhy lengthen the converge deadline
	// (ExtendDeadline).
	extendBy  time.Duration
	extendWhy []string
}

// ExtendDeadline adds d to the converge deadline, with the reason the
// timeline gives: a drill whose fault makes work proportional to
// something the run does not control (replay: the stream's retained
// history) says so instead of failing on a fixed deadline.
func (r *Run) ExtendDeadline(d time.Duration, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.extendBy += d
	r.extendWhy = append(r.extendWhy, why)
}

func (r *Run) deadlineExtension() (time.Duration, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.extendBy, strings.Join(r.extendWhy, "; ")
}

// Load returns the checkout load's outcome: empty until the load stopped
// (Effect and a Probe's stop function run after that).
func (r *Run) Load() load.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadResult
}

// Healed is closed once the fault has been healed (or the heal failed).
func (r *Run) Healed() <-chan struct{} { return r.healed }

// Logf writes one timeline line, stamped with the time since the start.
func (r *Run) Logf(format string, args ...any) {
	line := fmt.Sprintf("%6.1fs  %s", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
	r.mu.Lock()
	r.notes = append(r.notes, line)
	r.mu.Unlock()
	fmt.Fprintln(r.Cfg.Log, line)
}

func newID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Execute runs d against sys and returns its report. It returns an error
// when the drill could not run (the system unreachable, ctx cancelled);
// violated invariants are in the report, not an error.
func Execute(ctx context.Context, sys *target.System, d Drill, cfg Config) (rep Report, err error) {
	cfg.defaults()
	lengthened := cfg.fit(d)
	r := &Run{Sys: sys, Cfg: cfg, ID: newID(), start: time.Now(), Values: map[string]float64{}, healed: make(chan struct{})}
	rep = Report{Drill: d, RunID: r.ID, Cfg: cfg}
	defer func() { rep.finish(r) }() // runs last: timeline, samples and schedule even when the drill failed
	checker := &invariant.Checker{Sys: sys}

	// Start from a quiet system: what was in flight before the drill (a
	// previous drill's tail, a fresh topology's first catalog events)
	// must not be counted against it.
	if busy := settle(ctx, sys, time.Minute); busy != "" {
		r.Logf("%s: the system is not idle after 1m (%s); the baseline includes that", d.Name, busy)
	}
	base, err := checker.Baseline(ctx)
	if err != nil {
		return rep, fmt.Errorf("%s: is the system running? %w", d.Name, err)
	}
	if r.PSPBefore, err = sys.PSPStats(ctx); err != nil {
		return rep, fmt.Errorf("%s: %w", d.Name, err)
	}
	if r.PSPFaultsBefore, err = sys.PSPFaults(ctx); err != nil {
		return rep, fmt.Errorf("%s: %w", d.Name, err)
	}
	// A topology without Toxiproxy (SHOPFLOOR_TOXIPROXY=off, for
	// throughput runs) cannot have faults injected: refuse, with the reason.
	if err := sys.ToxiproxyClient().Reachable(ctx); err != nil {
		return rep, fmt.Errorf("%s: %w", d.Name, err)
	}
	var list catalogapi.ProductList
	if err := target.GetJSON(ctx, sys.Client(), sys.CDN+"/v1/products?limit=50", &list); err != nil {
		return rep, fmt.Errorf("%s: products: %w", d.Name, err)
	}
	if len(list.Products) < 10 {
		return rep, fmt.Errorf("%s: catalog lists %d products; seed it first", d.Name, len(list.Products))
	}
	r.Products = list.Products
	// Sign in before the clock starts: the operator (the checks read
	// every customer's data) and each customer of the load. A refused
	// sign-in ends the drill here, with the provider's reason.
	if _, err := sys.Token(ctx, target.Operator); err != nil {
		return rep, fmt.Errorf("%s: %w", d.Name, err)
	}
	if err := load.SignIn(ctx, sys, r.ID, cfg.Customers); err != nil {
		return rep, fmt.Errorf("%s: %w", d.Name, err)
	}
	faultAt := (cfg.Duration - cfg.FaultFor) / 2
	r.start = time.Now() // the timeline counts from the load's start
	r.Logf("%s: run %s; load %.0f checkouts/s for %s; fault at %s for %s", d.Name, r.ID, cfg.Rate, cfg.Duration, faultAt, cfg.FaultFor)
	if lengthened {
		r.Logf("%s: the fault window was lengthened to the drill's minimum, %s (its effect cannot show in a shorter one)", d.Name, d.MinFaultFor)
	}

	r.Samples = NewSampler(sys)
	sctx, stopSampler := context.WithCancel(ctx)
	samplerDone := make(chan struct{})
	go func() { defer close(samplerDone); r.Samples.Run(sctx, time.Second) }()
	defer func() { stopSampler(); <-samplerDone }()

	var stopProbe func(context.Context) []invariant.Result
	if d.Probe != nil {
		pctx, cancelProbe := context.WithCancel(ctx)
		defer cancelProbe() // an early return leaves no prober behind
		stopProbe = d.Probe(pctx, r)
	}

	lctx, stopLoad := context.WithTimeout(ctx, cfg.Duration)
	defer stopLoad()
	loadDone := make(chan load.Result, 1)
	go func() {
		res, lerr := load.Run(lctx, load.Config{OrdersURL: sys.Orders, Tokens: sys, Rate: cfg.Rate, RunID: r.ID, Customers: cfg.Customers,
			Products: r.Products, HTTP: sys.Client()}, func(o load.Order) {
			r.mu.Lock()
			r.accepted = append(r.accepted, o)
			r.mu.Unlock()
		})
		if lerr != nil {
			r.Logf("load: %v", lerr)
		}
		loadDone <- res
	}()

	healed := true
	heal := func() {
		if healed {
			return
		}
		healed = true
		defer close(r.healed)
		// Counting the fault window's orders reads each of them through
		// a system that may still be slow (latency, overload); it gets
		// its own budget so that it can never eat the heal's.
		pctx, pcancel := context.WithTimeout(context.WithoutCancel(ctx), pendingBudget)
		r.PendingAtHeal, r.DuringFault = r.pendingSince(pctx, r.FaultStart)
		pcancel()
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healBudget)
		defer cancel()
		if herr := d.Heal(hctx, r); herr != nil {
			r.Logf("heal FAILED: %v", herr)
			err = errors.Join(err, fmt.Errorf("%s: heal: %w", d.Name, herr))
			return
		}
		r.HealEnd = time.Now()
		r.Logf("healed; %d orders accepted during the fault, %d of them not final at the heal", r.DuringFault, r.PendingAtHeal)
	}
	defer heal()

	if !sleep(ctx, faultAt) {
		return rep, fmt.Errorf("%s: %w", d.Name, ctx.Err())
	}
	r.FaultStart = time.Now()
	healed = false
	r.Logf("fault: %s", d.Fault)
	if ierr := d.Inject(ctx, r); ierr != nil {
		r.Logf("inject FAILED: %v", ierr)
		return rep, fmt.Errorf("%s: inject: %w", d.Name, ierr)
	}
	if !sleep(ctx, cfg.FaultFor-time.Since(r.FaultStart)) {
		return rep, fmt.Errorf("%s: %w", d.Name, ctx.Err())
	}
	heal()
	if err != nil {
		return rep, err
	}

	res := <-loadDone
	res = r.joinLoads(res) // an extra load's (StartLoad) orders and answers join the run's
	r.mu.Lock()
	r.loadResult = res
	r.mu.Unlock()
	rep.Load = res
	r.Logf("load stopped: %d checkouts started, %d accepted", res.Started, len(res.Accepted))

	orders := make([]invariant.Order, len(res.Accepted))
	for i, o := range res.Accepted {
		orders[i] = invariant.Order{ID: o.ID, CustomerID: o.CustomerID, Email: o.Email, Declined: o.Declined}
	}
	if extra, why := r.deadlineExtension(); extra > 0 {
		cfg.Deadline += extra
		rep.Cfg.Deadline = cfg.Deadline
		r.Logf("converge deadline %s (+%s: %s)", cfg.Deadline, extra, why)
	}
	ir, cerr := checker.Check(ctx, orders, invariant.Options{Deadline: cfg.Deadline, AllowPaymentFailed: d.AllowPaymentFailed || r.AllowPaymentFailed,
		Baseline: &base, Progress: func(s string) { r.Logf("%s", s) }})
	if cerr != nil {
		return rep, fmt.Errorf("%s: %w", d.Name, cerr)
	}
	if ir.Converged {
		r.Logf("converged %.1fs after the load stopped", ir.Took.Seconds())
	} else {
		r.Logf("did not converge within %s", cfg.Deadline)
	}
	rep.Converged, rep.ConvergedIn = ir.Converged, ir.Took

	rep.Results = append(rep.Results, d.Effect(r))
	rep.Results = append(rep.Results, checkoutRows(res)...)
	rep.Results = append(rep.Results, ir.Results...)
	if stopProbe != nil {
		rep.Results = append(rep.Results, stopProbe(ctx)...)
	}
	rep.Peaks = r.Samples.Peaks()
	r.mu.Lock()
	rep.Timeline = append([]string(nil), r.notes...)
	r.mu.Unlock()
	return rep, nil
}

// settle waits up to within until no stream message is pending for any
// consumer group (NATS /jsz) and returns "" or what is still pending
// ("" too when NATS monitoring does not answer: the baseline says so).
func settle(ctx context.Context, sys *target.System, within time.Duration) string {
	deadline := time.Now().Add(within)
	for {
		js, err := sys.JetStream(ctx)
		if err != nil {
			return "" // the baseline reports it
		}
		keys := make([]string, 0, len(js.Pending))
		for k, n := range js.Pending {
			if n > 0 {
				keys = append(keys, fmt.Sprintf("%s %d", k, n))
			}
		}
		sort.Strings(keys)
		busy := strings.Join(keys, ", ")
		if busy == "" || time.Now().After(deadline) || !sleep(ctx, time.Second) {
			return busy
		}
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// healBudget bounds a drill's Heal; pendingBudget bounds the count of
// the fault window's orders not final at the heal, taken just before it.
const (
	healBudget    = time.Minute
	pendingBudget = 20 * time.Second
)

// pendingSince counts the orders accepted since t (total) and those of
// them not final yet (pending). It lists each of their customers' orders
// (strong reads, 100 to a page, 8 customers at a time: a dozen requests
// for a thousand orders, where one read per order would add load to a
// system the fault may still be overloading) and reads any order the
// lists did not show on its own. An order whose status could not be read
// within ctx is not counted as pending (rows that want pending orders as
// evidence of an effect then see fewer, never more); the log says how
// many were not read.
func (r *Run) pendingSince(ctx context.Context, t time.Time) (pending, total int) {
	r.mu.Lock()
	byCustomer := map[string][]string{}
	for _, o := range r.accepted {
		if !o.AcceptedAt.Before(t) {
			byCustomer[o.CustomerID] = append(byCustomer[o.CustomerID], o.ID)
			total++
		}
	}
	r.mu.Unlock()
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		sem      = make(chan struct{}, 8)
		unread   int
		statuses = map[string]string{}
	)
	for cust := range byCustomer {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			list, _ := invariant.CustomerOrders(ctx, r.Sys, cust) // what it read before an error still counts
			mu.Lock()
			for _, o := range list {
				statuses[o.ID] = o.Status
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, ids := range byCustomer {
		for _, id := range ids {
			st, ok := statuses[id]
			if !ok {
				var o ordersapi.Order
				if err := r.Sys.GetAs(ctx, target.Operator, r.Sys.Orders+"/v1/orders/"+url.PathEscape(id), &o); err != nil {
					unread++
					continue
				}
				st = o.Status
			}
			switch st {
			case ordersapi.StatusPaid, ordersapi.StatusPaymentFailed, ordersapi.StatusCancelled:
			default:
				pending++
			}
		}
	}
	if unread > 0 {
		r.Logf("status of %d of %d fault-window orders not read before the heal (%v); not counted as pending", unread, total, context.Cause(ctx))
	}
	return pending, total
}

// checkoutRows are the verdicts on the checkout API itself.
func checkoutRows(res load.Result) []invariant.Result {
	retried := statusCounts(res.Retries)
	refused := statusCounts(res.Refused)
	avail := invariant.Result{Invariant: "checkout accepts every valid order (client retries 503/429/409)"}
	avail.Evidence = fmt.Sprintf("%d of %d accepted; retried answers: %s; refused: %s; gave up: %d", len(res.Accepted), res.Started, retried, refused, res.GaveUp)
	if res.Skipped > 0 {
		avail.Evidence += fmt.Sprintf("; %d ticks skipped (64 checkouts in progress)", res.Skipped)
	}
	for st, body := range res.RefusedSample {
		avail.Evidence += fmt.Sprintf("; %d: %s", st, body)
		break
	}
	avail.Held = len(res.Refused) == 0 && res.GaveUp == 0 && len(res.Accepted) > 0
	refusedN, retriedN := 0, 0
	for _, n := range res.Refused {
		refusedN += n
	}
	for _, n := range res.Retries {
		retriedN += n
	}
	avail.Counts = map[string]int{"started": res.Started, "accepted": len(res.Accepted), "retried": retriedN, "refused": refusedN, "gave_up": res.GaveUp, "skipped": res.Skipped}
	idem := invariant.Result{Invariant: "a repeated Idempotency-Key returns the same order",
		Held:     len(res.KeyMismatches) == 0,
		Evidence: fmt.Sprintf("%d keys sent twice, %d answered with another order", res.Repeated, len(res.KeyMismatches)),
		Counts:   map[string]int{"repeated": res.Repeated, "mismatched": len(res.KeyMismatches)}}
	if len(res.KeyMismatches) > 0 {
		idem.Evidence += fmt.Sprintf(": %v", res.KeyMismatches)
	}
	return []invariant.Result{avail, idem}
}

func statusCounts(m map[int]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		name := fmt.Sprint(k)
		if k == 0 {
			name = "network error"
		}
		s += fmt.Sprintf("%s×%d", name, m[k])
	}
	return s
}

// extraLoad is a load generator a drill started besides the run's own.
type extraLoad struct {
	stop context.CancelFunc
	done chan load.Result
}

// StartLoad starts an extra checkout load of rate checkouts/s (overload:
// more than the system can take) beside the run's own. It has customers
// and Idempotency-Keys of its own (run id r.ID+"-"+name), signs them in
// before it returns, and runs until StopLoad(name), the heal or ctx ends.
// Its accepted orders join the ones the invariants are checked against
// (and DuringFault); its answers join the checkout rows (Execute merges
// its Result into the run's). Starting a name that runs is an error.
func (r *Run) StartLoad(ctx context.Context, name string, rate float64) error {
	runID := r.ID + "-" + name
	r.mu.Lock()
	_, running := r.loads[name]
	r.mu.Unlock()
	if running {
		return fmt.Errorf("load %s: already running", name)
	}
	if err := load.SignIn(ctx, r.Sys, runID, r.Cfg.Customers); err != nil {
		return fmt.Errorf("load %s: %w", name, err)
	}
	lctx, stop := context.WithCancel(ctx)
	l := &extraLoad{stop: stop, done: make(chan load.Result, 1)}
	r.mu.Lock()
	if r.loads == nil {
		r.loads = map[string]*extraLoad{}
	}
	r.loads[name] = l
	r.mu.Unlock()
	go func() {
		select {
		case <-lctx.Done():
		case <-r.healed:
			stop()
		}
	}()
	go func() {
		res, err := load.Run(lctx, load.Config{OrdersURL: r.Sys.Orders, Tokens: r.Sys, Rate: rate, RunID: runID, Customers: r.Cfg.Customers,
			Products: r.Products, HTTP: r.Sys.Client()}, func(o load.Order) {
			r.mu.Lock()
			r.accepted = append(r.accepted, o)
			r.mu.Unlock()
		})
		if err != nil {
			r.Logf("load %s: %v", name, err)
		}
		l.done <- res
	}()
	r.Logf("load %s: %.0f more checkouts/s (customers %s)", name, rate, runID)
	return nil
}

// StopLoad stops the extra load name (StartLoad); it is a no-op when none
// runs. Its orders in progress finish on their own deadline.
func (r *Run) StopLoad(name string) {
	r.mu.Lock()
	l := r.loads[name]
	r.mu.Unlock()
	if l != nil {
		l.stop()
	}
}

// joinLoads stops every extra load, waits for it and merges its result
// into res.
func (r *Run) joinLoads(res load.Result) load.Result {
	r.mu.Lock()
	loads := make([]*extraLoad, 0, len(r.loads))
	for _, l := range r.loads {
		loads = append(loads, l)
	}
	r.mu.Unlock()
	for _, l := range loads {
		l.stop()
		res = mergeLoads(res, <-l.done)
	}
	return res
}

// mergeLoads adds b's counts and orders to a's.
func mergeLoads(a, b load.Result) load.Result {
	a.Accepted = append(a.Accepted, b.Accepted...)
	a.Started += b.Started
	a.Skipped += b.Skipped
	a.GaveUp += b.GaveUp
	a.Repeated += b.Repeated
	a.KeyMismatches = append(a.KeyMismatches, b.KeyMismatches...)
	a.Answers = append(a.Answers, b.Answers...)
	for _, m := range []struct {
		dst *map[int]int
		src map[int]int
	}{{&a.Retries, b.Retries}, {&a.Refused, b.Refused}, {&a.NoRetryAfter, b.NoRetryAfter}} {
		if *m.dst == nil {
			*m.dst = map[int]int{}
		}
		for k, v := range m.src {
			(*m.dst)[k] += v
		}
	}
	if a.RefusedSample == nil {
		a.RefusedSample = map[int]string{}
	}
	for k, v := range b.RefusedSample {
		if _, ok := a.RefusedSample[k]; !ok {
			a.RefusedSample[k] = v
		}
	}
	return a
}
