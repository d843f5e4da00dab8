package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// TestEveryArgumentMistakeIsAUsageErrorAndNothingRuns: every mistake is a usage error (exit status 2) that says
// what to fix, and nothing runs.
func TestEveryArgumentMistakeIsAUsageErrorAndNothingRuns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no command", nil, nil, "a command is required"},
		{"unknown command", []string{"fly"}, nil, `unknown command "fly"`},
		{"no drill", []string{"run"}, nil, "name at least one drill"},
		{"unknown drill", []string{"run", "--duration", "10s", "meteor-strike"}, nil, `no drill "meteor-strike"`},
		{"bad flag", []string{"run", "--rate", "0", "relay-killed"}, nil, "--rate must be in (0, 500]"},
		{"fault longer than load", []string{"run", "--duration", "10s", "--fault-for", "20s", "relay-killed"}, nil, "--fault-for"},
		{"bad runner", []string{"run", "--runner", "k8s", "relay-killed"}, nil, "--runner must be local or compose"},
		{"bad port base", []string{"run", "relay-killed"}, map[string]string{"SHOPFLOOR_PORT_BASE": "x"}, "--port-base"},
		{"bad url", []string{"run", "--url", "orders", "relay-killed"}, nil, "want NAME=http"},
		{"unknown url name", []string{"run", "--url", "metrics.nope=http://h:1", "relay-killed"}, nil, `no process "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			getenv := func(k string) string { return tt.env[k] }
			err := run(context.Background(), append([]string{"chaos"}, tt.args...), getenv, &out)
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want a usage error containing %q", err, tt.want)
			}
		})
	}
}

func TestListNamesEveryDrill(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"chaos", "list"}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"relay-killed", "broker-down", "redis-down", "psp-timeout-after-charge", "psp-errors", "worker-killed", "consumer-killed", "game-day"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("list lacks %s:\n%s", name, out.String())
		}
	}
	// Each entry shows its resource and its runbook page.
	for _, want := range []string{"resource:  redis (game day: yes)\n", "runbook:   docs/runbooks/redis-down.md\n", "runbook:   docs/runbooks/game-day.md\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("list lacks %q:\n%s", want, out.String())
		}
	}
}

// TestDrillDoesNotStartWhenTheSystemIsUnreachable: with nothing listening, a drill does not start
// (exit status 3) and says why.
func TestDrillDoesNotStartWhenTheSystemIsUnreachable(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	// Port base 9500: nothing of shopfloor listens there in tests. The
	// identity settings are given, so that the check that fails is the
	// system's reachability, whatever run directory the machine has.
	reports := t.TempDir()
	// A topology at another base (9400) answers on some of 9500's ports:
	// its keep-alive connections must not outlive the test (goleak).
	t.Cleanup(http.DefaultTransport.(*http.Transport).CloseIdleConnections)
	err := run(context.Background(), []string{"chaos", "run", "--port-base", "9500", "--run-dir", t.TempDir(), "--report-dir", reports,
		"--issuer", "http://127.0.0.1:9590", "--demo-password", "unused-password", "relay-killed", "broker-down"}, func(string) string { return "" }, &out)
	if err == nil || errors.Is(err, errUsage) || errors.Is(err, errViolated) || !strings.Contains(err.Error(), "is the system running?") {
		t.Fatalf("err %v, want a failure to start", err)
	}
	// The drill that could not run still has its report, and the summary
	// says it: the second drill did not run.
	b, err := os.ReadFile(filepath.Join(reports, "relay-killed.json"))
	if err != nil || !strings.Contains(string(b), `"verdict": "error"`) || !strings.Contains(string(b), "is the system running?") {
		t.Fatalf("relay-killed.json: %v\n%s", err, b)
	}
	sum, err := os.ReadFile(filepath.Join(reports, "summary.md"))
	if err != nil || !strings.Contains(string(sum), "1 of 2 drills ran") || !strings.Contains(string(sum), "| **verdict** | **error** |") {
		t.Fatalf("summary.md: %v\n%s", err, sum)
	}
	if _, err := os.Stat(filepath.Join(reports, "broker-down.json")); err == nil {
		t.Error("broker-down ran after a drill could not")
	}
}

// TestReportsGoToATimestampedDirectoryOfTheRepository: by default reports go to chaos/reports/<UTC timestamp>
// of the repository.
func TestReportsGoToATimestampedDirectoryOfTheRepository(t *testing.T) {
	t.Parallel()
	c := &config{}
	dir, err := c.reports(time.Date(2026, 12, 7, 1, 2, 3, 0, time.FixedZone("CET", 3600)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(dir, filepath.Join("chaos", "reports", "20261207T000203Z")) || !filepath.IsAbs(dir) {
		t.Errorf("default report directory %s", dir)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(dir))), "deploy/local/ctl.sh")); err != nil {
		t.Errorf("%s is not in the repository: %v", dir, err)
	}
	c.reportDir = "/elsewhere"
	if dir, _ := c.reports(time.Now()); dir != "/elsewhere" {
		t.Errorf("--report-dir ignored: %s", dir)
	}
}

// TestIdentityFlagsWinOverTheLocalRunsSettings: --issuer and --demo-password (or their variables)
// win; what they leave out comes from the local run's identity.env, or
// for compose from its defaults.
func TestIdentityFlagsWinOverTheLocalRunsSettings(t *testing.T) {
	t.Parallel()
	runDir := t.TempDir()
	env := "IDENTITY_ISSUER=http://127.0.0.1:23590\nIDENTITY_DEMO_PASSWORD=from-the-run-dir\n"
	if err := os.WriteFile(filepath.Join(runDir, "identity.env"), []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		want      target.Identity
		wantErr   string
		wantUsage bool
	}{
		{"local: the run directory's", []string{"--run-dir", runDir}, nil,
			target.Identity{Issuer: "http://127.0.0.1:23590", DemoPassword: "from-the-run-dir"}, "", false},
		{"flags win", []string{"--run-dir", runDir, "--issuer", "http://127.0.0.1:9", "--demo-password", "flag-password"}, nil,
			target.Identity{Issuer: "http://127.0.0.1:9", DemoPassword: "flag-password"}, "", false},
		{"variables", []string{"--run-dir", runDir}, map[string]string{"IDENTITY_DEMO_PASSWORD": "env-password"},
			target.Identity{Issuer: "http://127.0.0.1:23590", DemoPassword: "env-password"}, "", false},
		{"local without identity.env", []string{"--run-dir", t.TempDir()}, nil, target.Identity{}, "is the system running", false},
		{"compose with a password", []string{"--runner", "compose", "--demo-password", "pw-0123456789"}, nil,
			target.Identity{Issuer: "http://localhost:8090", DemoPassword: "pw-0123456789"}, "", false},
		// The test runs in chaos/cmd/chaos: no deploy/compose/.env there.
		{"compose without a password", []string{"--runner", "compose"}, nil, target.Identity{}, "--demo-password", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &config{urls: urlFlags{}}
			fs := flags(c, func(k string) string { return tt.env[k] }, io.Discard)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if err := c.validate(); err != nil {
				t.Fatal(err)
			}
			got, err := c.identity()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || errors.Is(err, errUsage) != tt.wantUsage {
					t.Fatalf("err %v, want %q (usage: %v)", err, tt.wantErr, tt.wantUsage)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
