package exampleservice_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopfloor/shopfloor/pkg/exampleservice"
	"github.com/shopfloor/shopfloor/pkg/exampleservice/migrations"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/telemetry"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

type bundle struct {
	base  string // http://127.0.0.1:port
	db    *testinfra.Database
	nt    *testinfra.NATSPrefix
	cfg   exampleservice.Config
	spans *tracetest.InMemoryExporter
	logs  *testinfra.Buffer
}

// start runs Serve against the test's own database and stream names and
// stops it when the test ends. dbURL overrides the database address.
func start(t *testing.T, dbURL string) *bundle {
	t.Helper()
	b := &bundle{db: testinfra.Postgres(t, migrations.FS), nt: testinfra.NATS(t), spans: tracetest.NewInMemoryExporter(), logs: &testinfra.Buffer{}}
	if dbURL == "" {
		dbURL = b.db.URL
	}
	b.cfg = exampleservice.Config{
		HTTPAddr:        "127.0.0.1:0",
		ShutdownTimeout: 5 * time.Second,
		DB:              pgdb.Config{URL: dbURL, ConnectTimeout: time.Second},
		NATSURL:         b.nt.URL,
		Stream:          b.nt.Name("NOTES"),
		Group:           "example",
		Roles:           []string{"api", "consumer"},
	}
	ctx, cancel := context.WithCancel(context.Background())
	tel, err := telemetry.New(ctx, telemetry.Config{ServiceName: exampleservice.ServiceName, InstanceID: "test", SpanExporter: b.spans}, b.logs)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.base = "http://" + ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- exampleservice.Serve(ctx, b.cfg, tel, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		_ = tel.Shutdown(context.Background())
		if t.Failed() {
			t.Logf("service logs:\n%s", b.logs.String())
		}
	})
	return b
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, method, u, contentType string, body io.Reader, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func waitReady(t *testing.T, b *bundle) {
	t.Helper()
	testinfra.Eventually(t, 30*time.Second, func() error {
		if r := do(t, "GET", b.base+"/readyz", "", nil, nil); r.status != http.StatusOK {
			return fmt.Errorf("readyz %d: %s", r.status, r.body)
		}
		return nil
	})
}

// TestTracePropagatesFromHTTPToConsumer shows one trace crossing the
// service: the client's traceparent → the HTTP server span → the producer
// span → the message metadata in JetStream → the consumer span.
func TestTracePropagatesFromHTTPToConsumer(t *testing.T) {
	t.Parallel()
	b := start(t, "")
	waitReady(t, b)

	const traceID, parentSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	r := do(t, "POST", b.base+"/v1/notes", "application/json", strings.NewReader(`{"text":"hello"}`),
		map[string]string{"traceparent": "00-" + traceID + "-" + parentSpan + "-01"})
	if r.status != http.StatusCreated {
		t.Fatalf("POST /v1/notes = %d %s", r.status, r.body)
	}
	var note exampleservice.Note
	if err := json.Unmarshal(r.body, &note); err != nil {
		t.Fatal(err)
	}
	if loc := r.header.Get("Location"); loc != "/v1/notes/"+note.ID {
		t.Fatalf("Location = %q", loc)
	}

	// The consumer records the trace id its span had.
	testinfra.Eventually(t, 30*time.Second, func() error {
		r := do(t, "GET", b.base+"/v1/notes/"+note.ID, "", nil, nil)
		if err := json.Unmarshal(r.body, &note); err != nil {
			return err
		}
		if note.SeenTrace == "" {
			return errors.New("note not seen yet")
		}
		return nil
	})
	if note.SeenTrace != traceID {
		t.Fatalf("consumer saw trace %s, want the request's %s", note.SeenTrace, traceID)
	}

	// The message as stored in JetStream carries the trace in its headers.
	ctx := context.Background()
	cons, err := b.nt.JS.OrderedConsumer(ctx, b.cfg.Stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if tp := msg.Headers().Get("traceparent"); !strings.Contains(tp, traceID) {
		t.Fatalf("message traceparent = %q, want trace %s", tp, traceID)
	}

	// The spans form one chain: client → server → producer → consumer.
	var server, producer, consumer *tracetest.SpanStub
	testinfra.Eventually(t, 10*time.Second, func() error {
		spans := b.spans.GetSpans()
		server, producer, consumer = nil, nil, nil
		for i := range spans {
			s := &spans[i]
			if s.SpanContext.TraceID().String() != traceID {
				continue
			}
			switch s.SpanKind {
			case trace.SpanKindServer:
				server = s
			case trace.SpanKindProducer:
				producer = s
			case trace.SpanKindConsumer:
				consumer = s
			}
		}
		if server == nil || producer == nil || consumer == nil {
			return fmt.Errorf("spans in the trace: server=%v producer=%v consumer=%v (of %d spans)", server != nil, producer != nil, consumer != nil, len(spans))
		}
		return nil
	})
	if got := server.Parent.SpanID().String(); got != parentSpan {
		t.Errorf("server span parent = %s, want the client's %s", got, parentSpan)
	}
	if producer.Parent.SpanID() != server.SpanContext.SpanID() {
		t.Errorf("producer span's parent is not the server span")
	}
	if consumer.Parent.SpanID() != producer.SpanContext.SpanID() {
		t.Errorf("consumer span's parent is not the producer span")
	}
	// Logs written inside the consumer carry the trace id.
	if !strings.Contains(b.logs.String(), `"trace_id":"`+traceID+`"`) {
		t.Errorf("no log line carries trace_id %s", traceID)
	}
}

// TestBadInputChangesNothing: every bad request gets a problem+json 4xx and
// writes no row and no message.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	b := start(t, "")
	waitReady(t, b)
	tests := []struct {
		name, contentType, body string
		status                  int
		problemType             string
	}{
		{"empty body", "application/json", "", 400, "empty-body"},
		{"malformed", "application/json", `{"text":`, 400, "malformed-json"},
		{"unknown field", "application/json", `{"text":"a","colour":"red"}`, 400, "unknown-field"},
		{"trailing data", "application/json", `{"text":"a"} {"text":"b"}`, 400, "trailing-data"},
		{"wrong type", "application/json", `{"text":42}`, 400, "invalid-field"},
		{"blank text", "application/json", `{"text":"   "}`, 400, "invalid-field"},
		{"text too long", "application/json", `{"text":"` + strings.Repeat("x", 501) + `"}`, 400, "invalid-field"},
		{"not json", "text/plain", `hello`, 415, "unsupported-media-type"},
		{"too large", "application/json", `{"text":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "body-too-large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, "POST", b.base+"/v1/notes", tt.contentType, strings.NewReader(tt.body), nil)
			if r.status != tt.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tt.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Fatalf("Content-Type = %q, want application/problem+json", ct)
			}
			var p struct {
				Type   string `json:"type"`
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}
			if err := json.Unmarshal(r.body, &p); err != nil {
				t.Fatalf("problem body %q: %v", r.body, err)
			}
			if p.Type != "https://shopfloor.dev/problems/"+tt.problemType || p.Status != tt.status || p.Detail == "" {
				t.Fatalf("problem = %+v, want type %s, status %d and a detail", p, tt.problemType, tt.status)
			}
		})
	}
	var rows int
	if err := b.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM notes").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Fatalf("%d notes written by bad requests, want 0", rows)
	}
	info, err := b.nt.JS.Stream(context.Background(), b.cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 0 {
		t.Fatalf("%d messages published by bad requests, want 0", n)
	}
	if r := do(t, "GET", b.base+"/v1/notes/not-a-uuid", "", nil, nil); r.status != http.StatusNotFound {
		t.Fatalf("GET unknown note = %d, want 404", r.status)
	}
}

// TestReadyzWaitsForPostgres: with PostgreSQL unreachable at start the
// process stays up, /readyz says why, the API answers 503 with Retry-After,
// and the service becomes ready by itself when the database appears.
func TestReadyzWaitsForPostgres(t *testing.T) {
	t.Parallel()
	real := testinfra.Postgres(t, migrations.FS)
	u, err := url.Parse(real.URL)
	if err != nil {
		t.Fatal(err)
	}
	// PostgreSQL is "down" at start: the service dials a proxy that refuses.
	proxy := testinfra.NewProxy(t, u.Host)
	proxy.Down()
	u.Host = proxy.Addr()
	b := start(t, u.String())

	testinfra.Eventually(t, 10*time.Second, func() error {
		r := do(t, "GET", b.base+"/readyz", "", nil, nil)
		if r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "postgres") {
			return fmt.Errorf("readyz = %d %s, want 503 naming postgres", r.status, r.body)
		}
		return nil
	})
	if r := do(t, "GET", b.base+"/healthz", "", nil, nil); r.status != http.StatusOK {
		t.Fatalf("healthz = %d while a dependency is down, want 200 (alive)", r.status)
	}
	r := do(t, "POST", b.base+"/v1/notes", "application/json", strings.NewReader(`{"text":"early"}`), nil)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("POST before ready = %d (Retry-After %q), want 503 with Retry-After", r.status, r.header.Get("Retry-After"))
	}

	// Keep PostgreSQL down until the service has failed to reach it at
	// least once (a 503 only says "not connected yet").
	testinfra.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(b.logs.String(), "dependency unavailable, retrying") {
			return errors.New("no retry logged yet")
		}
		return nil
	})
	proxy.Up()
	waitReady(t, b)
	if r := do(t, "POST", b.base+"/v1/notes", "application/json", strings.NewReader(`{"text":"late"}`), nil); r.status != http.StatusCreated {
		t.Fatalf("POST after ready = %d %s", r.status, r.body)
	}
}

// TestRunRejectsBadConfig: bad configuration stops the process at start
// with one line per bad value.
func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"HTTP_SHUTDOWN_TIMEOUT": "soon",
		"DATABASE_MAX_CONNS":    "lots",
	}
	err := exampleservice.Run(context.Background(), []string{"exampleservice"}, func(k string) string { return env[k] }, io.Discard)
	if err == nil {
		t.Fatal("Run accepted bad configuration")
	}
	for _, want := range []string{
		"DATABASE_URL: required, not set",
		"NATS_URL: required, not set",
		`HTTP_SHUTDOWN_TIMEOUT: not a duration (use e.g. 500ms, 30s, 5m) (got "soon")`,
		`DATABASE_MAX_CONNS: not a number (got "lots")`,
	} {
		if !strings.Contains(err.Error(), "\n  "+want) {
			t.Errorf("error does not have the line %q:\n%v", want, err)
		}
	}
	env = map[string]string{"DATABASE_URL": "postgres://x", "NATS_URL": "nats://x", "ROLES": "api,bogus", "NOTES_STREAM": "bad name"}
	err = exampleservice.Run(context.Background(), []string{"exampleservice"}, func(k string) string { return env[k] }, io.Discard)
	for _, want := range []string{`ROLES: unknown role "bogus"`, `NOTES_STREAM: must be upper-case`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	if err := exampleservice.Run(context.Background(), []string{"exampleservice", "fly"}, func(string) string { return "" }, io.Discard); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command: err = %v", err)
	}
}

// TestMigrateRoleCreatesTheSchemaAndLogsJSON runs the migrate role against an empty database.
func TestMigrateRoleCreatesTheSchemaAndLogsJSON(t *testing.T) {
	t.Parallel()
	db := testinfra.Postgres(t, nil)
	env := map[string]string{"DATABASE_URL": db.URL, "NATS_URL": "nats://unused"}
	var logs testinfra.Buffer
	if err := exampleservice.Run(context.Background(), []string{"exampleservice", "migrate"}, func(k string) string { return env[k] }, &logs); err != nil {
		t.Fatal(err)
	}
	var exists bool
	if err := db.Pool.QueryRow(context.Background(), "SELECT to_regclass('notes') IS NOT NULL").Scan(&exists); err != nil || !exists {
		t.Fatalf("notes table after migrate: %v, %v", exists, err)
	}
	if !strings.Contains(logs.String(), `"msg":"migrations applied"`) {
		t.Fatalf("no JSON log line for the migration:\n%s", logs.String())
	}
}
