package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func TestCollectorParsesVarnishstat(t *testing.T) {
	t.Parallel()
	out := `{"version": 1, "timestamp": "x", "counters": {
		"MAIN.client_req": {"value": 10}, "MAIN.cache_hit": {"value": 7}, "MAIN.cache_miss": {"value": 3}, "MAIN.n_object": {"value": 2}}}`
	c := &collector{read: func(context.Context) ([]byte, error) { return []byte(out), nil }, log: slog.New(slog.DiscardHandler)}
	want := `
# HELP varnish_cache_hit_total Requests served from the cache.
# TYPE varnish_cache_hit_total counter
varnish_cache_hit_total 7
# HELP varnish_objects Objects in the cache (a gauge).
# TYPE varnish_objects gauge
varnish_objects 2
# HELP varnish_up 1 when varnishstat answered on the last scrape.
# TYPE varnish_up gauge
varnish_up 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "varnish_cache_hit_total", "varnish_objects", "varnish_up"); err != nil {
		t.Fatal(err)
	}
	c.read = func(context.Context) ([]byte, error) { return nil, errors.New("no varnishd") }
	if err := testutil.CollectAndCompare(c, strings.NewReader("# HELP varnish_up 1 when varnishstat answered on the last scrape.\n# TYPE varnish_up gauge\nvarnish_up 0\n"), "varnish_up"); err != nil {
		t.Fatal(err)
	}
}

// TestCollectorReadsTheCountersOfARealVarnishd runs a real varnishd (make tools installs it), sends
// a request through it and reads the counters through varnishstat.
func TestCollectorReadsTheCountersOfARealVarnishd(t *testing.T) {
	t.Parallel()
	varnishd, err := exec.LookPath("varnishd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/varnishd"); serr != nil {
			t.Fatal("varnishd not found: run 'make tools'")
		}
		varnishd = "/usr/sbin/varnishd"
	}
	dir := filepath.Join(t.TempDir(), "v")
	port := freePort(t)
	cmd := exec.Command(varnishd, "-F", "-j", "none", "-a", "127.0.0.1:"+port, "-b", "127.0.0.1:9", "-n", dir, "-s", "malloc,16m")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testinfra.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Get("http://127.0.0.1:" + port + "/")
		if err != nil {
			return err
		}
		return resp.Body.Close()
	})
	c := &collector{read: varnishstat(dir), log: slog.New(slog.DiscardHandler)}
	testinfra.Eventually(t, 10*time.Second, func() error {
		values, err := c.scrape(context.Background())
		if err != nil {
			return err
		}
		if values["MAIN.client_req"] < 1 {
			return fmt.Errorf("client requests %v, want at least the one sent", values["MAIN.client_req"])
		}
		return nil
	})
	if n := testutil.CollectAndCount(c, "varnish_client_requests_total", "varnish_up"); n != 2 {
		t.Fatalf("collected %d metrics, want 2", n)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := strings.Cut(ln.Addr().String(), ":")
	return port
}
