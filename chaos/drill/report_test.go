package drill_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/chaos/drill"
	"github.com/shopfloor/shopfloor/chaos/invariant"
)

func TestTableEscapesPipesAndAlignsTheInvariantColumn(t *testing.T) {
	t.Parallel()
	got := drill.Table([]invariant.Result{
		{Invariant: "#1 short", Held: true, Evidence: "3 of 3"},
		{Invariant: "#2 a longer invariant name", Held: false, Evidence: "a|b"},
	})
	want := "" +
		"| invariant                  | verdict  | evidence |\n" +
		"|----------------------------|----------|----------|\n" +
		"| #1 short                   | held     | 3 of 3 |\n" +
		"| #2 a longer invariant name | VIOLATED | a/b |\n"
	if got != want {
		t.Fatalf("Table:\n%s\nwant:\n%s", got, want)
	}
}

func TestReportIsViolatedWhenAnyRowDidNotHold(t *testing.T) {
	t.Parallel()
	d, err := drill.Lookup("relay-killed")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		results  []invariant.Result
		violated bool
		last     string
	}{
		{"held", []invariant.Result{{Invariant: "x", Held: true}}, false, "relay-killed: every invariant held (1 of 1 rows)"},
		{"violated", []invariant.Result{{Invariant: "x", Held: true}, {Invariant: "y"}}, true, "relay-killed: 1 of 2 rows VIOLATED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rep := drill.Report{Drill: d[0], Results: tt.results}
			if rep.Violated() != tt.violated {
				t.Fatalf("Violated() = %t", rep.Violated())
			}
			var b bytes.Buffer
			if err := rep.Write(&b); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(b.String()), "\n")
			if got := lines[len(lines)-1]; got != tt.last {
				t.Fatalf("last line %q, want %q", got, tt.last)
			}
		})
	}
}

func TestEveryDrillIsCompleteAndFoundByName(t *testing.T) {
	t.Parallel()
	all := drill.All()
	byName := map[string]drill.Drill{}
	for i, d := range all {
		byName[d.Name] = d
		if i > 0 && all[i-1].Name >= d.Name {
			t.Errorf("All() not sorted by name, or %s twice", d.Name)
		}
		if d.Fault == "" || d.Proves == "" || d.Inject == nil || d.Heal == nil || d.Effect == nil {
			t.Errorf("drill %d: %+v", i, d)
		}
		if d.GameDay && d.Resource == "" {
			t.Errorf("%s: a game-day drill must name its Resource", d.Name)
		}
	}
	for _, name := range []string{"broker-down", "consumer-killed", "game-day", "psp-errors", "psp-timeout-after-charge", "redis-down", "relay-killed", "worker-killed"} {
		if _, ok := byName[name]; !ok {
			t.Errorf("no drill %s", name)
		}
	}
	single := 0 // what "all" runs: every drill a single NATS server can take
	for _, d := range all {
		if !d.Cluster {
			single++
		}
	}
	if single == len(all) {
		t.Error("no drill needs the JetStream cluster: nats-node-killed does")
	}
	if ds, err := drill.Lookup("worker-killed", "all"); err != nil || len(ds) != 1+single || slices.ContainsFunc(ds, func(d drill.Drill) bool { return d.Cluster }) {
		t.Fatalf("Lookup(worker-killed, all) = %d drills, %v; want %d, none of the cluster's", len(ds), err, 1+single)
	}
	if _, err := drill.Lookup("nope"); err == nil || !strings.Contains(err.Error(), `no drill "nope"`) {
		t.Fatalf("Lookup(nope): %v", err)
	}
}

// TestEveryDrillHasARunbookPageInTheIndex: every drill has its runbook page, docs/runbooks/<name>.md
// (chaos list links it), and the index docs/runbooks/README.md links it.
func TestEveryDrillHasARunbookPageInTheIndex(t *testing.T) {
	t.Parallel()
	index, err := os.ReadFile("../../docs/runbooks/README.md")
	if err != nil {
		t.Fatalf("the runbook index: %v", err)
	}
	for _, d := range drill.All() {
		path := drill.Runbook(d.Name)
		b, err := os.ReadFile(filepath.Join("../..", path))
		if err != nil {
			t.Errorf("%s: no runbook page %s: %v", d.Name, path, err)
			continue
		}
		for _, section := range []string{"**Symptom", "**Where it shows", "**Check", "**Heal", "**Drill"} {
			if !strings.Contains(string(b), section) {
				t.Errorf("%s lacks %s", path, section)
			}
		}
		if !strings.HasPrefix(string(b), "# ") || !strings.Contains(string(b), "DRILL="+d.Name) {
			t.Errorf("%s: want a title and `make chaos DRILL=%s`", path, d.Name)
		}
		if !strings.Contains(string(index), "("+d.Name+".md)") {
			t.Errorf("docs/runbooks/README.md does not link %s.md", d.Name)
		}
	}
}

// sample is a report with every part filled in and fixed values.
func sample(t *testing.T, name string, results ...invariant.Result) drill.Report {
	t.Helper()
	ds, err := drill.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return drill.Report{
		Drill: ds[0], RunID: "abc123",
		Cfg:      drill.Config{Duration: time.Minute, FaultFor: 30 * time.Second, Rate: 20, Customers: 10, Deadline: 3 * time.Minute, Seed: 7},
		Started:  time.Date(2026, 12, 7, 1, 2, 3, 0, time.UTC),
		Results:  results,
		Timeline: []string{"   0.0s  start", "  15.0s  fault"},
		Samples: []drill.Point{{At: 500 * time.Millisecond, Values: map[string]float64{"outbox backlog ORDERS": 3}},
			{At: 1500 * time.Millisecond, Values: map[string]float64{"outbox backlog ORDERS": 8}}},
		Peaks:     map[string]float64{"outbox backlog ORDERS": 8},
		Converged: true, ConvergedIn: 2 * time.Second,
		Schedule: []drill.Step{{Drill: "redis-down", Resource: "redis", At: 3 * time.Second, For: 10 * time.Second, Injected: true, Healed: true,
			InjectedAt: 3100 * time.Millisecond, HealedAt: 13200 * time.Millisecond},
			{Drill: "psp-errors", Resource: "psp", At: 5 * time.Second, For: 9 * time.Second, Healed: true, Err: "inject FAILED: boom"}},
	}
}

func TestReportJSONCarriesEveryRowAndTheHeader(t *testing.T) {
	t.Parallel()
	rep := sample(t, "game-day",
		invariant.Result{Invariant: "the fault took effect (drill validity)", Held: false, Evidence: "1 of 2"},
		invariant.Result{Invariant: invariant.NameChargePaid, Held: true, Evidence: "3 paid", Counts: map[string]int{"paid": 3, "charged_once": 3}})
	b, err := json.Marshal(rep.JSON())
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Drill    string `json:"drill"`
		Resource string `json:"resource"`
		Runbook  string `json:"runbook"`
		RunID    string `json:"run_id"`
		Verdict  string `json:"verdict"`
		Started  string `json:"started"`
		Config   struct {
			DurationS float64 `json:"duration_s"`
			Seed      int64   `json:"seed"`
		} `json:"config"`
		Timeline []string `json:"timeline"`
		Schedule []struct {
			Drill       string  `json:"drill"`
			AtS         float64 `json:"at_s"`
			ForS        float64 `json:"for_s"`
			InjectedAtS float64 `json:"injected_at_s"`
			Injected    bool    `json:"injected"`
			Healed      bool    `json:"healed"`
			Error       string  `json:"error"`
		} `json:"schedule"`
		Samples []struct {
			T      float64            `json:"t"`
			Values map[string]float64 `json:"values"`
		} `json:"samples"`
		Results []struct {
			Invariant string         `json:"invariant"`
			Held      bool           `json:"held"`
			Verdict   string         `json:"verdict"`
			Counts    map[string]int `json:"counts"`
		} `json:"results"`
		Violated int `json:"violated"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Drill != "game-day" || got.RunID != "abc123" || got.Verdict != "VIOLATED" || got.Violated != 1 ||
		got.Runbook != "docs/runbooks/game-day.md" || got.Started != "2026-12-07T01:02:03Z" {
		t.Errorf("header: %s", b)
	}
	if got.Config.DurationS != 60 || got.Config.Seed != 7 || len(got.Timeline) != 2 {
		t.Errorf("config or timeline: %s", b)
	}
	if len(got.Schedule) != 2 || got.Schedule[0].Drill != "redis-down" || got.Schedule[0].AtS != 3 || got.Schedule[0].ForS != 10 || got.Schedule[0].InjectedAtS != 3.1 ||
		!got.Schedule[0].Healed || got.Schedule[1].Injected || got.Schedule[1].Error != "inject FAILED: boom" {
		t.Errorf("schedule: %+v", got.Schedule)
	}
	if len(got.Samples) != 2 || got.Samples[1].T != 1.5 || got.Samples[1].Values["outbox backlog ORDERS"] != 8 {
		t.Errorf("samples: %+v", got.Samples)
	}
	if len(got.Results) != 2 || got.Results[0].Verdict != "VIOLATED" || got.Results[0].Held || got.Results[1].Verdict != "held" ||
		got.Results[1].Counts["charged_once"] != 3 || got.Results[0].Counts != nil {
		t.Errorf("results: %+v", got.Results)
	}
	// A drill without a schedule has none in its JSON.
	plain := sample(t, "relay-killed", invariant.Result{Invariant: "x", Held: true})
	plain.Schedule = nil
	if b, _ := json.Marshal(plain.JSON()); strings.Contains(string(b), `"schedule"`) || !strings.Contains(string(b), `"verdict":"held"`) {
		t.Errorf("plain report: %s", b)
	}
}

func TestReportMarkdownShowsRowsAndFailures(t *testing.T) {
	t.Parallel()
	rep := sample(t, "game-day", invariant.Result{Invariant: "#1 short", Held: true, Evidence: "3 of 3"})
	md := rep.Markdown()
	for _, want := range []string{
		"# game-day (run abc123): held\n",
		"- **runbook:** `docs/runbooks/game-day.md`\n",
		"- **started:** 2026-12-07T01:02:03Z\n",
		"- **load:** 20 checkouts/s for 1m0s, fault for 30s; converge deadline 3m0s; seed 7\n",
		"## Schedule (seed 7)\n\n| at | for | fault | resource | ran | outcome |\n|---|---|---|---|---|---|\n" +
			"| 3s | 10s | redis-down | redis | 3.1s–13.2s | injected and healed |\n" +
			"| 5s | 9s | psp-errors | psp | – | inject failed, healed: inject FAILED: boom |\n",
		"## Verdicts\n\n| invariant | verdict  | evidence |\n",
		"| #1 short  | held     | 3 of 3 |\n",
		"## Peaks\n\noutbox backlog ORDERS 8\n",
		"## Timeline\n\n```\n   0.0s  start\n  15.0s  fault\n```\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	rep.Err = "inject: boom"
	if md := rep.Markdown(); !strings.HasPrefix(md, "# game-day (run abc123): error\n") || !strings.Contains(md, "- **could not run:** inject: boom\n") {
		t.Errorf("a failed drill:\n%s", md)
	}
	// The text report lists the schedule too.
	var b bytes.Buffer
	if err := rep.Write(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "schedule (seed 7, 2 faults):\n  3s–13s redis-down (redis): injected and healed\n") {
		t.Errorf("text report:\n%s", b.String())
	}
}

func TestMatrixShowsEachDrillsVerdictPerInvariant(t *testing.T) {
	t.Parallel()
	a := sample(t, "relay-killed",
		invariant.Result{Invariant: "the fault took effect (drill validity)", Held: true},
		invariant.Result{Invariant: "#1 every accepted order exists", Held: true})
	b := sample(t, "redis-down",
		invariant.Result{Invariant: "the fault took effect (drill validity)", Held: true},
		invariant.Result{Invariant: "#1 every accepted order exists", Held: false},
		invariant.Result{Invariant: "#6 a|b", Held: true})
	c := sample(t, "broker-down")
	c.Err = "is the system running?"
	want := "" +
		"| invariant | relay-killed | redis-down | broker-down |\n" +
		"|---|---|---|---|\n" +
		"| the fault took effect (drill validity) | held | held | – |\n" +
		"| #1 every accepted order exists | held | VIOLATED | – |\n" +
		"| #6 a/b | – | held | – |\n" +
		"| **verdict** | **held** | **VIOLATED** | **error** |\n"
	if got := drill.Matrix([]drill.Report{a, b, c}); got != want {
		t.Fatalf("Matrix:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteFilesWritesJSONAndMarkdownReports(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "reports", "x")
	rep := sample(t, "relay-killed", invariant.Result{Invariant: "x", Held: true})
	paths, err := rep.WriteFiles(dir, "relay-killed")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || paths[0] != filepath.Join(dir, "relay-killed.json") || paths[1] != filepath.Join(dir, "relay-killed.md") {
		t.Fatalf("paths %v", paths)
	}
	b, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	var j drill.JSONReport
	if err := json.Unmarshal(b, &j); err != nil || j.Drill != "relay-killed" || j.Verdict != "held" {
		t.Fatalf("%s: %v %+v", paths[0], err, j)
	}
	md, err := os.ReadFile(paths[1])
	if err != nil || !strings.HasPrefix(string(md), "# relay-killed (run abc123): held") {
		t.Fatalf("%s: %v %s", paths[1], err, md)
	}
}
