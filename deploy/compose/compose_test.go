// Package compose_test checks deploy/compose against the code it runs:
// the file parses with compose-go (the library Docker Compose itself uses),
// every long-running service has a healthcheck and waits for healthy or
// completed dependencies, only the entry points are published, every
// variable a service is given is one its binary reads (and every required
// one is given), the health probes and scrape targets hit the ports the
// services listen on, .env.example documents every variable, and every
// metric a dashboard queries is one the code exports.
package compose_test

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

const root = "../.."

func load(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"},
		cli.WithWorkingDirectory("."), cli.WithProfiles([]string{"observability"}), cli.WithEnvFiles(".env.example"), cli.WithDotEnv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml does not load: %v", err)
	}
	return p
}

// binaries are the commands of the shopfloor image and the source files
// whose `env:"…"` tags are the variables they read.
var binaries = map[string][]string{
	"catalog":       {"services/catalog/cmd/catalog/run.go"},
	"orders":        {"services/orders/cmd/orders/run.go"},
	"payments":      {"services/payments/cmd/payments/run.go", "services/payments/pspsim/faults.go"},
	"notifications": {"services/notifications/cmd/notifications/run.go"},
	"search":        {"services/search/cmd/search/run.go"},
}

// common are the files every binary's Base config comes from.
var common = []string{"pkg/service/service.go", "pkg/pgdb/pgdb.go"}

var envTag = regexp.MustCompile(`env:"([A-Z0-9_]+)(,required)?"`)

// envOf returns the variables a binary reads and those it requires, from
// its config structs' tags, plus string constants named Env* (pspsim's
// fault variables).
func envOf(t *testing.T, bin string) (known, required map[string]bool) {
	t.Helper()
	known, required = map[string]bool{}, map[string]bool{}
	for _, f := range append(slices.Clone(binaries[bin]), common...) {
		src, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatalf("%s reads its config in %s: %v", bin, f, err)
		}
		for _, m := range envTag.FindAllStringSubmatch(string(src), -1) {
			known[m[1]] = true
			if m[2] != "" {
				required[m[1]] = true
			}
		}
		file, err := parser.ParseFile(token.NewFileSet(), f, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if strings.HasPrefix(name.Name, "Env") && i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						v, _ := strconv.Unquote(lit.Value)
						known[v] = true
					}
				}
			}
			return true
		})
	}
	return known, required
}

func isOneShot(s types.ServiceConfig) bool { return s.Restart == "no" }

func TestServicesAreHealthcheckedAndOrdered(t *testing.T) {
	t.Parallel()
	p := load(t)
	if len(p.Services) < 20 {
		t.Fatalf("only %d services loaded", len(p.Services))
	}
	for name, s := range p.Services {
		if !isOneShot(s) && (s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 || s.HealthCheck.Disable) {
			t.Errorf("%s: no healthcheck", name)
		}
		for dep, d := range s.DependsOn {
			want := types.ServiceConditionHealthy
			if isOneShot(p.Services[dep]) {
				want = types.ServiceConditionCompletedSuccessfully
			}
			if d.Condition != want {
				t.Errorf("%s depends on %s with condition %q, want %q", name, dep, d.Condition, want)
			}
		}
	}
}

// TestOnlyEntryPointsArePublished: catalog through Varnish, orders, search,
// Mailpit and Grafana; nothing else (admin APIs, NATS monitoring, the
// Toxiproxy API, purge endpoints) reaches the host.
func TestOnlyEntryPointsArePublished(t *testing.T) {
	t.Parallel()
	p := load(t)
	want := map[string]uint32{"varnish": 80, "orders": 8082, "search": 8085, "mailpit": 8025, "otel-lgtm": 3000}
	got := map[string]uint32{}
	for name, s := range p.Services {
		for _, port := range s.Ports {
			got[name] = port.Target
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("published %v, want %v", got, want)
	}
}

var portRE = regexp.MustCompile(`:(\d+)`)

// TestEnvMatchesTheBinaries: every variable given to a shopfloor command
// is one the binary reads, the required ones are given, and HTTP_ADDR is
// the port the healthcheck probes.
func TestEnvMatchesTheBinaries(t *testing.T) {
	t.Parallel()
	p := load(t)
	checked := 0
	for name, s := range p.Services {
		if len(s.Command) == 0 {
			continue
		}
		bin := s.Command[0]
		if _, ours := binaries[bin]; !ours {
			continue
		}
		checked++
		known, required := envOf(t, bin)
		for k := range s.Environment {
			if !known[k] {
				t.Errorf("%s: %s is given %s, which it does not read", name, bin, k)
			}
		}
		if !isOneShot(s) && s.Command[1] != "psp-sim" {
			for k := range required {
				if s.Environment[k] == nil || *s.Environment[k] == "" {
					t.Errorf("%s: required %s not set", name, k)
				}
			}
		}
		addr := s.Environment["HTTP_ADDR"]
		if s.Command[1] == "psp-sim" {
			addr = s.Environment["PSP_SIM_ADDR"]
		}
		if !isOneShot(s) {
			if addr == nil {
				t.Errorf("%s: no listen address in its environment", name)
				continue
			}
			probe := strings.Join(s.HealthCheck.Test, " ")
			if m := portRE.FindStringSubmatch(*addr); m == nil || !strings.Contains(probe, "127.0.0.1:"+m[1]+"/") {
				t.Errorf("%s: listens on %s but the healthcheck runs %q", name, *addr, probe)
			}
			for _, port := range s.Ports {
				if !strings.HasSuffix(*addr, ":"+strconv.Itoa(int(port.Target))) {
					t.Errorf("%s: publishes container port %d but listens on %s", name, port.Target, *addr)
				}
			}
		}
	}
	if checked < 15 {
		t.Fatalf("only %d shopfloor services checked", checked)
	}
}

// TestEnvExampleDocumentsEveryVariable: each ${VAR} compose.yaml reads is
// in .env.example, and .env.example lists nothing else.
func TestEnvExampleDocumentsEveryVariable(t *testing.T) {
	t.Parallel()
	yaml, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(".env.example")
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$\{([A-Z0-9_]+)`).FindAllStringSubmatch(string(yaml), -1) {
		used[m[1]] = true
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([A-Z0-9_]+)=`).FindAllStringSubmatch(string(example), -1) {
		documented[m[1]] = true
	}
	if !maps.Equal(used, documented) {
		t.Fatalf("compose.yaml reads %v; .env.example documents %v", slices.Sorted(maps.Keys(used)), slices.Sorted(maps.Keys(documented)))
	}
}

// TestScrapeTargetsAreServices: the collector scrapes every long-running
// shopfloor process on the port it listens on.
func TestScrapeTargetsAreServices(t *testing.T) {
	t.Parallel()
	p := load(t)
	cfg, err := os.ReadFile("otel/collector.yaml")
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+- ([a-z-]+:\d+)$`).FindAllStringSubmatch(string(cfg), -1) {
		targets[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`targets: \[([a-z-]+:\d+)\]`).FindAllStringSubmatch(string(cfg), -1) {
		targets[m[1]] = true
	}
	want := map[string]bool{}
	for name, s := range p.Services {
		if len(s.Command) < 2 || isOneShot(s) {
			continue
		}
		if _, ours := binaries[s.Command[0]]; !ours && s.Command[0] != "varnishexporter" {
			continue
		}
		addr := s.Environment["HTTP_ADDR"]
		if s.Command[1] == "psp-sim" {
			addr = s.Environment["PSP_SIM_ADDR"]
		}
		port := "9131"
		if addr != nil {
			port = strings.TrimPrefix(*addr, ":")
		}
		want[name+":"+port] = true
	}
	if !maps.Equal(targets, want) {
		t.Fatalf("collector scrapes %v, want %v", slices.Sorted(maps.Keys(targets)), slices.Sorted(maps.Keys(want)))
	}
}

// exported collects the metric names the code defines: Prometheus client
// options and descriptors, the varnish exporter's table, and the HTTP
// server histogram otelhttp records through the OTel Prometheus exporter.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{
		"http_server_request_duration_seconds": true,
	}
	re := regexp.MustCompile(`(?:Name: +|NewDesc\(|\{"MAIN\.[a-z_]+", )"([a-z][a-z0-9_]+)"`)
	for _, dir := range []string{"pkg", "services", "deploy"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range re.FindAllStringSubmatch(string(src), -1) {
				names[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return names
}

var (
	metricRE   = regexp.MustCompile(`[a-z_][a-z0-9_]*(?:\{|\[)`)
	promqlWord = map[string]bool{"rate": true, "sum": true, "max": true, "by": true, "histogram_quantile": true, "irate": true, "increase": true}
)

// TestDashboardsQueryExportedMetrics: every metric in every panel of every
// dashboard is exported by the code (a renamed metric breaks this test, not
// a dashboard at 3 a.m.).
func TestDashboardsQueryExportedMetrics(t *testing.T) {
	t.Parallel()
	have := exported(t)
	files, err := filepath.Glob("grafana/dashboards/*.json")
	if err != nil || len(files) < 3 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	queried := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			UID    string `json:"uid"`
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil || d.UID == "" {
			t.Fatalf("%s: %v (uid %q)", f, err, d.UID)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				for _, m := range metricRE.FindAllString(tg.Expr, -1) {
					name := strings.TrimRight(m, "{[")
					if promqlWord[name] {
						continue
					}
					queried++
					base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
					if !have[name] && !have[base] {
						t.Errorf("%s, panel %q: %s is not exported by any service", f, p.Title, name)
					}
				}
			}
		}
	}
	if queried < 25 {
		t.Fatalf("only %d metric references found; is the parser reading the dashboards?", queried)
	}
}
