package testinfra

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// RunFunc is a service's run function (cmd/<svc>/run.go), the same one
// main calls.
type RunFunc func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error

// Service is a service's serve command running in the test, started by
// StartService.
type Service struct {
	// Public and Admin are the base URLs of the two listeners.
	Public, Admin string
	// Logs is everything the service wrote (JSON log lines).
	Logs *Buffer

	cancel context.CancelFunc
	done   chan error
	tb     testing.TB
}

// StartService runs `<name> serve` through run in the background, with
// env plus HTTP_ADDR and ADMIN_ADDR on free loopback ports (unless env
// names them: see FreeAddr), and returns
// once both listen. It learns their addresses the way an operator would,
// from the service's log lines "http listening" and "admin http
// listening" (a LOG_LEVEL above INFO is lowered to INFO for that). At the
// test's end it stops the service and fails the test if run returned an
// error.
func StartService(tb testing.TB, run RunFunc, name string, env map[string]string) *Service {
	tb.Helper()
	env = maps.Clone(env)
	for _, k := range []string{"HTTP_ADDR", "ADMIN_ADDR"} {
		if env[k] == "" {
			env[k] = "127.0.0.1:0"
		}
	}
	if lvl := strings.ToUpper(env["LOG_LEVEL"]); lvl == "WARN" || lvl == "ERROR" {
		env["LOG_LEVEL"] = "INFO"
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{Logs: &Buffer{}, cancel: cancel, done: make(chan error, 1), tb: tb}
	go func() { s.done <- run(ctx, []string{name, "serve"}, func(k string) string { return env[k] }, s.Logs) }()
	tb.Cleanup(s.Stop)
	deadline := time.Now().Add(30 * time.Second)
	for s.Public == "" || s.Admin == "" {
		select {
		case err := <-s.done:
			s.done <- err
			tb.Fatalf("%s serve ended before listening: %v\n%s", name, err, s.Logs)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s serve: no \"listening\" log lines within 30s:\n%s", name, s.Logs)
		}
		s.Public, s.Admin = listening(s.Logs.String())
	}
	return s
}

// listening finds the addresses in the "http listening" and "admin http
// listening" log lines.
func listening(logs string) (public, admin string) {
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		var line struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Addr == "" {
			continue
		}
		switch line.Msg {
		case "http listening":
			public = "http://" + line.Addr
		case "admin http listening":
			admin = "http://" + line.Addr
		}
	}
	return public, admin
}

// WaitReady waits until the public /readyz answers 200.
func (s *Service) WaitReady(within time.Duration) {
	s.tb.Helper()
	WaitReady(s.tb, s.Public+"/readyz", within)
}

// Stop ends the serve command (as SIGTERM would) and waits for it; the
// test fails if it returned an error. Calling it again does nothing.
func (s *Service) Stop() {
	s.tb.Helper()
	s.cancel()
	err, ok := <-s.done
	if !ok {
		return
	}
	close(s.done)
	if err != nil {
		s.tb.Errorf("serve: %v", err)
	}
}

// FreeAddr returns a loopback address whose port was free a moment ago,
// for a service that must know its own public address before it starts
// (an issuer URL, a redirect URI). Another process could take the port in
// between; tests that can, let the service pick (StartService).
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		tb.Fatal(err)
	}
	return addr
}

// CheckHelp runs `<name> help` through run and compares what it prints
// with testdata/help.txt, the service's command list as a forker reads it
// (SHOPFLOOR_UPDATE_GOLDEN=1 rewrites the file). Every service prints the
// same shape (pkg/service.Program.Help): a usage line, the commands from
// serve to help, then the roles.
func CheckHelp(tb testing.TB, run RunFunc, name string) {
	tb.Helper()
	var out strings.Builder
	if err := run(context.Background(), []string{name, "help"}, func(string) string { return "" }, &out); err != nil {
		tb.Fatalf("%s help: %v", name, err)
	}
	got := out.String()
	lines := strings.Split(strings.TrimSpace(got), "\n")
	var cmds []string
	for _, l := range lines[min(3, len(lines)):] {
		if !strings.HasPrefix(l, "  ") {
			break
		}
		if !strings.HasPrefix(l, "   ") {
			cmds = append(cmds, strings.Fields(l)[0])
		}
	}
	if len(lines) < 4 || lines[0] != "usage: "+name+" [command] [arguments]" || lines[2] != "commands:" ||
		len(cmds) < 2 || cmds[0] != "serve" || cmds[len(cmds)-1] != "help" {
		tb.Errorf("%s help is not in the shape every service uses (usage line, commands from serve to help, roles):\n%s", name, got)
	}
	const file = "testdata/help.txt"
	if os.Getenv("SHOPFLOOR_UPDATE_GOLDEN") == "1" {
		if err := os.MkdirAll("testdata", 0o750); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(got), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		tb.Fatalf("%v (SHOPFLOOR_UPDATE_GOLDEN=1 writes it)", err)
	}
	if string(want) != got {
		tb.Errorf("%s help differs from %s (SHOPFLOOR_UPDATE_GOLDEN=1 rewrites it after a deliberate change):\n--- got\n%s--- want\n%s", name, file, got, want)
	}
}
