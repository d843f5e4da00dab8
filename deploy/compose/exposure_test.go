package compose_test

import (
	"encoding/json"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// overlay is the chaos overlay, loaded after compose.yaml.
const overlay = "compose.chaos.yaml"

// loadChaos is compose.yaml with the chaos overlay, .env.example and the
// test secrets.
func loadChaos(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadFiles([]string{"compose.yaml", overlay}, ".env.example", testSecrets)
	if err != nil {
		t.Fatalf("compose.yaml with %s does not load: %v", overlay, err)
	}
	return p
}

// TestPublishedPortsAreOnLoopbackByDefault: every port compose.yaml
// publishes (and every one the chaos overlay adds) is bound to 127.0.0.1,
// never to every interface (an empty host address or 0.0.0.0).
// SHOPFLOOR_BIND moves the CDN, orders, search and Grafana; the
// storefront, identity (a sandbox provider whose issuer is localhost) and
// Mailpit (every customer's e-mail, no sign-in) stay on the loopback.
func TestPublishedPortsAreOnLoopbackByDefault(t *testing.T) {
	t.Parallel()
	hostIPs := func(p *types.Project) map[string]string {
		out := map[string]string{}
		for name, s := range p.Services {
			for _, port := range s.Ports {
				if ip, seen := out[name]; seen && ip != port.HostIP {
					t.Errorf("%s publishes on %q and %q", name, ip, port.HostIP)
				}
				out[name] = port.HostIP
			}
		}
		return out
	}
	// compose.yaml's own defaults: .env.example without SHOPFLOOR_BIND.
	example, err := os.ReadFile(".env.example")
	if err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(bare, regexp.MustCompile(`(?m)^SHOPFLOOR_BIND=.*\n`).ReplaceAll(example, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	defaults, err := loadProject(bare, testSecrets)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]*types.Project{"compose.yaml": defaults, "with .env.example": load(t), "with " + overlay: loadChaos(t)} {
		got := hostIPs(p)
		if len(got) < 7 {
			t.Fatalf("%s: only %d services publish ports: %v", name, len(got), got)
		}
		for svc, ip := range got {
			if ip != "127.0.0.1" {
				t.Errorf("%s: %s publishes on %q, want 127.0.0.1", name, svc, ip)
			}
		}
	}

	extra := maps.Clone(testSecrets)
	extra["SHOPFLOOR_BIND"] = "0.0.0.0"
	p, err := loadProject(".env.example", extra)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"varnish": "0.0.0.0", "orders": "0.0.0.0", "search": "0.0.0.0", "otel-lgtm": "0.0.0.0",
		"web": "127.0.0.1", "identity": "127.0.0.1", "mailpit": "127.0.0.1"}
	if got := hostIPs(p); !maps.Equal(got, want) {
		t.Errorf("SHOPFLOOR_BIND=0.0.0.0: published on %v, want %v", got, want)
	}
}

// TestGrafanaLetsAnonymousVisitorsOnlyView: otel-lgtm's Grafana takes
// anonymous visitors as Viewer, and its admin password is the required
// GRAFANA_ADMIN_PASSWORD. The image makes them Admin unless
// GF_AUTH_ANONYMOUS_ENABLED is set, and before 0.9.2 even then.
func TestGrafanaLetsAnonymousVisitorsOnlyView(t *testing.T) {
	t.Parallel()
	g, ok := load(t).Services["otel-lgtm"]
	if !ok {
		t.Fatal("no otel-lgtm service in the observability profile")
	}
	got := map[string]string{}
	for k, v := range g.Environment {
		if strings.HasPrefix(k, "GF_") && v != nil {
			got[k] = *v
		}
	}
	want := map[string]string{
		"GF_AUTH_ANONYMOUS_ENABLED":  "true",
		"GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer",
		"GF_SECURITY_ADMIN_PASSWORD": testSecrets["GRAFANA_ADMIN_PASSWORD"],
	}
	if !maps.Equal(got, want) {
		t.Errorf("otel-lgtm's Grafana settings %v, want %v", got, want)
	}
	m := regexp.MustCompile(`^grafana/otel-lgtm:(\d+)\.(\d+)\.(\d+)`).FindStringSubmatch(g.Image)
	if m == nil {
		t.Fatalf("otel-lgtm image %q: want grafana/otel-lgtm:X.Y.Z", g.Image)
	}
	minor, _ := strconv.Atoi(m[2])
	patch, _ := strconv.Atoi(m[3])
	if m[1] == "0" && (minor < 9 || minor == 9 && patch < 2) {
		t.Errorf("otel-lgtm image %q: before 0.9.2 its run-grafana.sh makes anonymous visitors Admin whatever the environment says", g.Image)
	}
}

// proxy is an entry of toxiproxy/toxiproxy.json.
type proxy struct {
	Name     string `json:"name"`
	Listen   string `json:"listen"`
	Upstream string `json:"upstream"`
	Enabled  bool   `json:"enabled"`
}

// links are the dependency addresses (host:port) in a service's
// environment, by variable: URLs with a host, and SMTP_HOST with
// SMTP_PORT as "SMTP".
func links(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k, v := range s.Environment {
		if v == nil {
			continue
		}
		if u, err := url.Parse(*v); err == nil && u.Scheme != "" && u.Port() != "" {
			out[k] = u.Host
		}
	}
	if h, p := s.Environment["SMTP_HOST"], s.Environment["SMTP_PORT"]; h != nil && p != nil {
		out["SMTP"] = *h + ":" + *p
	}
	return out
}

// TestToxiproxyIsOnlyInTheChaosOverlay: compose.yaml has no Toxiproxy
// (its API, without authentication, can cut any link) and connects every
// service straight to its dependencies; with compose.chaos.yaml every
// long-running service reaches each dependency Toxiproxy proxies through
// the proxy of that very upstream (a service's own PostgreSQL link:
// postgres-<its database>), waits for Toxiproxy, and every proxy is used.
// The one-shot jobs stay direct.
func TestToxiproxyIsOnlyInTheChaosOverlay(t *testing.T) {
	t.Parallel()
	def, chaos := load(t), loadChaos(t)
	for name, s := range def.Services {
		if name == "toxiproxy" || strings.Contains(s.Image, "toxiproxy") {
			t.Errorf("compose.yaml runs Toxiproxy (%s, %s)", name, s.Image)
		}
		for k, v := range s.Environment {
			if v != nil && strings.Contains(*v, "toxiproxy") {
				t.Errorf("compose.yaml: %s: %s=%s goes through Toxiproxy", name, k, *v)
			}
		}
	}
	tp, ok := chaos.Services["toxiproxy"]
	if !ok {
		t.Fatalf("%s adds no toxiproxy service", overlay)
	}
	var proxies []proxy
	b, err := os.ReadFile("toxiproxy/toxiproxy.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &proxies); err != nil {
		t.Fatalf("toxiproxy/toxiproxy.json: %v", err)
	}
	configDir, _ := filepath.Abs("toxiproxy")
	if !slices.ContainsFunc(tp.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Source == filepath.Join(configDir, "toxiproxy.json") && slices.Contains(tp.Command, v.Target)
	}) {
		t.Errorf("toxiproxy: does not load toxiproxy/toxiproxy.json (volumes %+v, command %v)", tp.Volumes, tp.Command)
	}
	byListen, upstreams := map[string]proxy{}, map[string]bool{}
	for _, p := range proxies {
		_, port, _ := strings.Cut(p.Listen, ":")
		if _, dup := byListen["toxiproxy:"+port]; dup || !p.Enabled {
			t.Errorf("toxiproxy.json: %s: port %s twice, or not enabled", p.Name, port)
		}
		byListen["toxiproxy:"+port] = p
		upstreams[p.Upstream] = true
	}

	used := map[string]bool{}
	for name, s := range chaos.Services {
		if isOneShot(s) || name == "toxiproxy" {
			continue
		}
		direct := links(def.Services[name])
		through := links(s)
		repointed := false
		for k, addr := range direct {
			if !upstreams[addr] {
				continue // not a link Toxiproxy proxies (web → orders, …)
			}
			p, ok := byListen[through[k]]
			switch {
			case !ok:
				t.Errorf("%s: %s: %s, straight to %s; want it through Toxiproxy", name, overlay, k, through[k])
				continue
			case p.Upstream != addr:
				t.Errorf("%s: %s goes through proxy %s to %s, but compose.yaml connects it to %s", name, k, p.Name, p.Upstream, addr)
			case k == "DATABASE_URL":
				u, _ := url.Parse(*s.Environment[k])
				if want := "postgres-" + strings.TrimPrefix(u.Path, "/"); p.Name != want {
					t.Errorf("%s: DATABASE_URL goes through %s, want its own link %s", name, p.Name, want)
				}
			}
			used[p.Name], repointed = true, true
		}
		for k, addr := range through {
			if _, ok := byListen[addr]; ok && direct[k] == "" {
				t.Errorf("%s: %s: %s goes through Toxiproxy but compose.yaml has no such link", name, overlay, k)
			}
		}
		if d, ok := s.DependsOn["toxiproxy"]; repointed && (!ok || d.Condition != types.ServiceConditionHealthy) {
			t.Errorf("%s: goes through Toxiproxy but does not wait for it to be healthy", name)
		}
	}
	for _, p := range proxies {
		if !used[p.Name] {
			t.Errorf("toxiproxy.json: proxy %s is used by no service of %s", p.Name, overlay)
		}
	}
	if len(used) < 10 {
		t.Fatalf("only %d proxies in use: %v", len(used), used)
	}
}
