package compose_test

// The observability profile's alerting and recording rules
// (prometheus/rules/*.rules.yml), checked with Prometheus' own tools and
// against the code and the docs:
//   - `promtool check rules` accepts every rule file and `promtool check
//     config` the server's configuration;
//   - `promtool test rules` passes the unit tests (rules/*_test.yml:
//     synthetic series, expected alerts), and every alert fires in them
//     at least once;
//   - every alert has a severity of the policy, a summary, a description
//     and a runbook_url whose anchor is its section of docs/runbooks.md,
//     and every alert section there belongs to an alert;
//   - every metric a rule reads is exported by the code;
//   - the server loads exactly the rule files (not their tests).
//
// promtool comes from `make tools` (./bin) or PATH; without it the tests
// fail, they never skip (CI must not pass without running the rules).

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// runbookURL is the prefix of every alert's runbook_url: docs/runbooks.md
// as GitHub renders it; the anchor names the alert's section.
const runbookURL = "https://github.com/shopfloor/shopfloor/blob/main/docs/runbooks.md#"

// severities: critical pages a person now, warning is a ticket.
var severities = []string{"critical", "warning"}

func promtool(t *testing.T) string {
	t.Helper()
	if p, err := filepath.Abs(filepath.Join(root, "bin", "promtool")); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found in ./bin or PATH: run `make tools` (go install github.com/prometheus/prometheus/cmd/promtool)")
	}
	return p
}

// promtoolIn runs promtool in prometheus/ (the rule files' and unit
// tests' directory) and fails the test on a non-zero exit.
func promtoolIn(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = "prometheus"
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// ruleFiles are the rule files, relative to prometheus/; the unit tests
// beside them end in _test.yml.
func ruleFiles(t *testing.T) []string { return promGlob(t, "rules/*.rules.yml") }
func testFiles(t *testing.T) []string { return promGlob(t, "rules/*_test.yml") }

func promGlob(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("prometheus", pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("prometheus/%s: no files (%v)", pattern, err)
	}
	for i, f := range files {
		files[i], _ = filepath.Rel("prometheus", f)
	}
	return files
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// rules returns every rule of every rule file.
func rules(t *testing.T) []rule {
	t.Helper()
	var out []rule
	for _, f := range ruleFiles(t) {
		var doc struct {
			Groups []struct {
				Rules []rule `yaml:"rules"`
			} `yaml:"groups"`
		}
		readYAML(t, filepath.Join("prometheus", f), &doc)
		for _, g := range doc.Groups {
			out = append(out, g.Rules...)
		}
	}
	return out
}

func alerts(t *testing.T) []rule {
	t.Helper()
	var out []rule
	for _, r := range rules(t) {
		if r.Alert != "" {
			out = append(out, r)
		}
	}
	if len(out) < 10 {
		t.Fatalf("only %d alerts found; are the rule files read?", len(out))
	}
	return out
}

func TestPromtoolChecksRulesAndConfig(t *testing.T) {
	t.Parallel()
	promtoolIn(t, append([]string{"check", "rules", "--lint=all", "--lint-fatal"}, ruleFiles(t)...)...)
	// --syntax-only: the rule_files pattern names the container's path.
	promtoolIn(t, "check", "config", "--syntax-only", "prometheus.yml")
}

func TestPromtoolRuleUnitTests(t *testing.T) {
	t.Parallel()
	t.Log(promtoolIn(t, append([]string{"test", "rules"}, testFiles(t)...)...))
}

// TestEveryAlertFiresInATest: each alert is expected to fire (a non-empty
// exp_alerts) at least once in the unit tests.
func TestEveryAlertFiresInATest(t *testing.T) {
	t.Parallel()
	fired := map[string]bool{}
	for _, f := range testFiles(t) {
		var doc struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string `yaml:"alertname"`
					ExpAlerts []any  `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		readYAML(t, filepath.Join("prometheus", f), &doc)
		for _, tc := range doc.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fired[a.Alertname] = true
				}
			}
		}
	}
	for _, a := range alerts(t) {
		if !fired[a.Alert] {
			t.Errorf("%s: no unit test expects it to fire", a.Alert)
		}
	}
}

// anchor is the id GitHub gives a Markdown heading: lower case, spaces to
// hyphens, punctuation other than - and _ dropped.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

var headingRE = regexp.MustCompile(`(?m)^#{2,4} +(.+?)\s*$`)

// TestAlertsFollowThePolicy: every alert has a severity of the policy, a
// summary, a description and a runbook_url naming its own section of
// docs/runbooks.md; every alert section there (a heading that is one word
// in CamelCase) is an alert's.
func TestAlertsFollowThePolicy(t *testing.T) {
	t.Parallel()
	md, err := os.ReadFile(filepath.Join(root, "docs", "runbooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	for _, m := range headingRE.FindAllStringSubmatch(string(md), -1) {
		sections[anchor(m[1])] = m[1]
	}
	named := map[string]bool{}
	for _, a := range alerts(t) {
		if !slices.Contains(severities, a.Labels["severity"]) {
			t.Errorf("%s: severity %q, want one of %v", a.Alert, a.Labels["severity"], severities)
		}
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(a.Annotations[k]) == "" {
				t.Errorf("%s: no %s annotation", a.Alert, k)
			}
		}
		u := a.Annotations["runbook_url"]
		frag, ok := strings.CutPrefix(u, runbookURL)
		if !ok {
			t.Errorf("%s: runbook_url %q does not start with %s", a.Alert, u, runbookURL)
			continue
		}
		if _, ok := sections[frag]; !ok {
			t.Errorf("%s: runbook_url anchor #%s is not a heading of docs/runbooks.md", a.Alert, frag)
		}
		if frag != anchor(a.Alert) {
			t.Errorf("%s: runbook_url anchor #%s, want its own section #%s", a.Alert, frag, anchor(a.Alert))
		}
		named[a.Alert] = true
	}
	camel := regexp.MustCompile(`^[A-Z][a-z]+(?:[A-Z][a-z]+)+$`)
	for _, h := range sections {
		if camel.MatchString(h) && !named[h] {
			t.Errorf("docs/runbooks.md: section %q is no alert's (renamed or removed?)", h)
		}
	}
}

// TestServerLoadsTheRuleFiles: prometheus.yml's rule_files pattern takes
// every rule file and none of the unit tests (a test file is not a rule
// file: the server would refuse to start).
func TestServerLoadsTheRuleFiles(t *testing.T) {
	t.Parallel()
	var cfg struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	readYAML(t, "prometheus/prometheus.yml", &cfg)
	if len(cfg.RuleFiles) != 1 {
		t.Fatalf("rule_files %v: want one pattern", cfg.RuleFiles)
	}
	pattern := filepath.Base(cfg.RuleFiles[0])
	loaded := map[string]bool{}
	entries, err := os.ReadDir("prometheus/rules")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if ok, _ := filepath.Match(pattern, e.Name()); ok {
			loaded[e.Name()] = true
		}
	}
	want := map[string]bool{}
	for _, f := range ruleFiles(t) {
		want[filepath.Base(f)] = true
	}
	if !maps.Equal(loaded, want) {
		t.Errorf("rule_files %s loads %v, want the rule files %v", cfg.RuleFiles[0], slices.Sorted(maps.Keys(loaded)), slices.Sorted(maps.Keys(want)))
	}
}

// promqlNames are the words of PromQL that are not metric names.
var promqlNames = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}

// metricsOf returns the metric (and recording rule) names a PromQL
// expression selects: strings, label matchers, ranges, grouping clauses
// and function calls are left out.
func metricsOf(expr string) []string {
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`"(?:[^"\\]|\\.)*"`),
		regexp.MustCompile(`\{[^}]*\}`),
		regexp.MustCompile(`\[[^\]]*\]`),
		regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`),
	} {
		expr = re.ReplaceAllString(expr, " ")
	}
	var out []string
	for _, m := range regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?`).FindAllStringSubmatch(expr, -1) {
		if m[2] == "" && !promqlNames[strings.ToLower(m[1])] {
			out = append(out, m[1])
		}
	}
	return out
}

// TestAlertRulesQueryExportedMetrics: every metric the rules read is
// exported by the code or recorded by another rule; Prometheus' own `up`
// aside. A renamed metric fails here instead of silencing an alert.
func TestAlertRulesQueryExportedMetrics(t *testing.T) {
	t.Parallel()
	have := exported(t)
	have["up"] = true
	all := rules(t)
	for _, r := range all {
		if r.Record != "" {
			have[r.Record] = true
		}
	}
	read := 0
	for _, r := range all {
		for _, name := range metricsOf(r.Expr) {
			read++
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
			if !have[name] && !have[base] {
				t.Errorf("rule %s%s reads %s, which no service exports", r.Alert, r.Record, name)
			}
		}
	}
	if read < 25 {
		t.Fatalf("only %d metric references found; is the parser reading the rules?", read)
	}
}
