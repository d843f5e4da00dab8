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
// only metrics the code exports (observability_test.go; the rules
// themselves: rules_test.go; the secrets: secrets_test.go).
package compose_test

import (
	"context"
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
	"go.yaml.in/yaml/v3"
)

const root = "../.."

// testSecrets are what a .env gives compose for the secrets .env.example
// leaves empty (TestSecretsHaveNoDefault checks the two lists match).
// Distinct, recognisable values: TestSecretsReachOnlyWhoNeedsThem looks
// for them in every service's environment.
var testSecrets = map[string]string{
	"SHOPFLOOR_DEMO_PASSWORD":         "test-demo-password-0",
	"ORDERS_CLIENT_SECRET":            "test-orders-client-secret-0",
	"PAYMENTS_CLIENT_SECRET":          "test-payments-client-secret-0",
	"NOTIFICATIONS_CLIENT_SECRET":     "test-notifications-client-secret-0",
	"SEARCH_CLIENT_SECRET":            "test-search-client-secret-0",
	"WEB_CLIENT_SECRET":               "test-web-client-secret-0",
	"WEB_SESSION_SECRET":              "test-web-session-secret-0123456789abcdef",
	"POSTGRES_PASSWORD":               "testpostgrespassword0",
	"REDIS_PASSWORD":                  "testredispassword0",
	"REDIS_CATALOG_PASSWORD":          "testrediscatalogpassword0",
	"CDN_PURGE_SECRET":                "test-cdn-purge-secret-0",
	"GRAFANA_ADMIN_PASSWORD":          "test-grafana-admin-password-0",
	"NATS_CATALOG_PASSWORD":           "test-nats-catalog-0",
	"NATS_ORDERS_PASSWORD":            "test-nats-orders-0",
	"NATS_PAYMENTS_PASSWORD":          "test-nats-payments-0",
	"NATS_NOTIFICATIONS_PASSWORD":     "test-nats-notifications-0",
	"NATS_SEARCH_PASSWORD":            "test-nats-search-0",
	"NATS_OPERATOR_PASSWORD":          "test-nats-operator-0",
	"NATS_ROUTE_PASSWORD":             "testnatsroute0",
	"CATALOG_DB_OWNER_PASSWORD":       "testcatalogdbowner0",
	"CATALOG_DB_APP_PASSWORD":         "testcatalogdbapp0",
	"ORDERS_DB_OWNER_PASSWORD":        "testordersdbowner0",
	"ORDERS_DB_APP_PASSWORD":          "testordersdbapp0",
	"PAYMENTS_DB_OWNER_PASSWORD":      "testpaymentsdbowner0",
	"PAYMENTS_DB_APP_PASSWORD":        "testpaymentsdbapp0",
	"NOTIFICATIONS_DB_OWNER_PASSWORD": "testnotificationsdbowner0",
	"NOTIFICATIONS_DB_APP_PASSWORD":   "testnotificationsdbapp0",
	"SEARCH_DB_OWNER_PASSWORD":        "testsearchdbowner0",
	"SEARCH_DB_APP_PASSWORD":          "testsearchdbapp0",
	// new-service: test secrets above this line
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
	return loadFiles([]string{"compose.yaml"}, envFile, extra)
}

// loadFiles is loadProject with files (-f) instead of compose.yaml alone.
func loadFiles(files []string, envFile string, extra map[string]string) (*types.Project, error) {
	return loadWith(files, []string{"observability"}, envFile, extra)
}

// loadWith is loadFiles with these profiles (--profile) instead of
// observability alone.
func loadWith(files, profiles []string, envFile string, extra map[string]string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory("."), cli.WithProfiles(profiles),
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
	"identity": append(cmdFiles("identity"), "pkg/service/program.go", "pkg/service/engine.go", "pkg/service/ratelimit.go", "pkg/service/telemetry.go", authConfig),
	"web":      append(cmdFiles("web"), "pkg/service/program.go", "pkg/service/engine.go", "pkg/service/ratelimit.go", "pkg/service/telemetry.go", authConfig),
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
	return append(append(files, more...), "pkg/service/program.go", "pkg/service/engine.go", "pkg/service/ratelimit.go", "pkg/service/service.go", "pkg/service/jobs.go", "pkg/service/telemetry.go", "pkg/pgdb/pgdb.go", "pkg/natsauth/config.go")
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
	for _, p := range []*types.Project{load(t), loadCluster(t), loadKafka(t)} {
		servicesAreHealthcheckedAndOrdered(t, p)
	}
}

func servicesAreHealthcheckedAndOrdered(t *testing.T, p *types.Project) {
	t.Helper()
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
// for the simulator), and a published port is HTTP_ADDR's; with and
// without the cluster and Kafka overlays.
func TestEnvMatchesTheBinaries(t *testing.T) {
	t.Parallel()
	for _, p := range []*types.Project{load(t), loadCluster(t), loadKafka(t)} {
		envMatchesTheBinaries(t, p)
	}
}

func envMatchesTheBinaries(t *testing.T, p *types.Project) {
	t.Helper()
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

// TestEnvExampleDocumentsEveryVariable: each ${VAR} compose.yaml and the
// chaos, cluster and Kafka overlays read is in .env.example, and
// .env.example lists nothing else.
func TestEnvExampleDocumentsEveryVariable(t *testing.T) {
	t.Parallel()
	var yaml []byte
	for _, f := range []string{"compose.yaml", overlay, clusterOverlay, kafkaOverlay} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		yaml = append(yaml, b...)
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
		t.Fatalf("compose.yaml, %s, %s and %s read %v; .env.example documents %v", overlay, clusterOverlay, kafkaOverlay, slices.Sorted(maps.Keys(used)), slices.Sorted(maps.Keys(documented)))
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
