package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// TestUsage: every mistake is a usage error (exit status 2) that says
// what to fix, and nothing runs.
func TestUsage(t *testing.T) {
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

func TestList(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"chaos", "list"}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"relay-killed", "broker-down", "redis-down", "psp-timeout-after-charge", "psp-errors", "worker-killed", "consumer-killed"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("list lacks %s:\n%s", name, out.String())
		}
	}
}

// TestUnreachableSystem: with nothing listening, a drill does not start
// (exit status 3) and says why.
func TestUnreachableSystem(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	// Port base 9500: nothing of shopfloor listens there in tests.
	err := run(context.Background(), []string{"chaos", "run", "--port-base", "9500", "relay-killed"}, func(string) string { return "" }, &out)
	if err == nil || errors.Is(err, errUsage) || errors.Is(err, errViolated) || !strings.Contains(err.Error(), "is the system running?") {
		t.Fatalf("err %v, want a failure to start", err)
	}
}
