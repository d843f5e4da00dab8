package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

const sessionSecret = "session-secret-0123456789abcdef-xyz"

func baseEnv(issuer string) map[string]string {
	return map[string]string{"AUTH_ISSUER": issuer, "WEB_PUBLIC_URL": "http://127.0.0.1:8000", "WEB_SESSION_SECRET": sessionSecret,
		"AUTH_CLIENT_SECRET": "web-secret-0123456789", "CATALOG_URL": "http://127.0.0.1:8080", "ORDERS_URL": "http://127.0.0.1:8082",
		"PAYMENTS_URL": "http://127.0.0.1:8083", "NOTIFICATIONS_URL": "http://127.0.0.1:8084", "SEARCH_URL": "http://127.0.0.1:8085",
		"LOG_LEVEL": "WARN"}
}

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		set  map[string]string
		want []string
	}{
		{"no session secret", map[string]string{"WEB_SESSION_SECRET": ""}, []string{"WEB_SESSION_SECRET: required, not set"}},
		{"short session secret", map[string]string{"WEB_SESSION_SECRET": "short-secret"}, []string{"WEB_SESSION_SECRET: must be at least 32"}},
		{"no client secret", map[string]string{"AUTH_CLIENT_SECRET": ""}, []string{"AUTH_CLIENT_SECRET: required, not set"}},
		{"no issuer", map[string]string{"AUTH_ISSUER": ""}, []string{"AUTH_ISSUER"}},
		{"public URL with a path", map[string]string{"WEB_PUBLIC_URL": "http://127.0.0.1:8000/shop"}, []string{"WEB_PUBLIC_URL: must be an http(s) origin"}},
		{"bad backend", map[string]string{"ORDERS_URL": "orders:8082"}, []string{"ORDERS_URL: must be an http(s) URL"}},
		{"no search", map[string]string{"SEARCH_URL": ""}, []string{"SEARCH_URL: required, not set"}},
		{"two consoles", map[string]string{"WEB_CONSOLE_COMPOSE": "true", "WEB_CONSOLE_PORT_BASE": "8000"}, []string{"WEB_CONSOLE_COMPOSE and WEB_CONSOLE_PORT_BASE: set one"}},
		{"trace URL without the id", map[string]string{"WEB_TRACE_URL": "http://grafana:3000/explore"}, []string{"WEB_TRACE_URL: must be an http(s) URL with {trace_id}"}},
	} {
		env := baseEnv("http://127.0.0.1:8090")
		for k, v := range tc.set {
			env[k] = v
		}
		err := run(context.Background(), []string{"web"}, func(k string) string { return env[k] }, &testinfra.Buffer{})
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error lacks %q:\n%v", tc.name, want, err)
			}
		}
		if err != nil && (strings.Contains(err.Error(), "0123456789") || strings.Contains(err.Error(), "short-secret")) {
			t.Errorf("%s: error shows a secret: %v", tc.name, err)
		}
	}
	if err := run(context.Background(), []string{"web", "dance"}, func(string) string { return "" }, &testinfra.Buffer{}); err == nil ||
		!strings.Contains(err.Error(), "usage") {
		t.Errorf("unknown command: %v", err)
	}
}

// TestServeWaitsForIdentityAndKeepsAdminRoutesOffThePublicListener runs the serve command on two listeners: ready once the
// identity provider answers, the storefront on the public listener (its
// own pages, also for a path it does not have), /healthz and /readyz kept,
// /metrics and /v1/admin only on the admin listener.
func TestServeWaitsForIdentityAndKeepsAdminRoutesOffThePublicListener(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	env := baseEnv(iss.URL)
	env["HTTP_ADDR"] = testinfra.FreeAddr(t)
	env["WEB_PUBLIC_URL"] = "http://" + env["HTTP_ADDR"] // else pages redirect to the public host name
	svc := testinfra.StartService(t, run, "web", env)
	public, admin := svc.Public, svc.Admin
	testinfra.WaitReady(t, public+"/readyz", 10*time.Second)
	testinfra.CheckListeners(t, public, admin)
	for path, want := range map[string]int{"/no-such-page": 404, "/static/style.css": 200, "/static/app.js": 200} {
		resp, err := http.Get(public + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != want || resp.Header.Get("Content-Security-Policy") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: %d (want %d), CSP %q:\n%.200s", path, resp.StatusCode, want, resp.Header.Get("Content-Security-Policy"), b)
		}
	}
}

// TestPagesAreLimitedPerClientAddressAndProbesAreNot: past the anonymous
// burst a page is answered 429 with Retry-After; /healthz and /readyz,
// which an orchestrator polls from anywhere, are never limited.
func TestPagesAreLimitedPerClientAddressAndProbesAreNot(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	env := baseEnv(iss.URL)
	env["HTTP_ADDR"] = testinfra.FreeAddr(t)
	env["WEB_PUBLIC_URL"] = "http://" + env["HTTP_ADDR"]
	env["RATE_LIMIT_ANONYMOUS"], env["RATE_LIMIT_ANONYMOUS_BURST"] = "0.001", "2"
	svc := testinfra.StartService(t, run, "web", env)
	testinfra.WaitReady(t, svc.Public+"/readyz", 10*time.Second)
	var got []string
	for _, path := range []string{"/static/style.css", "/no-such-page", "/static/app.js", "/healthz", "/readyz"} {
		resp, err := http.Get(svc.Public + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		got = append(got, fmt.Sprintf("%s %d %s", path, resp.StatusCode, resp.Header.Get("Retry-After")))
	}
	want := []string{"/static/style.css 200 ", "/no-such-page 404 ", "/static/app.js 429 1000", "/healthz 200 ", "/readyz 200 "}
	if !slices.Equal(got, want) {
		t.Errorf("answers %q, want %q", got, want)
	}
}

// TestComposeConsoleCannotStopContainersOrRunDrills: WEB_CONSOLE_COMPOSE gives a console over the compose
// network's endpoints that cannot stop containers or run drills (there is
// no container engine in the web container); no console setting, none.
func TestComposeConsoleCannotStopContainersOrRunDrills(t *testing.T) {
	t.Parallel()
	if c, closeIt := newConsole(Config{}, slog.New(slog.DiscardHandler)); c != nil {
		closeIt()
		t.Fatal("a console without WEB_CONSOLE_*")
	}
	c, closeIt := newConsole(Config{ConsoleCompose: true}, slog.New(slog.DiscardHandler))
	defer closeIt()
	if c == nil || c.CanControlProcesses() || c.DrillsEnabled() || !c.StreamDLQsEnabled() {
		t.Fatalf("compose console: %v, processes %v, drills %v, stream DLQs %v", c != nil, c.CanControlProcesses(), c.DrillsEnabled(), c.StreamDLQsEnabled())
	}
}

func TestHelpListsTheCommandsAndRolesInTheSharedShape(t *testing.T) {
	t.Parallel()
	testinfra.CheckHelp(t, run, "web")
}
