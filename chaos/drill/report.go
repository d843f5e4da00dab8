package drill

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
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
	// Started is when the load started (the timeline's 0).
	Started time.Time
	// Samples are the sampler's readings, once a second, oldest first.
	Samples []Point
	// Schedule is the game day's schedule with each step's outcome; nil
	// for the other drills.
	Schedule []Step
	// Err, when set, is why the drill could not run to its verdict (the
	// command sets it from Execute's error; the report is then partial).
	Err string
}

// finish copies what the run recorded into the report: Execute defers
// it, so that a drill that failed half way still reports its timeline.
func (r *Report) finish(run *Run) {
	run.mu.Lock()
	r.Timeline = append([]string(nil), run.notes...)
	r.Schedule = slices.Clone(run.schedule)
	r.Started = run.start
	r.Cfg.Seed = run.Cfg.Seed // the game day draws one when none was given
	run.mu.Unlock()
	if run.Samples != nil {
		r.Samples = run.Samples.Series()
		r.Peaks = run.Samples.Peaks()
	}
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
	if len(r.Schedule) > 0 {
		fmt.Fprintf(&b, "schedule (seed %d, %d faults):\n", r.Cfg.Seed, len(r.Schedule))
		for _, st := range r.Schedule {
			fmt.Fprintf(&b, "  %s\n", st)
		}
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

// Verdict is the report's one-word outcome: "held" (every row held),
// "VIOLATED" (a row did not hold) or "error" (the drill could not run to
// its verdict).
func (r Report) Verdict() string {
	switch {
	case r.Err != "":
		return "error"
	case r.Violated():
		return "VIOLATED"
	case len(r.Results) == 0:
		return "error"
	}
	return "held"
}

// JSONReport is the JSON form of a Report (the file <drill>.json of a
// report directory). Durations are in seconds; times in RFC 3339 UTC.
// It is a DTO: Drill holds functions, so the report is never marshalled
// directly.
type JSONReport struct {
	Drill    string `json:"drill"`
	Fault    string `json:"fault"`
	Proves   string `json:"proves"`
	Resource string `json:"resource,omitempty"`
	Runbook  string `json:"runbook"`
	RunID    string `json:"run_id"`
	// Verdict: held, VIOLATED or error.
	Verdict  string     `json:"verdict"`
	Error    string     `json:"error,omitempty"`
	Started  time.Time  `json:"started"`
	Config   JSONConfig `json:"config"`
	Timeline []string   `json:"timeline"`
	// Schedule is the game day's (absent for other drills).
	Schedule      []JSONStep         `json:"schedule,omitempty"`
	Load          JSONLoad           `json:"load"`
	Converged     bool               `json:"converged"`
	ConvergedInS  float64            `json:"converged_in_s"`
	Peaks         map[string]float64 `json:"peaks,omitempty"`
	Samples       []JSONSample       `json:"samples"`
	Results       []JSONResult       `json:"results"`
	ViolatedCount int                `json:"violated"`
}

// JSONConfig is the drill's Config.
type JSONConfig struct {
	DurationS float64 `json:"duration_s"`
	FaultForS float64 `json:"fault_for_s"`
	Rate      float64 `json:"rate"`
	Customers int     `json:"customers"`
	DeadlineS float64 `json:"deadline_s"`
	Seed      int64   `json:"seed,omitempty"`
}

// JSONStep is one step of the game day's schedule: when (seconds after
// the fault window opened) and what it injected, and what happened.
type JSONStep struct {
	Drill    string  `json:"drill"`
	Resource string  `json:"resource"`
	AtS      float64 `json:"at_s"`
	ForS     float64 `json:"for_s"`
	Injected bool    `json:"injected"`
	Healed   bool    `json:"healed"`
	// InjectedAtS and HealedAtS are when its Inject and Heal returned.
	InjectedAtS float64 `json:"injected_at_s,omitempty"`
	HealedAtS   float64 `json:"healed_at_s,omitempty"`
	Error       string  `json:"error,omitempty"`
}

// JSONLoad is what the checkout load did.
type JSONLoad struct {
	Started  int         `json:"started"`
	Accepted int         `json:"accepted"`
	GaveUp   int         `json:"gave_up"`
	Retries  map[int]int `json:"retries,omitempty"`
	Refused  map[int]int `json:"refused,omitempty"`
}

// JSONSample is one reading of the sampler, T seconds after the load
// started.
type JSONSample struct {
	T      float64            `json:"t"`
	Values map[string]float64 `json:"values"`
}

// JSONResult is one verdict row.
type JSONResult struct {
	Invariant string `json:"invariant"`
	Held      bool   `json:"held"`
	// Verdict: held or VIOLATED, as in the table.
	Verdict  string         `json:"verdict"`
	Evidence string         `json:"evidence"`
	Counts   map[string]int `json:"counts,omitempty"`
}

// Runbook is the runbook page of the drill named name, relative to the
// repository: docs/runbooks/<name>.md.
func Runbook(name string) string { return "docs/runbooks/" + name + ".md" }

// JSON returns the report's DTO.
func (r Report) JSON() JSONReport {
	j := JSONReport{
		Drill: r.Drill.Name, Fault: r.Drill.Fault, Proves: r.Drill.Proves, Resource: r.Drill.Resource, Runbook: Runbook(r.Drill.Name),
		RunID: r.RunID, Verdict: r.Verdict(), Error: r.Err, Started: r.Started.UTC(),
		Config: JSONConfig{DurationS: r.Cfg.Duration.Seconds(), FaultForS: r.Cfg.FaultFor.Seconds(), Rate: r.Cfg.Rate,
			Customers: r.Cfg.Customers, DeadlineS: r.Cfg.Deadline.Seconds(), Seed: r.Cfg.Seed},
		Timeline:  append([]string{}, r.Timeline...),
		Load:      JSONLoad{Started: r.Load.Started, Accepted: len(r.Load.Accepted), GaveUp: r.Load.GaveUp, Retries: r.Load.Retries, Refused: r.Load.Refused},
		Converged: r.Converged, ConvergedInS: r.ConvergedIn.Seconds(), Peaks: r.Peaks,
		Samples: []JSONSample{}, Results: []JSONResult{},
	}
	for _, st := range r.Schedule {
		j.Schedule = append(j.Schedule, JSONStep{Drill: st.Drill, Resource: st.Resource, AtS: st.At.Seconds(), ForS: st.For.Seconds(),
			Injected: st.Injected, Healed: st.Healed, InjectedAtS: st.InjectedAt.Seconds(), HealedAtS: st.HealedAt.Seconds(), Error: st.Err})
	}
	for _, p := range r.Samples {
		j.Samples = append(j.Samples, JSONSample{T: p.At.Seconds(), Values: p.Values})
	}
	for _, x := range r.Results {
		j.Results = append(j.Results, JSONResult{Invariant: x.Invariant, Held: x.Held, Verdict: verdict(x.Held), Evidence: x.Evidence, Counts: x.Counts})
		if !x.Held {
			j.ViolatedCount++
		}
	}
	return j
}

func verdict(held bool) string {
	if held {
		return "held"
	}
	return "VIOLATED"
}

// Markdown renders the report as a Markdown page: the drill, its
// configuration, the schedule (game day), the verdict table, the peaks
// and the timeline.
func (r Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s (run %s): %s\n\n", r.Drill.Name, r.RunID, r.Verdict())
	fmt.Fprintf(&b, "- **fault:** %s\n- **proves:** %s\n", r.Drill.Fault, r.Drill.Proves)
	if r.Drill.Resource != "" {
		fmt.Fprintf(&b, "- **resource:** %s\n", r.Drill.Resource)
	}
	fmt.Fprintf(&b, "- **runbook:** `%s`\n", Runbook(r.Drill.Name))
	if !r.Started.IsZero() {
		fmt.Fprintf(&b, "- **started:** %s\n", r.Started.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "- **load:** %.0f checkouts/s for %s, fault for %s; converge deadline %s", r.Cfg.Rate, r.Cfg.Duration, r.Cfg.FaultFor, r.Cfg.Deadline)
	if r.Cfg.Seed != 0 {
		fmt.Fprintf(&b, "; seed %d", r.Cfg.Seed)
	}
	b.WriteString("\n")
	if r.Err != "" {
		fmt.Fprintf(&b, "- **could not run:** %s\n", r.Err)
	}
	if len(r.Schedule) > 0 {
		fmt.Fprintf(&b, "\n## Schedule (seed %d)\n\n| at | for | fault | resource | ran | outcome |\n|---|---|---|---|---|---|\n", r.Cfg.Seed)
		for _, st := range r.Schedule {
			ran := "–"
			if st.InjectedAt > 0 || st.HealedAt > 0 {
				ran = fmt.Sprintf("%.1fs–%.1fs", st.InjectedAt.Seconds(), st.HealedAt.Seconds())
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", st.At, st.For, st.Drill, st.Resource, ran, strings.ReplaceAll(st.Outcome(), "|", "/"))
		}
	}
	if len(r.Results) > 0 {
		b.WriteString("\n## Verdicts\n\n")
		b.WriteString(Table(r.Results))
	}
	if p := peaks(r.Peaks); p != "" {
		fmt.Fprintf(&b, "\n## Peaks\n\n%s\n", p)
	}
	if len(r.Timeline) > 0 {
		b.WriteString("\n## Timeline\n\n```\n")
		for _, l := range r.Timeline {
			b.WriteString(l + "\n")
		}
		b.WriteString("```\n")
	}
	return b.String()
}

// Matrix renders several reports as one Markdown table: a row per
// invariant (in the order they first appear), a column per drill, each
// cell held, VIOLATED or – (the drill has no such row); a last row says
// each drill's verdict (held, VIOLATED or error).
func Matrix(reps []Report) string {
	var rows []string
	seen := map[string]bool{}
	cells := make([]map[string]string, len(reps))
	for i, r := range reps {
		cells[i] = map[string]string{}
		for _, x := range r.Results {
			if !seen[x.Invariant] {
				seen[x.Invariant] = true
				rows = append(rows, x.Invariant)
			}
			// A row twice in one report: VIOLATED wins.
			if c := cells[i][x.Invariant]; c != "VIOLATED" {
				cells[i][x.Invariant] = verdict(x.Held)
			}
		}
	}
	var b strings.Builder
	b.WriteString("| invariant |")
	for _, r := range reps {
		fmt.Fprintf(&b, " %s |", r.Drill.Name)
	}
	b.WriteString("\n|---|")
	for range reps {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, inv := range rows {
		fmt.Fprintf(&b, "| %s |", strings.ReplaceAll(inv, "|", "/"))
		for i := range reps {
			c := cells[i][inv]
			if c == "" {
				c = "–"
			}
			fmt.Fprintf(&b, " %s |", c)
		}
		b.WriteString("\n")
	}
	b.WriteString("| **verdict** |")
	for _, r := range reps {
		fmt.Fprintf(&b, " **%s** |", r.Verdict())
	}
	b.WriteString("\n")
	return b.String()
}

// WriteFiles writes the report into dir as <name>.json (JSON) and
// <name>.md (Markdown), creating dir; name is the drill's name unless
// the caller disambiguates a drill run twice. It returns the paths.
func (r Report) WriteFiles(dir, name string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("report directory: %w", err)
	}
	js, err := json.MarshalIndent(r.JSON(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("report %s: %w", name, err)
	}
	jp, mp := filepath.Join(dir, name+".json"), filepath.Join(dir, name+".md")
	if err := os.WriteFile(jp, append(js, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("report %s: %w", name, err)
	}
	if err := os.WriteFile(mp, []byte(r.Markdown()), 0o600); err != nil {
		return nil, fmt.Errorf("report %s: %w", name, err)
	}
	return []string{jp, mp}, nil
}
