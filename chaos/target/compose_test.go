package target_test

import (
	"context"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shopfloor/shopfloor/chaos/drill"
	"github.com/shopfloor/shopfloor/chaos/target"
)

// TestComposeOverridePublishesEveryEndpoint: deploy/compose/compose.yaml
// with deploy/compose/compose.chaos.yaml loads (compose-go, the library of Docker
// Compose) and publishes every base URL LocalEndpoints(8000) names, each
// from the service and container port that serves it. This is the only
// check of the compose path: no container engine runs here.
func TestComposeOverridePublishesEveryEndpoint(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	// host port → service:container port, as compose publishes it.
	published := map[int]string{}
	for name, s := range p.Services {
		for _, port := range s.Ports {
			hp, err := strconv.Atoi(port.Published)
			if err != nil {
				t.Fatalf("%s: published port %q", name, port.Published)
			}
			published[hp] = name + ":" + strconv.Itoa(int(port.Target))
		}
	}
	e := target.LocalEndpoints(8000)
	// Compose runs one instance of each role (SHOPFLOOR_REPLICAS is make
	// run's).
	for name := range e.Metrics {
		if target.IsReplica(name) {
			delete(e.Metrics, name)
		}
	}
	want := map[string]string{
		e.CDN: "varnish:80", e.Catalog: "catalog:8081", e.CatalogAdmin: "catalog:9081", e.Orders: "orders:8082", e.Payments: "payments:8083",
		e.Notifications: "notifications:8084", e.Search: "search:8085", e.PSP: "psp-sim:8099", e.Mail: "mailpit:8025",
		e.Toxiproxy: "toxiproxy:8474", e.NATSMonitor: "nats:8222", e.CDNMetrics: "varnish-exporter:9131",
		"http" + strings.TrimPrefix(e.NATS, "nats"): "nats:4222",
	}
	// The admin listener of each binary (ADMIN_ADDR in compose.yaml).
	containerPort := map[string]string{"catalog": "9081", "orders": "9082", "payments": "9083", "notifications": "9084", "search": "9085"}
	for process, base := range e.Metrics {
		svc, ok := p.Services[process]
		if !ok {
			t.Errorf("metrics of %s: no such compose service", process)
			continue
		}
		want[base] = process + ":" + containerPort[svc.Command[0]]
	}
	for base, svc := range want {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		hp, _ := strconv.Atoi(u.Port())
		if got := published[hp]; got != svc {
			t.Errorf("%s: published by %q, want %q", base, got, svc)
		}
	}

	// ComposeEndpoints, the same endpoints seen from inside the compose
	// network, name each one's service and container port.
	c := target.ComposeEndpoints()
	hostPort := func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return u.Host
	}
	pairs := [][2]string{{e.CDN, c.CDN}, {e.Catalog, c.Catalog}, {e.CatalogAdmin, c.CatalogAdmin}, {e.Orders, c.Orders}, {e.Payments, c.Payments},
		{e.Notifications, c.Notifications}, {e.Search, c.Search}, {e.PSP, c.PSP}, {e.Mail, c.Mail}, {e.Toxiproxy, c.Toxiproxy},
		{e.NATSMonitor, c.NATSMonitor}, {e.CDNMetrics, c.CDNMetrics}, {"http" + strings.TrimPrefix(e.NATS, "nats"), c.NATS}}
	for process, base := range e.Metrics {
		pairs = append(pairs, [2]string{base, c.Metrics[process]})
	}
	if len(c.Metrics) != len(e.Metrics) {
		t.Errorf("ComposeEndpoints has %d processes, LocalEndpoints %d", len(c.Metrics), len(e.Metrics))
	}
	for _, pr := range pairs {
		if got := hostPort(pr[1]); got != want[pr[0]] {
			t.Errorf("ComposeEndpoints: %s, want %s (what compose serves at %s)", pr[1], want[pr[0]], pr[0])
		}
	}
}

// loadCompose loads deploy/compose/compose.yaml with deploy/compose/compose.chaos.yaml
// through compose-go, the library of Docker Compose.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	// compose.yaml refuses to load without its secrets, which .env.example
	// leaves empty (deploy/compose/init-env.sh fills them in a .env).
	example, err := os.ReadFile("../../deploy/compose/.env.example")
	if err != nil {
		t.Fatal(err)
	}
	var secrets []string
	for _, m := range regexp.MustCompile(`(?m)^([A-Z0-9_]+_(?:SECRET|PASSWORD))=$`).FindAllStringSubmatch(string(example), -1) {
		secrets = append(secrets, m[1]+"=chaos-test-secret-0123456789")
	}
	opts, err := cli.NewProjectOptions([]string{"../../deploy/compose/compose.yaml", "../../deploy/compose/compose.chaos.yaml"},
		cli.WithWorkingDirectory("../../deploy/compose"), cli.WithEnv(secrets), cli.WithEnvFiles("../../deploy/compose/.env.example"), cli.WithDotEnv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml + compose.chaos.yaml do not load: %v", err)
	}
	return p
}

// TestComposeRunnerCommands renders, without a container engine
// (Compose.DryRun), the docker commands the compose runner would run for
// every process a drill kills or starts (Drill.Processes), and checks
// each names a service of compose.yaml with deploy/compose/compose.chaos.yaml. A
// drill that compose cannot run says why in Drill.NoCompose; it is
// listed, not skipped silently.
func TestComposeRunnerCommands(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	files := []string{"deploy/compose/compose.yaml", "deploy/compose/compose.chaos.yaml"}
	prefix := "docker compose -f deploy/compose/compose.yaml -f deploy/compose/compose.chaos.yaml "
	rendered := 0
	for _, d := range drill.All() {
		if d.NoCompose != "" {
			t.Logf("%s: not run against compose: %s", d.Name, d.NoCompose)
			continue
		}
		for _, name := range d.Processes {
			var out strings.Builder
			c := &target.Compose{Files: files, DryRun: &out}
			if err := c.Kill(context.Background(), name); err != nil {
				t.Fatalf("%s: dry-run kill %s: %v", d.Name, name, err)
			}
			if err := c.Start(context.Background(), name); err != nil {
				t.Fatalf("%s: dry-run start %s: %v", d.Name, name, err)
			}
			want := prefix + "kill -s SIGKILL " + name + "\n" + prefix + "start " + name + "\n"
			if out.String() != want {
				t.Errorf("%s: rendered\n%s\nwant\n%s", d.Name, out.String(), want)
			}
			if _, ok := p.Services[name]; !ok {
				t.Errorf("%s: process %q is no service of compose.yaml + compose.chaos.yaml: `%s` would fail", d.Name, name, strings.TrimSpace(strings.SplitN(out.String(), "\n", 2)[0]))
			}
			rendered++
		}
	}
	if rendered == 0 {
		t.Fatal("no drill declares a process (Drill.Processes)")
	}
	if got := strings.Join((&target.Compose{Files: files}).Command("start", "search"), " "); got != prefix+"start search" {
		t.Errorf("Command: %q", got)
	}
	// Exec (poison-message's operator procedure) renders too, runs nothing.
	var out strings.Builder
	if _, err := (&target.Compose{Files: files, DryRun: &out}).Exec(context.Background(), "search", "dlq", "--stream", "ORDERS", "list"); err != nil {
		t.Fatalf("dry-run exec: %v", err)
	}
	if want := prefix + "exec -T search search dlq --stream ORDERS list\n"; out.String() != want {
		t.Errorf("dry-run exec rendered %q, want %q", out.String(), want)
	}
}
