package service_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// demoConfig is a serve command's configuration as a service declares it.
type demoConfig struct {
	service.Base
	service.Serve
	Greeting string `env:"GREETING" envDefault:"hello"`
}

func (c demoConfig) Validate() []error {
	if c.Greeting == "boom" {
		return []error{errors.New("GREETING: must not be boom")}
	}
	return nil
}

var demoMigrations = fstest.MapFS{"00001_demo.sql": {Data: []byte("-- +goose Up\nCREATE TABLE demo (id int);\n-- +goose Down\nDROP TABLE demo;\n")}}

func demoProgram(wire func(ctx context.Context, app *service.App, cfg *demoConfig) error) service.Program[demoConfig] {
	return service.Program[demoConfig]{
		Name: "demo", Port: 18080,
		Roles: []service.Role{
			{Name: service.RoleAPI, Doc: "the demo API"},
			{Name: service.RoleConsumer, NATS: true, Doc: "a stream consumer"},
		},
		Migrations: demoMigrations, Outbox: true, Streams: []string{"ONE", "TWO"},
		Commands: []service.Command{{Name: "greet", Args: "[NAME]", Doc: "say hello", Run: func(_ context.Context, inv *service.Invocation) error {
			_, err := io.WriteString(inv.Stdout, "hello "+strings.Join(inv.Args, " "))
			return err
		}}},
		Wire: wire,
	}
}

func TestHelpListsTheStandardCommandsThenTheServicesOwnThenTheRoles(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	if err := demoProgram(nil).Run(context.Background(), []string{"demo", "help"}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	var names []string
	section := ""
	for _, line := range strings.Split(out.String(), "\n") {
		switch {
		case strings.HasSuffix(line, ":") || strings.HasPrefix(line, "roles ("):
			section = line
		case strings.HasPrefix(line, "   "): // a command's description
		case strings.HasPrefix(line, "  "):
			names = append(names, section[:4]+" "+strings.Fields(line)[0])
		}
	}
	want := "comm serve,comm migrate,comm audit,comm outbox,comm dlq,comm greet,comm help,role api,role consumer"
	if got := strings.Join(names, ","); got != want || !strings.HasPrefix(out.String(), "usage: demo [command] [arguments]\n") ||
		!strings.Contains(out.String(), "  dlq --stream ONE|TWO ...\n        dead letters") || !strings.Contains(out.String(), "roles (ROLES, default api,consumer):") {
		t.Fatalf("help lists %s, want %s:\n%s", got, want, out.String())
	}
}

func TestRunDispatchesTheServicesOwnCommandsAndPointsUnknownOnesToHelp(t *testing.T) {
	t.Parallel()
	p := demoProgram(nil)
	var out strings.Builder
	if err := p.Run(context.Background(), []string{"demo", "greet", "ada"}, func(string) string { return "" }, &out); err != nil || out.String() != "hello ada" {
		t.Fatalf("greet: %v %q", err, out.String())
	}
	err := p.Run(context.Background(), []string{"demo", "dance"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `unknown command "dance"`) || !strings.Contains(err.Error(), "'demo help'") {
		t.Fatalf("unknown command: %v", err)
	}
	// With two streams, dlq needs --stream and names the choices.
	err = p.Run(context.Background(), []string{"demo", "dlq", "list"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `dlq --stream: must be ONE or TWO (got ""`) {
		t.Fatalf("dlq without --stream: %v", err)
	}
	err = p.Run(context.Background(), []string{"demo", "dlq", "--stream", "TWO", "list"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "NATS_URL") {
		t.Fatalf("dlq --stream TWO without NATS_URL: %v", err)
	}
}

func TestServeReportsEveryConfigurationProblemAtOnce(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://x", "ROLES": "api,consumer,gossip", "GREETING": "boom", "NATS_USER": "demo"}
	err := demoProgram(nil).Run(context.Background(), []string{"demo"}, func(k string) string { return env[k] }, io.Discard)
	for _, want := range []string{`ROLES: unknown role "gossip" (known: api, consumer)`, "NATS_URL: required by the consumer role",
		"AUTH_ISSUER: required", "GREETING: must not be boom", "NATS_USER, NATS_PASSWORD: set without NATS_URL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestServeAnswersAtOnceAndMountsTheAPIOnceWired: the listeners answer
// before the roles are wired (the API 503 with Retry-After), the wired
// API is reached on /v1/ of the public listener and /v1/admin/ of the
// admin one only, tasks run until the command stops, and what Wire
// deferred runs after them.
func TestServeAnswersAtOnceAndMountsTheAPIOnceWired(t *testing.T) {
	t.Parallel()
	db := testinfra.Postgres(t, nil)
	release := make(chan struct{})
	var taskRan, closed, closedAfterTask atomic.Bool
	p := demoProgram(func(ctx context.Context, app *service.App, cfg *demoConfig) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		if app.Pool == nil || app.Has(service.RoleConsumer) || !app.Has(service.RoleAPI) {
			return errors.New("wired without the pool, or with the wrong roles")
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /v1/greeting", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, cfg.Greeting) })
		mux.HandleFunc("GET /v1/admin/secret", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "admin") })
		app.OpenAPI(mux)
		app.Go("task", func(ctx context.Context) error { taskRan.Store(true); <-ctx.Done(); return nil })
		app.Defer(func() { closed.Store(true); closedAfterTask.Store(taskRan.Load()) })
		return nil
	})
	run := func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
		return p.Run(ctx, args, getenv, stdout)
	}
	svc := testinfra.StartService(t, run, "demo", map[string]string{"DATABASE_URL": db.URL, "ROLES": "api",
		"AUTH_ISSUER": "http://127.0.0.1:1", "LOG_LEVEL": "WARN"})
	get := func(u string) (int, string) {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := get(svc.Public + "/v1/greeting"); st != http.StatusServiceUnavailable || !strings.Contains(body, "not-ready") {
		t.Fatalf("before wiring: %d %s, want 503 not-ready", st, body)
	}
	close(release)
	testinfra.Eventually(t, 10*time.Second, func() error {
		if st, body := get(svc.Public + "/v1/greeting"); st != http.StatusOK || body != "hello" {
			return errors.New("greeting not served yet: " + body)
		}
		return nil
	})
	if st, _ := get(svc.Public + "/v1/admin/secret"); st != http.StatusNotFound {
		t.Errorf("public /v1/admin/secret = %d, want 404", st)
	}
	if st, body := get(svc.Admin + "/v1/admin/secret"); st != http.StatusOK || body != "admin" {
		t.Errorf("admin /v1/admin/secret = %d %s", st, body)
	}
	svc.Stop()
	if !closed.Load() || !closedAfterTask.Load() {
		t.Fatalf("deferred closer ran: %v, after the task: %v", closed.Load(), closedAfterTask.Load())
	}
}
