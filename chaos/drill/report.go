package drill

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/chaos/invariant"
	"github.com/shopfloor/shopfloor/chaos/load"
)

// Report is the outcome of one drill.
type Report struct {
	Drill Drill
	RunID string
	Cfg   Config
	Load  load.Result
	// Results are the verdicts, the drill's own rows first.
	Results []invariant.Result
	// Converged is false when the deadline passed first.
	Converged   bool
	ConvergedIn time.Duration
	// Timeline is what happened when (the lines Run.Logf wrote).
	Timeline []string
	// Peaks are the sampler's highest values (backlogs, lags, queues).
	Peaks map[string]float64
}

// Violated reports whether any row did not hold.
func (r Report) Violated() bool { return invariant.AnyViolated(r.Results) }

// Write prints the report: the drill, the peaks seen during it, and the
// table "invariant | held / VIOLATED | evidence".
func (r Report) Write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "\n== %s (run %s) ==\n", r.Drill.Name, r.RunID)
	fmt.Fprintf(&b, "fault:  %s\n", r.Drill.Fault)
	fmt.Fprintf(&b, "proves: %s\n", r.Drill.Proves)
	fmt.Fprintf(&b, "load:   %.0f checkouts/s for %s, fault for %s; converge deadline %s\n", r.Cfg.Rate, r.Cfg.Duration, r.Cfg.FaultFor, r.Cfg.Deadline)
	if p := peaks(r.Peaks); p != "" {
		fmt.Fprintf(&b, "peaks:  %s\n", p)
	}
	b.WriteString("\n")
	b.WriteString(Table(r.Results))
	n := 0
	for _, x := range r.Results {
		if !x.Held {
			n++
		}
	}
	if n == 0 {
		fmt.Fprintf(&b, "\n%s: every invariant held (%d of %d rows)\n", r.Drill.Name, len(r.Results), len(r.Results))
	} else {
		fmt.Fprintf(&b, "\n%s: %d of %d rows VIOLATED\n", r.Drill.Name, n, len(r.Results))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Table renders results as a Markdown table with aligned columns.
func Table(results []invariant.Result) string {
	w0, w1 := len("invariant"), len("VIOLATED")
	for _, x := range results {
		w0 = max(w0, len([]rune(x.Invariant)))
	}
	var b strings.Builder
	row := func(a, v, e string) {
		fmt.Fprintf(&b, "| %s%s | %s%s | %s |\n", a, strings.Repeat(" ", w0-len([]rune(a))), v, strings.Repeat(" ", w1-len(v)), e)
	}
	row("invariant", "verdict", "evidence")
	fmt.Fprintf(&b, "|%s|%s|%s|\n", strings.Repeat("-", w0+2), strings.Repeat("-", w1+2), strings.Repeat("-", 10))
	for _, x := range results {
		v := "held"
		if !x.Held {
			v = "VIOLATED"
		}
		row(x.Invariant, v, strings.ReplaceAll(x.Evidence, "|", "/"))
	}
	return b.String()
}

func peaks(m map[string]float64) string {
	var parts []string
	for k, v := range m {
		if v != 0 && !strings.HasPrefix(k, "catalog cache fail_open") {
			parts = append(parts, fmt.Sprintf("%s %g", k, v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
