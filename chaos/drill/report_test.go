package drill_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/chaos/drill"
	"github.com/shopfloor/shopfloor/chaos/invariant"
)

func TestTable(t *testing.T) {
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

func TestReportVerdict(t *testing.T) {
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

func TestLookup(t *testing.T) {
	t.Parallel()
	all := drill.All()
	want := []string{"broker-down", "consumer-killed", "psp-errors", "psp-timeout-after-charge", "redis-down", "relay-killed", "worker-killed"}
	if len(all) != len(want) {
		t.Fatalf("%d drills, want %d", len(all), len(want))
	}
	for i, d := range all {
		if d.Name != want[i] || d.Fault == "" || d.Proves == "" || d.Inject == nil || d.Heal == nil || d.Effect == nil {
			t.Errorf("drill %d: %+v", i, d)
		}
	}
	if ds, err := drill.Lookup("worker-killed", "all"); err != nil || len(ds) != 1+len(all) {
		t.Fatalf("Lookup(worker-killed, all) = %d drills, %v", len(ds), err)
	}
	if _, err := drill.Lookup("nope"); err == nil || !strings.Contains(err.Error(), `no drill "nope"`) {
		t.Fatalf("Lookup(nope): %v", err)
	}
}
