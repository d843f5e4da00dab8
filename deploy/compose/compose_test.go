// Package compose_test checks deploy/compose against the code it runs:
// the file parses with compose-go (the library Docker Compose itself uses),
// every long-running service has a healthcheck and waits for healthy or
// completed dependencies, only the entry points are published and never an
// admin listener, every variable a service is given is one its binary reads
// (and every required one is given), the health probes and scrape targets
// hit the admin ports the services listen on, .env.example documents every
// variable, every metric a dashboard queries is one the code exports, the
// secrets have no defaults and reach only the services that need them,
// every api role verifies tokens of the identity service, init-env.sh
// writes a .env that compose accepts, and the observability profile's
// Prometheus scrapes the same targets, loads the alerting rules and reads
// only metrics the code exports (the rules themselves: rules_test.go).
package compose_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/shopfloor/shopfloor/services/identity/identityapi"
)

const root = "../.."

// testSecrets are what a .env gives compose for the secrets .env.example
// leaves empty (TestSecretsHaveNoDefault checks the two lists match).
// Distinct, recognisable values: TestSecretsReachOnlyWhoNeedsThem looks
// for them in every service's environment.
var testSecrets = map[string]string{
	"SHOPFLOOR_DEMO_PASSWORD":     "test-demo-password-0",
	"ORDERS_CLIENT_SECRET":        "test-orders-client-secret-0",
	"PAYMENTS_CLIENT_SECRET":      "test-payments-client-secret-0",
	"NOTIFICATIONS_CLIENT_SECRET": "test-notifications-client-secret-0",
	"SEARCH_CLIENT_SECRET":        "test-search-client-secret-0",
	"WEB_CLIENT_SECRET":           "test-web-client-secret-0",
	"WEB_SESSION_SECRET":          "test-web-session-secret-0123456789abcdef",
	"POSTGRES_PASSWORD":           "testpostgrespassword0",
}

func env(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// loadProject loads compose.yaml (with the observability profile) as
// `docker compose` would with envFile as its .env, plus extra (which wins
// over envFile; the process environment is not read).
func loadProject(envFile string, extra map[string]string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"},
		cli.WithWorkingDirectory("."), cli.WithProfiles([]string{"observability"}),
		cli.WithEnv(env(extra)), cli.WithEnvFiles(envFile), cli.WithDotEnv)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

// load is compose.yaml with .env.example and the test secrets.
func load(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadProject(".env.example", testSecrets)
	if err != nil {
		t.Fatalf("compose.yaml does not load: %v", err)
	}
	return p
}

// binaries are the commands of the shopfloor image and the source files
// whose `env:"…"` tags are the variables they read.
var binaries = map[string][]string{
	"catalog":       withBase(cmdFiles("catalog"), authConfig),
	"orders":        withBase(cmdFiles("orders"), authConfig, "pkg/auth/client.go"),
	"payments":      withBase(cmdFiles("payments"), "services/payments/pspsim/faults.go", authConfig),
	"notifications": withBase(cmdFiles("notifications"), authConfig),
	"search":        withBase(cmdFiles("search"), authConfig),
	// new-service: binaries above this line
	// identity and web have no database: their Config embeds
	// service.Telemetry, not Base.
	"identity": append(cmdFiles("identity"), "pkg/service/program.go", "pkg/service/telemetry.go", authConfig),
	"web":      append(cmdFiles("web"), "pkg/service/program.go", "pkg/service/telemetry.go", authConfig),
}

// apiServices are the services whose api role runs in compose.
var apiServices = []string{
	"catalog", "orders", "payments", "notifications", "search",
	// new-service: api services above this line
}

// cmdFiles are the Go files of cmd/<svc> (not its tests): the command
// table, the serve command's Config and the other commands' configs.
func cmdFiles(svc string) []string {
	dir := filepath.Join("services", svc, "cmd", svc)
	names, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
	if err != nil {
		panic(err)
	}
	var files []string
	for _, n := range names {
		if !strings.HasSuffix(n, "_test.go") {
			files = append(files, filepath.Join(dir, filepath.Base(n)))
		}
	}
	return files
}

// authConfig holds auth.Config, the token settings of every service.
const authConfig = "pkg/auth/auth.go"

// withBase adds the files a service's Base config comes from.
func withBase(files []string, more ...string) []string {
	return append(append(files, more...), "pkg/service/program.go", "pkg/service/service.go", "pkg/service/jobs.go", "pkg/service/telemetry.go", "pkg/pgdb/pgdb.go")
}

var envTag = regexp.MustCompile(`env:"([A-Z0-9_]+)(,required)?"`)

// envOf returns the variables a binary reads and those it requires, from
// its config structs' tags, plus string constants named Env* (pspsim's
// fault variables).
func envOf(t *testing.T, bin string) (known, required map[string]bool) {
	t.Helper()
	known, required = map[string]bool{}, map[string]bool{}
	for _, f := range binaries[bin] {
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
// Mailpit, Grafana and the identity provider (for browsers and `make
// token`); nothing else (admin APIs, NATS monitoring, the Toxiproxy API,
// purge endpoints) reaches the host.
func TestOnlyEntryPointsArePublished(t *testing.T) {
	t.Parallel()
	p := load(t)
	want := map[string]uint32{"web": 8000, "varnish": 80, "orders": 8082, "search": 8085, "mailpit": 8025, "otel-lgtm": 3000, "identity": 8090}
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

// TestNoAdminListenerIsPublished: every shopfloor serve process has an
// admin listener (ADMIN_ADDR, ADR 0023) on a port of its own, reachable
// inside the network (":port", not 127.0.0.1, so the collector can scrape
// it), and no published port of any service is an admin port.
func TestNoAdminListenerIsPublished(t *testing.T) {
	t.Parallel()
	p := load(t)
	adminPorts := map[uint32]string{}
	for name, s := range p.Services {
		if len(s.Command) < 2 || s.Command[1] != "serve" || isOneShot(s) {
			continue
		}
		if _, ours := binaries[s.Command[0]]; !ours {
			continue
		}
		admin, public := s.Environment["ADMIN_ADDR"], s.Environment["HTTP_ADDR"]
		if admin == nil || public == nil {
			t.Errorf("%s: HTTP_ADDR and ADMIN_ADDR must both be set", name)
			continue
		}
		m := regexp.MustCompile(`^:(\d+)$`).FindStringSubmatch(*admin)
		if m == nil {
			t.Errorf("%s: ADMIN_ADDR %q: want \":port\" (every interface of the container, on the internal network)", name, *admin)
			continue
		}
		if strings.HasSuffix(*public, ":"+m[1]) {
			t.Errorf("%s: ADMIN_ADDR %s is HTTP_ADDR's port", name, *admin)
		}
		port, _ := strconv.Atoi(m[1])
		adminPorts[uint32(port)] = name
		for _, pp := range s.Ports {
			if pp.Target == uint32(port) {
				t.Errorf("%s: publishes its admin listener (container port %d)", name, pp.Target)
			}
		}
	}
	if len(adminPorts) < 6 || adminPorts[9090] != "identity" {
		t.Fatalf("only %d admin ports found, want identity's 9090 among them: %v", len(adminPorts), adminPorts)
	}
	// No container of a shopfloor binary publishes any admin port number,
	// and no host port is one (a reader would take it for one).
	for name, s := range p.Services {
		ours := len(s.Command) > 0 && binaries[s.Command[0]] != nil
		for _, pp := range s.Ports {
			if svc, ok := adminPorts[pp.Target]; ok && ours {
				t.Errorf("%s: publishes container port %d, an admin port (%s's)", name, pp.Target, svc)
			}
			if hp, _ := strconv.Atoi(pp.Published); adminPorts[uint32(hp)] != "" {
				t.Errorf("%s: publishes host port %d, an admin port number (%s's)", name, hp, adminPorts[uint32(hp)])
			}
		}
	}
}

var portRE = regexp.MustCompile(`:(\d+)`)

// TestEnvMatchesTheBinaries: every variable given to a shopfloor command
// is one the binary reads, the required ones are given, the healthcheck
// probes ADMIN_ADDR (its /readyz names the failing checks; PSP_SIM_ADDR
// for the simulator), and a published port is HTTP_ADDR's.
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
		addr, probed := s.Environment["HTTP_ADDR"], s.Environment["ADMIN_ADDR"]
		if s.Command[1] == "psp-sim" {
			addr, probed = s.Environment["PSP_SIM_ADDR"], s.Environment["PSP_SIM_ADDR"]
		}
		if !isOneShot(s) {
			if addr == nil || probed == nil {
				t.Errorf("%s: no listen address in its environment", name)
				continue
			}
			probe := strings.Join(s.HealthCheck.Test, " ")
			if m := portRE.FindStringSubmatch(*probed); m == nil || !strings.Contains(probe, "127.0.0.1:"+m[1]+"/") {
				t.Errorf("%s: its admin listener is on %s but the healthcheck runs %q", name, *probed, probe)
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
// shopfloor process on its admin listener (the simulator and the
// exporter, which have one listener, on that).
func TestScrapeTargetsAreServices(t *testing.T) {
	t.Parallel()
	p := load(t)
	cfg, err := os.ReadFile("otel/collector.yaml")
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+- ([a-z0-9-]+:\d+)$`).FindAllStringSubmatch(string(cfg), -1) {
		targets[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`targets: \[([a-z0-9-]+:\d+)\]`).FindAllStringSubmatch(string(cfg), -1) {
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
		addr := s.Environment["ADMIN_ADDR"]
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
	// The alerting Prometheus scrapes the same processes, one job per
	// service (its rules select job="orders"): a target's container is
	// the job or the job's role (orders-relay), the exporter varnish's.
	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "prometheus/prometheus.yml", &prom)
	scraped := map[string]bool{}
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				scraped[target] = true
				host, _, _ := strings.Cut(target, ":")
				if host != sc.JobName && !strings.HasPrefix(host, sc.JobName+"-") {
					t.Errorf("prometheus.yml: job %s scrapes %s, another service's process", sc.JobName, target)
				}
			}
		}
	}
	if !maps.Equal(scraped, want) {
		t.Errorf("prometheus.yml scrapes %v, want %v", slices.Sorted(maps.Keys(scraped)), slices.Sorted(maps.Keys(want)))
	}
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// TestObservabilityProfileLoadsTheRules: the profile's prometheus service
// reads prometheus.yml where its command says, mounts the rules directory
// where rule_files looks, keeps the SLOs' 28 days, and Grafana (otel-lgtm)
// provisions it as a data source at its address.
func TestObservabilityProfileLoadsTheRules(t *testing.T) {
	t.Parallel()
	p := load(t)
	s, ok := p.Services["prometheus"]
	if !ok {
		t.Fatal("no prometheus service")
	}
	if !slices.Equal(s.Profiles, []string{"observability"}) {
		t.Errorf("prometheus: profiles %v, want [observability]", s.Profiles)
	}
	flags := map[string]string{}
	for _, arg := range s.Command {
		k, v, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		flags[k] = v
	}
	mounts := map[string]string{} // source relative to compose.yaml → target
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind {
			rel, err := filepath.Rel(p.WorkingDir, v.Source)
			if err != nil {
				t.Fatal(err)
			}
			mounts[filepath.ToSlash(rel)] = v.Target
			if !v.ReadOnly {
				t.Errorf("prometheus: %s is mounted read-write", rel)
			}
		}
	}
	if cfg := flags["config.file"]; cfg == "" || mounts["prometheus/prometheus.yml"] != cfg {
		t.Errorf("prometheus: --config.file=%q, prometheus/prometheus.yml mounted at %q", cfg, mounts["prometheus/prometheus.yml"])
	}
	var cfg struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	readYAML(t, "prometheus/prometheus.yml", &cfg)
	if len(cfg.RuleFiles) != 1 || path.Dir(cfg.RuleFiles[0]) != mounts["prometheus/rules"] {
		t.Errorf("prometheus.yml: rule_files %v, the rules directory is mounted at %q", cfg.RuleFiles, mounts["prometheus/rules"])
	}
	if d, err := time.ParseDuration(strings.Replace(flags["storage.tsdb.retention.time"], "d", "h", 1)); err != nil || d < 28*24 {
		t.Errorf("prometheus: --storage.tsdb.retention.time=%q: the SLOs need 28 days", flags["storage.tsdb.retention.time"])
	}
	port := strings.TrimPrefix(cmp.Or(flags["web.listen-address"], ":9090"), "0.0.0.0")
	if probe := strings.Join(s.HealthCheck.Test, " "); !strings.Contains(probe, "127.0.0.1"+port+"/") {
		t.Errorf("prometheus: listens on %s but the healthcheck runs %q", port, probe)
	}

	// The server is the Prometheus whose promtool tests the rules.
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^PROMTOOL_VERSION\s*:=\s*v0\.3(\d\d)\.(\d+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("Makefile: no PROMTOOL_VERSION := v0.3XX.Y")
	}
	minor, _ := strconv.Atoi(string(m[1]))
	if want := fmt.Sprintf("prom/prometheus:v3.%d.%s", minor, m[2]); s.Image != want {
		t.Errorf("prometheus: image %s, want %s (the version of the Makefile's promtool)", s.Image, want)
	}

	lgtm := p.Services["otel-lgtm"]
	var ds string
	for _, v := range lgtm.Volumes {
		if rel, _ := filepath.Rel(p.WorkingDir, v.Source); filepath.ToSlash(rel) == "grafana/provisioning/datasources.yaml" {
			ds = v.Target
		}
	}
	if path.Dir(ds) != "/otel-lgtm/grafana/conf/provisioning/datasources" {
		t.Errorf("otel-lgtm: grafana/provisioning/datasources.yaml mounted at %q, want Grafana's provisioning/datasources", ds)
	}
	var prov struct {
		Datasources []struct {
			URL       string `yaml:"url"`
			IsDefault bool   `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	readYAML(t, "grafana/provisioning/datasources.yaml", &prov)
	if len(prov.Datasources) != 1 || prov.Datasources[0].URL != "http://prometheus"+port || prov.Datasources[0].IsDefault {
		t.Errorf("grafana datasources %+v: want http://prometheus%s, not the default (the dashboards read otel-lgtm's)", prov.Datasources, port)
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

// secretVarRE finds the secrets in .env.example: the *_SECRET and
// *_PASSWORD variables it leaves empty (init-env.sh fills the same ones).
var secretVarRE = regexp.MustCompile(`(?m)^([A-Z0-9_]+_(?:SECRET|PASSWORD))=(.*)$`)

// TestSecretsHaveNoDefault: compose.yaml reads every secret with
// ${VAR:?message}, never with a default, so compose refuses to start
// without it and says where to set it; .env.example leaves every one empty
// (placeholders, never working values); and the test's secrets are exactly
// those.
func TestSecretsHaveNoDefault(t *testing.T) {
	t.Parallel()
	yaml, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(".env.example")
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]bool{}
	for _, m := range secretVarRE.FindAllStringSubmatch(string(example), -1) {
		if m[2] != "" {
			t.Errorf(".env.example: %s has a value; secrets are left empty there (init-env.sh generates them)", m[1])
		}
		secrets[m[1]] = true
	}
	if !slices.Equal(slices.Sorted(maps.Keys(secrets)), slices.Sorted(maps.Keys(testSecrets))) {
		t.Fatalf(".env.example's secrets are %v; testSecrets has %v", slices.Sorted(maps.Keys(secrets)), slices.Sorted(maps.Keys(testSecrets)))
	}
	const hint = "set it in deploy/compose/.env (see .env.example)"
	required := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$\{([A-Z0-9_]+)([^}]*)\}`).FindAllStringSubmatch(string(yaml), -1) {
		name, rest := m[1], m[2]
		if strings.HasPrefix(rest, ":?") {
			required[name] = true
			if rest != ":?"+hint {
				t.Errorf("compose.yaml: ${%s%s}: want the message %q", name, rest, hint)
			}
		}
		if secrets[name] && !strings.HasPrefix(rest, ":?") {
			t.Errorf("compose.yaml: ${%s%s}: a secret must be read as ${%s:?%s} (no default, refuse to start without it)", name, rest, name, hint)
		}
	}
	if !maps.Equal(required, secrets) {
		t.Errorf("compose.yaml requires %v; .env.example's secrets are %v", slices.Sorted(maps.Keys(required)), slices.Sorted(maps.Keys(secrets)))
	}

	// Without any one of them (unset, or empty as in .env.example),
	// loading fails and the message names it and where to set it.
	for name := range testSecrets {
		for _, value := range []*string{nil, new(string)} {
			extra := maps.Clone(testSecrets)
			delete(extra, name)
			if value != nil {
				extra[name] = *value
			}
			_, err := loadProject(".env.example", extra)
			if err == nil {
				t.Errorf("compose.yaml loads with %s %s", name, map[bool]string{true: "unset", false: "empty"}[value == nil])
				continue
			}
			if !strings.Contains(err.Error(), "required variable "+name+" is missing a value: "+hint) {
				t.Errorf("without %s: %v", name, err)
			}
		}
	}
	// .env.example alone does not start anything.
	if _, err := loadProject(".env.example", nil); err == nil {
		t.Error("compose.yaml loads with .env.example alone")
	}
}

// TestNoAdminToken: admin routes take an operator's token (ADR 0022); the
// shared ADMIN_TOKEN is gone from compose and its variables.
func TestNoAdminToken(t *testing.T) {
	t.Parallel()
	p := load(t)
	for name, s := range p.Services {
		if _, ok := s.Environment["ADMIN_TOKEN"]; ok {
			t.Errorf("%s: sets ADMIN_TOKEN", name)
		}
	}
	for _, f := range []string{"compose.yaml", ".env.example"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "ADMIN_TOKEN") {
			t.Errorf("%s mentions ADMIN_TOKEN", f)
		}
	}
}

// clientSecrets parses IDENTITY_CLIENT_SECRETS as identity does
// (idp.ParseClientSecrets: comma-separated client=secret, spaces trimmed).
func clientSecrets(t *testing.T, s string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for part := range strings.SplitSeq(s, ",") {
		id, secret, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			t.Fatalf("IDENTITY_CLIENT_SECRETS %q: entry %q is not client=secret", s, part)
		}
		out[id] = secret
	}
	return out
}

func roles(s types.ServiceConfig) []string {
	if r := s.Environment["ROLES"]; r != nil {
		return strings.Split(*r, ",")
	}
	return nil
}

// TestAPIRolesVerifyIdentityTokens: identity issues tokens as
// http://localhost:IDENTITY_PORT (the URL browsers and host tools reach, on
// the host's loopback) and every process with the api role trusts exactly
// that issuer, reaches the provider at http://identity:<its HTTP_ADDR
// port> (AUTH_DISCOVERY_URL) and waits for it; orders' api has its client
// id and the secret identity knows it by. Roles that check no tokens get
// no token settings and do not wait for identity. identity knows every
// service client of identityapi, each by its own variable.
func TestAPIRolesVerifyIdentityTokens(t *testing.T) {
	t.Parallel()
	for _, port := range []string{"", "18090"} {
		extra := maps.Clone(testSecrets)
		wantPort := "8090"
		if port != "" {
			extra["IDENTITY_PORT"], wantPort = port, port
		}
		p, err := loadProject(".env.example", extra)
		if err != nil {
			t.Fatal(err)
		}
		id, ok := p.Services["identity"]
		if !ok || len(id.Command) < 2 || id.Command[0] != "identity" || id.Command[1] != "serve" {
			t.Fatalf("no identity service running `identity serve`: %+v", id.Command)
		}
		issuer := "http://localhost:" + wantPort
		if got := id.Environment["IDENTITY_ISSUER"]; got == nil || *got != issuer {
			t.Errorf("IDENTITY_PORT=%q: identity's IDENTITY_ISSUER is %v, want %s", port, got, issuer)
		}
		if len(id.Ports) != 1 || id.Ports[0].Published != wantPort || id.Ports[0].HostIP != "127.0.0.1" || id.Ports[0].Target != 8090 {
			t.Errorf("IDENTITY_PORT=%q: identity publishes %+v, want 127.0.0.1:%s:8090 (the issuer's port, loopback only)", port, id.Ports, wantPort)
		}
		if a := id.Environment["HTTP_ADDR"]; a == nil || *a != ":8090" {
			t.Fatalf("identity's HTTP_ADDR %v, want :8090", a)
		}
		discovery := "http://identity:8090"

		secrets := clientSecrets(t, *id.Environment["IDENTITY_CLIENT_SECRETS"])
		want := map[string]string{}
		for _, c := range identityapi.ServiceClients() {
			want[c.ID] = testSecrets[strings.ToUpper(c.ID)+"_CLIENT_SECRET"]
		}
		want[identityapi.ClientWeb] = testSecrets["WEB_CLIENT_SECRET"]
		if !maps.Equal(secrets, want) {
			t.Errorf("IDENTITY_CLIENT_SECRETS %v, want %v", secrets, want)
		}
		// The storefront's callback, as browsers reach it, is the web
		// client's only redirect URI; the storefront uses the same URL.
		web := p.Services["web"]
		if r, pu := id.Environment["IDENTITY_WEB_REDIRECT_URIS"], web.Environment["WEB_PUBLIC_URL"]; r == nil || pu == nil ||
			*r != *pu+"/auth/callback" || !strings.HasPrefix(*pu, "http://localhost:") {
			t.Errorf("IDENTITY_WEB_REDIRECT_URIS %v, web's WEB_PUBLIC_URL %v: want <public URL>/auth/callback", r, pu)
		}
		webAuth := map[string]string{}
		for k, v := range web.Environment {
			if strings.HasPrefix(k, "AUTH_") && v != nil {
				webAuth[k] = *v
			}
		}
		if want := map[string]string{"AUTH_ISSUER": issuer, "AUTH_DISCOVERY_URL": discovery, "AUTH_CLIENT_SECRET": secrets[identityapi.ClientWeb]}; !maps.Equal(webAuth, want) {
			t.Errorf("IDENTITY_PORT=%q: web: %v, want %v", port, webAuth, want)
		}
		if pw := id.Environment["IDENTITY_DEMO_PASSWORD"]; pw == nil || *pw != testSecrets["SHOPFLOOR_DEMO_PASSWORD"] {
			t.Errorf("IDENTITY_DEMO_PASSWORD %v, want SHOPFLOOR_DEMO_PASSWORD", pw)
		}

		apis := 0
		for name, s := range p.Services {
			if len(s.Command) < 2 || s.Command[1] != "serve" || binaries[s.Command[0]] == nil || name == "identity" || name == "web" {
				continue
			}
			auth := map[string]string{}
			for k, v := range s.Environment {
				if strings.HasPrefix(k, "AUTH_") && v != nil {
					auth[k] = *v
				}
			}
			_, waits := s.DependsOn["identity"]
			if name == "orders-consumer" || name == "orders-consumer-2" {
				// No tokens to check, but a client: it reads payments
				// (stuck-order repair) with a client-credentials token,
				// fetched when first needed.
				want := map[string]string{"AUTH_ISSUER": issuer, "AUTH_DISCOVERY_URL": discovery,
					"AUTH_CLIENT_ID": identityapi.ClientOrders, "AUTH_CLIENT_SECRET": secrets[identityapi.ClientOrders]}
				if !maps.Equal(auth, want) {
					t.Errorf("IDENTITY_PORT=%q: %s: %v, want %v", port, name, auth, want)
				}
				continue
			}
			if !slices.Contains(roles(s), "api") {
				if port == "" && (len(auth) > 0 || waits) {
					t.Errorf("%s (roles %v) checks no tokens but gets %v / waits for identity: %v", name, roles(s), slices.Sorted(maps.Keys(auth)), waits)
				}
				continue
			}
			apis++
			wantAuth := map[string]string{"AUTH_ISSUER": issuer, "AUTH_DISCOVERY_URL": discovery}
			if s.Command[0] == "orders" {
				wantAuth["AUTH_CLIENT_ID"] = identityapi.ClientOrders
				wantAuth["AUTH_CLIENT_SECRET"] = secrets[identityapi.ClientOrders]
			}
			if !maps.Equal(auth, wantAuth) {
				t.Errorf("IDENTITY_PORT=%q: %s: %v, want %v", port, name, auth, wantAuth)
			}
			if d, ok := s.DependsOn["identity"]; port == "" && (!ok || d.Condition != types.ServiceConditionHealthy) {
				t.Errorf("%s: its api role needs identity but does not wait for it to be healthy", name)
			}
		}
		if apis != len(apiServices) {
			t.Errorf("%d services with the api role, want %d (%s)", apis, len(apiServices), strings.Join(apiServices, ", "))
		}
	}
}

// TestSecretsReachOnlyWhoNeedsThem: each secret is in the environment of
// the services that use it and of no other (a worker role that calls no
// one has no client secret; only identity knows the demo password).
func TestSecretsReachOnlyWhoNeedsThem(t *testing.T) {
	t.Parallel()
	p := load(t)
	allowed := map[string]func(service, key string) bool{
		"SHOPFLOOR_DEMO_PASSWORD": func(s, _ string) bool { return s == "identity" },
		// orders' api calls catalog, its consumer payments (stuck-order repair).
		"ORDERS_CLIENT_SECRET": func(s, _ string) bool {
			return s == "identity" || s == "orders" || s == "orders-consumer" || s == "orders-consumer-2"
		},
		"PAYMENTS_CLIENT_SECRET":      func(s, _ string) bool { return s == "identity" },
		"NOTIFICATIONS_CLIENT_SECRET": func(s, _ string) bool { return s == "identity" },
		"SEARCH_CLIENT_SECRET":        func(s, _ string) bool { return s == "identity" },
		"WEB_CLIENT_SECRET":           func(s, _ string) bool { return s == "identity" || s == "web" },
		"WEB_SESSION_SECRET":          func(s, _ string) bool { return s == "web" },
		"POSTGRES_PASSWORD": func(s, k string) bool {
			return (s == "postgres" && k == "POSTGRES_PASSWORD") || k == "DATABASE_URL"
		},
	}
	seen := map[string]bool{}
	for name, s := range p.Services {
		for k, v := range s.Environment {
			for secret, value := range testSecrets {
				if v == nil || !strings.Contains(*v, value) {
					continue
				}
				seen[secret] = true
				if !allowed[secret](name, k) {
					t.Errorf("%s: %s holds %s", name, k, secret)
				}
			}
		}
		args := slices.Clone(s.Command)
		if s.HealthCheck != nil {
			args = append(args, s.HealthCheck.Test...)
		}
		for _, arg := range args {
			for secret, value := range testSecrets {
				if strings.Contains(arg, value) {
					t.Errorf("%s: %s in its command line or healthcheck (visible in ps and docker inspect)", name, secret)
				}
			}
		}
	}
	if len(seen) != len(testSecrets) {
		t.Errorf("secrets used: %v, want all of %v", slices.Sorted(maps.Keys(seen)), slices.Sorted(maps.Keys(testSecrets)))
	}
}

// TestImageBuildsEveryCommand: every command compose runs from the
// shopfloor image (and the probe of its healthchecks) is built by the
// Dockerfile, and identity's key directory is the volume's mount point and
// made in the image for the non-root user.
func TestImageBuildsEveryCommand(t *testing.T) {
	t.Parallel()
	p := load(t)
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	built := map[string]bool{}
	for _, m := range regexp.MustCompile(`\./(?:services/[a-z]+/cmd|deploy)/([a-z]+)`).FindAllStringSubmatch(string(df), -1) {
		built[m[1]] = true
	}
	for name, s := range p.Services {
		if !strings.HasPrefix(s.Image, "shopfloor:") {
			continue
		}
		if len(s.Command) == 0 || !built[s.Command[0]] {
			t.Errorf("%s runs %v, which the Dockerfile does not build (it builds %v)", name, s.Command, slices.Sorted(maps.Keys(built)))
		}
		if s.HealthCheck != nil && len(s.HealthCheck.Test) > 1 && !built[s.HealthCheck.Test[1]] {
			t.Errorf("%s: healthcheck runs %q, which the Dockerfile does not build", name, s.HealthCheck.Test[1])
		}
	}
	id := p.Services["identity"]
	dir := id.Environment["IDENTITY_KEY_DIR"]
	if dir == nil || *dir == "" {
		t.Fatal("identity: IDENTITY_KEY_DIR not set: a restart would invalidate every token")
	}
	mounted := false
	for _, v := range id.Volumes {
		mounted = mounted || (v.Type == types.VolumeTypeVolume && v.Target == *dir)
	}
	if !mounted {
		t.Errorf("identity: IDENTITY_KEY_DIR %s is not a named volume's mount point: %+v", *dir, id.Volumes)
	}
	if !regexp.MustCompile(`(?m)^COPY --from=build --chown=65532:65532 \S+ ` + regexp.QuoteMeta(*dir) + `$`).Match(df) {
		t.Errorf("Dockerfile: does not make %s for nonroot (65532); a new volume there would be root's and identity could not write its keys", *dir)
	}
}

// TestInitEnvWritesWorkingSecrets: init-env.sh writes a .env (mode 0600)
// with which compose loads, each secret new, distinct and fit for where it
// goes (a URL, the client list; the lengths identity requires); run again
// it changes nothing; on an older .env it adds the missing secrets and
// keeps the values there.
func TestInitEnvWritesWorkingSecrets(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("init-env.sh needs bash: %v", err)
	}
	run := func(file string) string {
		t.Helper()
		out, err := exec.Command(bash, "init-env.sh", file).CombinedOutput()
		if err != nil {
			t.Fatalf("init-env.sh %s: %v\n%s", file, err, out)
		}
		return string(out)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, ".env")
	run(file)
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf(".env mode %v, want 0600", fi.Mode().Perm())
	}
	first, _ := os.ReadFile(file)
	p, err := loadProject(file, nil)
	if err != nil {
		t.Fatalf("compose does not load with init-env.sh's .env: %v", err)
	}
	values := map[string]string{}
	for _, m := range secretVarRE.FindAllStringSubmatch(string(first), -1) {
		values[m[1]] = m[2]
	}
	hex := regexp.MustCompile(`^[0-9a-f]+$`)
	distinct := map[string]bool{}
	for name := range testSecrets {
		v := values[name]
		least := 16 // identity's minimum for a client secret
		if name == "SHOPFLOOR_DEMO_PASSWORD" {
			least = 12
		}
		if len(v) < least || !hex.MatchString(v) {
			t.Errorf("%s=%q: want at least %d hex digits", name, v, least)
		}
		distinct[v] = true
	}
	if len(distinct) != len(testSecrets) {
		t.Errorf("secrets are not distinct: %v", values)
	}
	u, err := url.Parse(*p.Services["orders"].Environment["DATABASE_URL"])
	if pw, _ := u.User.Password(); err != nil || pw != values["POSTGRES_PASSWORD"] {
		t.Errorf("DATABASE_URL does not carry POSTGRES_PASSWORD: %v", err)
	}
	// Everything else is .env.example's.
	example, _ := os.ReadFile(".env.example")
	if got, want := secretVarRE.ReplaceAllString(string(first), "$1="), string(example); got != want {
		t.Errorf(".env differs from .env.example beyond the secrets:\n%s", got)
	}
	if run(file); !bytesEqual(t, file, first) {
		t.Error("a second run changed .env")
	}

	// An older .env: a value kept, one secret empty, the others missing.
	old := filepath.Join(dir, "old.env")
	if err := os.WriteFile(old, []byte("POSTGRES_PASSWORD=keepme\nORDERS_CLIENT_SECRET=\nCDN_PORT=9080\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(old)
	b, _ := os.ReadFile(old)
	if strings.Count(string(b), "ORDERS_CLIENT_SECRET=") != 1 || !strings.Contains(string(b), "POSTGRES_PASSWORD=keepme\n") || !strings.Contains(string(b), "CDN_PORT=9080\n") {
		t.Errorf("init-env.sh on an older .env:\n%s", b)
	}
	if fi, _ := os.Stat(old); runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("older .env mode %v after adding secrets, want 0600", fi.Mode().Perm())
	}
	if _, err := loadProject(old, nil); err != nil {
		t.Errorf("compose does not load with the completed older .env: %v", err)
	}
}

func bytesEqual(t *testing.T, file string, want []byte) bool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b) == string(want)
}
