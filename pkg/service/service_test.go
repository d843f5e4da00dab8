package service_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/natsauth"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func TestGateAnswers503UntilOpened(t *testing.T) {
	t.Parallel()
	g := service.NewGate("orders")
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/orders/x", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" ||
		!strings.Contains(rec.Body.String(), "orders is connecting") {
		t.Fatalf("closed gate: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	g.Open(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	rec = httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/orders/x", nil))
	if rec.Code != http.StatusTeapot {
		t.Fatalf("open gate: %d", rec.Code)
	}
}

func TestCheckRolesRejectsUnknownRolesAndNone(t *testing.T) {
	t.Parallel()
	known := []string{"api", "relay"}
	if errs := service.CheckRoles([]string{"api", "relay"}, known); len(errs) != 0 {
		t.Fatalf("valid roles rejected: %v", errs)
	}
	errs := service.CheckRoles([]string{"api", "gossip"}, known)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `ROLES: unknown role "gossip" (known: api, relay)`) {
		t.Fatalf("unknown role: %v", errs)
	}
	if errs := service.CheckRoles(nil, known); len(errs) != 1 {
		t.Fatalf("no roles: %v", errs)
	}
}

func TestCanceledForgivesCancellationAndPassesOtherErrors(t *testing.T) {
	t.Parallel()
	if service.Canceled(fmt.Errorf("connect: %w", context.Canceled)) != nil {
		t.Error("a canceled wait is not a failure")
	}
	boom := errors.New("boom")
	if !errors.Is(service.Canceled(boom), boom) {
		t.Error("other errors pass through")
	}
}

// TestRuntimeConnectsAndReports starts a runtime against real PostgreSQL and
// an embedded NATS server that is down at first: /readyz names nats until it
// comes up, the stream exists afterwards, and the pool works.
func TestRuntimeConnectsAndReports(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := testinfra.Postgres(t, nil)
	srv := testinfra.NewNATSServer(t, testinfra.NATSServerOptions{})
	url := srv.URL()
	srv.Stop()

	rt, err := service.Start(ctx, "svctest", service.Base{DB: pgdb.Config{URL: db.URL}}, &testinfra.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	pool, err := rt.OpenPG(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := rt.PG.Check(ctx); err != nil {
		t.Fatalf("postgres connected but reported down: %v", err)
	}

	health := httpkit.NewHealth()
	name := "SVCTEST_" + strings.ToUpper(strings.ReplaceAll(t.Name(), "/", "_"))
	type conn struct {
		err error
	}
	done := make(chan conn, 1)
	go func() {
		nc, js, err := rt.ConnectNATS(ctx, natsauth.Config{URL: url}, health,
			service.Streams{Own: []stream.StreamConfig{{Name: name, Partitions: 2}}})
		if err == nil {
			_, err = js.Stream(ctx, name)
			nc.Close()
		}
		done <- conn{err}
	}()
	ready := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		health.Readyz().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if rec := ready(); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "nats") {
			return fmt.Errorf("readyz while NATS is down: %d %s", rec.Code, rec.Body)
		}
		return nil
	})
	srv.Start()
	select {
	case c := <-done:
		if c.err != nil {
			t.Fatalf("connect after NATS came up: %v", c.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ConnectNATS did not return after the server came up")
	}
	if rec := ready(); rec.Code != http.StatusServiceUnavailable {
		// The connection was closed by the test above: readiness must say so.
		t.Fatalf("readyz after the connection closed: %d %s", rec.Code, rec.Body)
	}
}

// TestConnectNATSWaitsForTheOwnersStreamAndNeverLogsThePassword: a
// process that reads another service's stream waits until the owner has
// created it, and what it logs while waiting (a refused password, a
// missing stream) names the server without the password.
func TestConnectNATSWaitsForTheOwnersStreamAndNeverLogsThePassword(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nt := testinfra.NATS(t)
	name := nt.Name("ORDERS")
	logs := &testinfra.Buffer{}
	rt, err := service.Start(ctx, "svctest", service.Base{}, logs)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)

	// Credentials in the URL: the embedded server has no authorization,
	// so they are accepted; the log must still not show them.
	cfg := natsauth.Config{URL: strings.Replace(nt.URL, "nats://", "nats://payments:s3cret-pw@", 1)}
	done := make(chan error, 1)
	go func() {
		nc, _, err := rt.ConnectNATS(ctx, cfg, httpkit.NewHealth(), service.Streams{Read: []stream.StreamConfig{{Name: name, Partitions: 2}}})
		if err == nil {
			nc.Close()
		}
		done <- err
	}()
	testinfra.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "its owner creates it") {
			return fmt.Errorf("no log line about the missing stream yet: %s", logs)
		}
		return nil
	})
	if _, err := nt.JS.Stream(ctx, name); err == nil {
		t.Fatal("ConnectNATS created a stream it only reads")
	}
	if err := stream.EnsureStream(ctx, nt.JS, stream.StreamConfig{Name: name, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ConnectNATS after the owner created the stream: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ConnectNATS did not return after the owner created the stream")
	}
	if strings.Contains(logs.String(), "s3cret-pw") {
		t.Fatalf("the log shows the NATS password: %s", logs)
	}
	if !strings.Contains(logs.String(), "payments:xxxxx@") {
		t.Fatalf("the log does not name the server (redacted): %s", logs)
	}
}

// TestServeMuxesSplitsPublicFromAdminAndDrainsOnCancel: the public listener serves the API gate and the admin
// listener the admin routes, metrics and readiness details; both drain
// when ctx ends and close their listeners.
func TestServeMuxesSplitsPublicFromAdminAndDrainsOnCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := service.Start(ctx, "svctest", service.Base{}, &testinfra.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	if _, err := service.Listen("127.0.0.1:18999", "127.0.0.1:18999"); err == nil || !strings.Contains(err.Error(), "ADMIN_ADDR") {
		t.Fatalf("Listen with one address twice: %v", err)
	}
	lns, err := service.Listen("127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	health := httpkit.NewHealth()
	health.AddCheck("postgres", func(context.Context) error { return nil })
	m := rt.NewMuxes(health)
	api := service.NewGate("svctest")
	m.Public.Handle("/v1/", api)
	m.Admin.Handle(httpkit.AdminPrefix, api)
	routes := http.NewServeMux()
	routes.HandleFunc("GET /v1/things", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	routes.HandleFunc("GET /v1/admin/things", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	api.Open(routes)
	served := make(chan error, 1)
	go func() { served <- rt.ServeMuxes(ctx, service.HTTP{}, lns, m, health) }()
	public, admin := "http://"+lns.Public.Addr().String(), "http://"+lns.Admin.Addr().String()
	testinfra.WaitReady(t, public+"/readyz", 10*time.Second)
	testinfra.CheckListeners(t, public, admin, "/v1/admin/things")
	resp, err := http.Get(public + "/v1/things")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("public API: %d", resp.StatusCode)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("serve after cancel: %v", err)
	}
	for _, ln := range []net.Listener{lns.Public, lns.Admin} {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			_ = c.Close()
			t.Errorf("%s still accepts connections after shutdown", ln.Addr())
		}
	}
}

// The public listener is the edge: a caller's traceparent starts a new
// trace there and its baggage is dropped, while the admin listener
// continues the caller's trace. Both mark every answer (a 200, a 404, the
// gate's 503 problem) X-Content-Type-Options: nosniff.
func TestServeMuxesTracesThePublicListenerAsTheEdgeAndMarksEveryAnswerNoSniff(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rt, err := service.Start(ctx, "svctest", service.Base{}, &testinfra.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	lns, err := service.Listen("127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	health := httpkit.NewHealth()
	m := rt.NewMuxes(health)
	api, closed := service.NewGate("svctest"), service.NewGate("svctest")
	m.Public.Handle("/v1/", api)
	m.Public.Handle("GET /closed", closed)
	m.Admin.Handle(httpkit.AdminPrefix, api)
	m.Admin.Handle("GET /closed", closed)
	echo := func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", trace.SpanContextFromContext(r.Context()).TraceID(), baggage.FromContext(r.Context()))
	}
	routes := http.NewServeMux()
	routes.HandleFunc("GET /v1/echo", echo)
	routes.HandleFunc("GET /v1/admin/echo", echo)
	api.Open(routes)
	served := make(chan error, 1)
	go func() { served <- rt.ServeMuxes(ctx, service.HTTP{}, lns, m, health) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve after cancel: %v", err)
		}
	}()
	public, admin := "http://"+lns.Public.Addr().String(), "http://"+lns.Admin.Addr().String()
	testinfra.WaitReady(t, public+"/readyz", 10*time.Second)

	const caller = "0af7651916cd43dd8448eb211c80319c"
	get := func(url string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Traceparent", "00-"+caller+"-b7ad6b7169203331-01")
		req.Header.Set("Baggage", "tenant=acme")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(body)
	}
	if _, _, body := get(public + "/v1/echo"); strings.Contains(body, caller) || strings.Contains(body, "tenant") {
		t.Errorf("public listener: the handler saw %q, want a new trace and no baggage", body)
	}
	if _, _, body := get(admin + "/v1/admin/echo"); body != caller+" tenant=acme" {
		t.Errorf("admin listener: the handler saw %q, want the caller's trace and baggage", body)
	}
	for _, base := range []string{public, admin} {
		for path, want := range map[string]int{"/healthz": 200, "/nothing": 404, "/closed": 503} {
			status, h, _ := get(base + path)
			if status != want || h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s%s: %d %v, want %d with X-Content-Type-Options: nosniff", base, path, status, h, want)
			}
		}
	}
}

// TestConnectNATSReplicatesOwnStreams: with STREAM_REPLICAS=3 on a
// cluster of three, the streams a process owns (and their DLQs) are made
// with three replicas (ADR 0041); a stream that names its own replicas
// keeps them.
func TestConnectNATSReplicatesOwnStreams(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := testinfra.NewNATSCluster(t, 3)
	rt, err := service.Start(ctx, "svctest", service.Base{}, &testinfra.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	nc, js, err := rt.ConnectNATS(ctx, natsauth.Config{URL: c.URL(), StreamReplicas: 3}, httpkit.NewHealth(),
		service.Streams{Own: []stream.StreamConfig{{Name: "REPL", Partitions: 2}, {Name: "SINGLE", Partitions: 2, Replicas: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for s, want := range map[string]int{"REPL": 3, stream.DLQStream("REPL"): 3, "SINGLE": 1, stream.DLQStream("SINGLE"): 1} {
		st, err := js.Stream(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().Config.Replicas; got != want {
			t.Errorf("%s: %d replicas, want %d", s, got, want)
		}
	}
}
