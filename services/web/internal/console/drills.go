package console

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/chaos/drill"
	"github.com/shopfloor/shopfloor/chaos/invariant"
	"github.com/shopfloor/shopfloor/chaos/target"
)

// Drills run chaos/drill's drills from the console, one at a time, in the
// web process, exactly as `go run ./chaos/cmd/chaos run NAME` does: load,
// fault, heal, the invariants' verdicts. The page shows the timeline as
// it happens and the verdict table at the end.

// DrillLimits bound what the page may ask for.
const (
	MinDrillDuration = 10 * time.Second
	MaxDrillDuration = 2 * time.Minute
	// DrillRate is the drills' checkout rate from the console (the CLI's
	// default is 20/s; the page's drills are for watching, not for load).
	DrillRate = 10
	// drillTimeout bounds a whole run: settle (1m), load, convergence
	// (the drill's Deadline, 3m) and the checks.
	drillTimeout = 10 * time.Minute
)

// ErrDrillRunning is returned when a drill is already running.
var ErrDrillRunning = errors.New("a drill is running; wait for its verdicts")

// DrillRun is the current or last drill run.
type DrillRun struct {
	Name     string
	Duration time.Duration
	Started  time.Time
	Operator string
	Running  bool
	Lines    []string
	// Results are the verdicts (when it finished); Err is why it could
	// not run to the end.
	Results   []invariant.Result
	Converged bool
	Err       string
}

// Violated counts the rows that did not hold.
func (r DrillRun) Violated() int {
	n := 0
	for _, x := range r.Results {
		if !x.Held {
			n++
		}
	}
	return n
}

type drills struct {
	sys *target.System // nil: the console cannot run drills
	mu  sync.Mutex
	cur *DrillRun
}

// EnableDrills lets the console run drills against sys (a System with the
// identity provider, the process controller and a patient HTTP client:
// the load's checkouts wait for orders).
func (c *Console) EnableDrills(sys *target.System) { c.drills.sys = sys }

// DrillsEnabled reports whether the console can run drills.
func (c *Console) DrillsEnabled() bool { return c.drills.sys != nil }

// Drills are the drills the console offers (chaos/drill.All).
func (c *Console) Drills() []drill.Drill { return drill.All() }

// Drill returns a copy of the current or last run (nil: none yet).
func (c *Console) Drill() *DrillRun {
	c.drills.mu.Lock()
	defer c.drills.mu.Unlock()
	if c.drills.cur == nil {
		return nil
	}
	cp := *c.drills.cur
	cp.Lines = append([]string(nil), cp.Lines...)
	cp.Results = append([]invariant.Result(nil), cp.Results...)
	return &cp
}

// RunDrill starts the drill named name with checkout load for d, in the
// background (ctx bounds it, with drillTimeout); the page follows it
// through Drill.
func (c *Console) RunDrill(ctx context.Context, name string, d time.Duration, operator string) error {
	if c.drills.sys == nil {
		return errors.New("this console cannot run drills (it needs the sandbox's run directory: WEB_CONSOLE_RUN_DIR)")
	}
	ds, err := drill.Lookup(name)
	if err != nil || len(ds) != 1 {
		return fmt.Errorf("%w: no drill %q", ErrUnknown, name)
	}
	if d < MinDrillDuration || d > MaxDrillDuration {
		return fmt.Errorf("the load must run %s to %s (got %s)", MinDrillDuration, MaxDrillDuration, d)
	}
	c.drills.mu.Lock()
	if c.drills.cur != nil && c.drills.cur.Running {
		c.drills.mu.Unlock()
		return ErrDrillRunning
	}
	run := &DrillRun{Name: name, Duration: d, Started: time.Now().UTC(), Operator: operator, Running: true}
	c.drills.cur = run
	c.drills.mu.Unlock()

	go func() {
		ctx, cancel := context.WithTimeout(ctx, drillTimeout)
		defer cancel()
		rep, err := drill.Execute(ctx, c.drills.sys, ds[0], drill.Config{Duration: d, Rate: DrillRate, Customers: 5,
			Log: lineWriter(func(line string) {
				c.drills.mu.Lock()
				defer c.drills.mu.Unlock()
				run.Lines = append(run.Lines, line)
			})})
		c.drills.mu.Lock()
		defer c.drills.mu.Unlock()
		run.Running, run.Results, run.Converged = false, rep.Results, rep.Converged
		if err != nil {
			run.Err = err.Error()
		}
	}()
	return nil
}

// lineWriter calls fn with each line written (a drill's timeline writes
// whole lines).
type lineWriter func(string)

func (w lineWriter) Write(p []byte) (int, error) {
	for line := range strings.SplitSeq(strings.TrimRight(string(p), "\n"), "\n") {
		w(line)
	}
	return len(p), nil
}
