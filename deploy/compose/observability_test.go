package compose_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

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
