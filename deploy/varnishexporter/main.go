// Command varnishexporter exports the CDN's counters for the dashboards'
// "CDN hit ratio": it runs `varnishstat -j` on each scrape (so it must run
// where varnishstat can read varnishd's shared memory: the same host, or a
// container sharing /var/lib/varnish) and serves them in the Prometheus
// text format on /metrics.
//
//	varnishexporter -addr :9131 [-n /var/lib/varnish/<name>]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

// counters maps varnishstat fields to exported metrics.
var counters = []struct{ field, name, help string }{
	{"MAIN.client_req", "varnish_client_requests_total", "Client requests received by Varnish."},
	{"MAIN.cache_hit", "varnish_cache_hit_total", "Requests served from the cache."},
	{"MAIN.cache_hitpass", "varnish_cache_hitpass_total", "Requests that hit a hit-for-pass object."},
	{"MAIN.cache_miss", "varnish_cache_miss_total", "Requests that missed the cache."},
	{"MAIN.backend_fail", "varnish_backend_fail_total", "Backend connections that failed."},
	{"MAIN.n_object", "varnish_objects", "Objects in the cache (a gauge)."},
	{"MAIN.n_purges", "varnish_purges_total", "Purges executed."},
}

func main() {
	addr := flag.String("addr", ":9131", "listen address")
	name := flag.String("n", "", "varnishd instance name or directory (varnishstat -n); empty: the default")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	if err := run(ctx, *addr, varnishstat(*name), log); err != nil {
		log.Error("varnishexporter", "err", err)
		os.Exit(1)
	}
}

// varnishstat returns a reader of the counters through the varnishstat
// command.
func varnishstat(name string) func(context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		args := []string{"-j"}
		if name != "" {
			args = append(args, "-n", name)
		}
		for _, c := range counters {
			args = append(args, "-f", c.field)
		}
		return exec.CommandContext(ctx, "varnishstat", args...).Output()
	}
}

func run(ctx context.Context, addr string, read func(context.Context) ([]byte, error), log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	if err := reg.Register(&collector{read: read, log: log}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	health := httpkit.NewHealth()
	mux := httpkit.NewMux(health, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return httpkit.Serve(ctx, httpkit.ServerConfig{}, ln, mux, health, log)
}

type collector struct {
	read func(context.Context) ([]byte, error)
	log  *slog.Logger
}

var upDesc = prometheus.NewDesc("varnish_up", "1 when varnishstat answered on the last scrape.", nil, nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- upDesc
	for _, m := range counters {
		ch <- prometheus.NewDesc(m.name, m.help, nil, nil)
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	values, err := c.scrape(ctx)
	if err != nil {
		c.log.Warn("varnishstat failed", "err", err)
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 1)
	for _, m := range counters {
		v, ok := values[m.field]
		if !ok {
			continue
		}
		kind := prometheus.CounterValue
		if m.field == "MAIN.n_object" {
			kind = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(m.name, m.help, nil, nil), kind, v)
	}
}

// scrape parses varnishstat -j (Varnish 6.5+: {"version": 1, "counters":
// {"MAIN.cache_hit": {"value": N}}}).
func (c *collector) scrape(ctx context.Context) (map[string]float64, error) {
	out, err := c.read(ctx)
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return nil, err
	}
	var doc struct {
		Version  int `json:"version"`
		Counters map[string]struct {
			Value float64 `json:"value"`
		} `json:"counters"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("varnishstat output: %w", err)
	}
	if doc.Version != 1 {
		return nil, fmt.Errorf("varnishstat JSON version %d, want 1", doc.Version)
	}
	values := make(map[string]float64, len(doc.Counters))
	for k, v := range doc.Counters {
		values[k] = v.Value
	}
	return values, nil
}
