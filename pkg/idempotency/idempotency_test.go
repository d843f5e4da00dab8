package idempotency_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

var migrations = fstest.MapFS{
	"00001_idempotency.sql": {Data: []byte("-- +goose Up\n" + idempotency.Schema + `
CREATE TABLE widgets (
    id    uuid PRIMARY KEY,
    scope text NOT NULL,
    name  text NOT NULL
);
-- +goose Down
DROP TABLE widgets;
DROP TABLE idempotency_keys;
`)},
}

// newClock is a settable clock for Config.Now.
func newClock() *testinfra.Clock {
	return testinfra.NewClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
}

// bundle is one test's database, store and widget-creating route.
type bundle struct {
	db    *testinfra.Database
	pool  *pgxpool.Pool
	store *idempotency.Store
	clock *testinfra.Clock
	reg   *prometheus.Registry
	// calls counts runs of the business handler.
	calls atomic.Int64
	// entered and release, when set, make the business handler signal that
	// it runs and wait, holding its transaction open.
	entered chan struct{}
	release chan struct{}
	handler http.Handler
}

// setup builds a bundle; cfg's Now and Registerer are set by setup.
func setup(t *testing.T, cfg idempotency.Config) *bundle {
	t.Helper()
	b := &bundle{db: testinfra.Postgres(t, migrations), clock: newClock(), reg: prometheus.NewRegistry()}
	b.pool = b.db.Pool
	cfg.Now = b.clock.Now
	cfg.Registerer = b.reg
	store, err := idempotency.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.store = store
	b.handler = store.Handler(b.pool, func(r *http.Request) string { return r.Header.Get("X-Client") },
		http.HandlerFunc(b.createWidget))
	return b
}

// widgetIn is the body of POST /widgets.
type widgetIn struct {
	Name string `json:"name"`
}

type widgetOut struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Scope string `json:"scope"`
}

// createWidget is the business handler: it inserts a widget with a random
// id in the request's transaction and answers 201 with the id in the body
// and in Location, so a second execution can never produce the same bytes.
// Name "" is a validation error; "fail" and "panic" fail after the insert.
func (b *bundle) createWidget(w http.ResponseWriter, r *http.Request) {
	b.calls.Add(1)
	if b.entered != nil {
		b.entered <- struct{}{}
		<-b.release
	}
	var in widgetIn
	if err := httpkit.DecodeJSON(r, &in, 0); err != nil {
		httpkit.ErrorEncoder(nil)(r.Context(), err, w)
		return
	}
	if in.Name == "" {
		httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusUnprocessableEntity, "invalid-field", "name is required"))
		return
	}
	tx, ok := idempotency.TxFromContext(r.Context())
	if !ok {
		httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusInternalServerError, "internal", "no transaction"))
		return
	}
	out := widgetOut{ID: uuid.NewString(), Name: in.Name, Scope: r.Header.Get("X-Client")}
	if _, err := tx.Exec(r.Context(), `INSERT INTO widgets (id, scope, name) VALUES ($1, $2, $3)`, out.ID, out.Scope, out.Name); err != nil {
		httpkit.ErrorEncoder(nil)(r.Context(), err, w)
		return
	}
	switch in.Name {
	case "fail":
		httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusServiceUnavailable, "unavailable", "try later"))
		return
	case "panic":
		panic("widget factory exploded")
	}
	w.Header().Set("Location", "/widgets/"+out.ID)
	w.Header().Set("X-Not-Stored", "first response only")
	_ = httpkit.EncodeJSON(r.Context(), w, created{out})
}

type created struct{ widgetOut }

func (created) StatusCode() int { return http.StatusCreated }

// post sends POST target with body through the idempotent handler; an
// empty key sends no Idempotency-Key header.
func (b *bundle) post(t *testing.T, scope, key, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Client", scope)
	if key != "" {
		r.Header.Set(idempotency.HeaderKey, key)
	}
	w := httptest.NewRecorder()
	b.handler.ServeHTTP(w, r)
	return w
}

func (b *bundle) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// outcomes returns idempotency_requests_total by outcome.
func (b *bundle) outcomes(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "idempotency_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && m.GetCounter().GetValue() > 0 {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

func problemClass(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != httpkit.ContentTypeProblem {
		t.Fatalf("Content-Type %q, want a problem (status %d, body %s)", ct, w.Code, w.Body)
	}
	var p httpkit.Problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	return p.Class()
}

func wantStatus(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body)
	}
}

func wantReplayOf(t *testing.T, got, first *httptest.ResponseRecorder) {
	t.Helper()
	if got.Code != first.Code || got.Body.String() != first.Body.String() {
		t.Fatalf("replay %d %q, want %d %q byte for byte", got.Code, got.Body, first.Code, first.Body)
	}
	for _, h := range []string{"Location", "Content-Type"} {
		if got.Header().Get(h) != first.Header().Get(h) {
			t.Fatalf("replay %s %q, want %q", h, got.Header().Get(h), first.Header().Get(h))
		}
	}
	if got.Header().Get(idempotency.HeaderReplayed) != "true" {
		t.Fatalf("replay without %s: true", idempotency.HeaderReplayed)
	}
}

func TestConcurrentRequestsWithOneKeyCreateOnce(t *testing.T) {
	t.Parallel()
	const n = 50
	tests := []struct {
		name string
		// hold keeps the first request in flight until every other
		// request has been answered: all of them must be 409.
		hold bool
	}{
		{"first request held in flight", true},
		{"free for all", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, idempotency.Config{})
			// A pool large enough for the requests to overlap in the database.
			pool, err := pgdb.Open(context.Background(), pgdb.Config{URL: b.db.URL, MaxConns: 20})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			b.pool = pool
			b.handler = b.store.Handler(pool, func(r *http.Request) string { return r.Header.Get("X-Client") },
				http.HandlerFunc(b.createWidget))
			if tt.hold {
				b.entered, b.release = make(chan struct{}, 1), make(chan struct{})
			}

			fire := func(hold bool) []*httptest.ResponseRecorder {
				start := make(chan struct{})
				results := make(chan *httptest.ResponseRecorder, n)
				var wg sync.WaitGroup
				for range n {
					wg.Go(func() {
						<-start
						results <- b.post(t, "alice", "key-1", "/widgets", `{"name":"w"}`)
					})
				}
				close(start)
				var got []*httptest.ResponseRecorder
				if hold {
					// The 49 that lose the race are answered while the
					// winner waits; only then is it let go.
					for range n - 1 {
						got = append(got, <-results)
					}
					<-b.entered
					close(b.release)
				}
				wg.Wait()
				close(results)
				for w := range results {
					got = append(got, w)
				}
				return got
			}

			var first *httptest.ResponseRecorder
			var replays []*httptest.ResponseRecorder
			inUse := 0
			for _, w := range fire(tt.hold) {
				switch {
				case w.Code == http.StatusConflict:
					if c := problemClass(t, w); c != idempotency.ClassKeyInUse {
						t.Fatalf("409 class %q", c)
					}
					if ra := w.Header().Get("Retry-After"); ra != "1" {
						t.Fatalf("409 Retry-After %q, want 1", ra)
					}
					inUse++
				case w.Header().Get(idempotency.HeaderReplayed) == "true":
					replays = append(replays, w)
				case w.Code == http.StatusCreated:
					if first != nil {
						t.Fatalf("two original 201 responses:\n%s\n%s", first.Body, w.Body)
					}
					first = w
				default:
					t.Fatalf("unexpected response %d %s", w.Code, w.Body)
				}
			}
			if first == nil {
				t.Fatal("no request created the widget")
			}
			if tt.hold && inUse != n-1 {
				t.Fatalf("%d requests answered 409 while the first was held, want %d", inUse, n-1)
			}
			for _, w := range replays {
				wantReplayOf(t, w, first)
			}
			// After completion every request is a replay.
			for _, w := range fire(false) {
				wantReplayOf(t, w, first)
			}
			if got := b.count(t, "widgets"); got != 1 {
				t.Fatalf("%d widgets, want exactly 1", got)
			}
			if got := b.calls.Load(); got != 1 {
				t.Fatalf("business handler ran %d times, want 1", got)
			}
			if got := b.count(t, "idempotency_keys"); got != 1 {
				t.Fatalf("%d keys stored, want 1", got)
			}
			o := b.outcomes(t)
			if o[idempotency.OutcomeCreated] != 1 || o[idempotency.OutcomeReplayed] != float64(len(replays)+n) ||
				o[idempotency.OutcomeInFlightConflict] != float64(inUse) {
				t.Fatalf("outcomes %v; want created 1, replayed %d, in_flight_conflict %d", o, len(replays)+n, inUse)
			}
		})
	}
}

func TestReplayIsByteForByte(t *testing.T) {
	t.Parallel()
	b := setup(t, idempotency.Config{})
	first := b.post(t, "alice", "k", "/widgets", `{"name":"w"}`)
	wantStatus(t, first, http.StatusCreated)
	if first.Header().Get(idempotency.HeaderReplayed) != "" || first.Header().Get("X-Not-Stored") == "" {
		t.Fatalf("first response headers %v", first.Header())
	}
	for range 3 {
		again := b.post(t, "alice", "k", "/widgets", `{"name":"w"}`)
		wantReplayOf(t, again, first)
		if again.Header().Get("X-Not-Stored") != "" {
			t.Fatal("a header outside StoredHeaders was replayed")
		}
		if cl := again.Header().Get("Content-Length"); cl != fmt.Sprint(first.Body.Len()) {
			t.Fatalf("replay Content-Length %q, want %d", cl, first.Body.Len())
		}
	}
	// The quoted (RFC 8941) form names the same key.
	wantReplayOf(t, b.post(t, "alice", `"k"`, "/widgets", `{"name":"w"}`), first)
	if b.calls.Load() != 1 || b.count(t, "widgets") != 1 {
		t.Fatalf("calls %d widgets %d, want 1 and 1", b.calls.Load(), b.count(t, "widgets"))
	}
}

func TestKeyReusedForADifferentRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, target, body string
	}{
		{"different body", http.MethodPost, "/widgets", `{"name":"other"}`},
		{"body differing in whitespace", http.MethodPost, "/widgets", `{"name": "w"}`},
		{"different path", http.MethodPost, "/gadgets", `{"name":"w"}`},
		{"different query", http.MethodPost, "/widgets?dry_run=true", `{"name":"w"}`},
		{"different method", http.MethodPut, "/widgets", `{"name":"w"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, idempotency.Config{})
			first := b.post(t, "alice", "k", "/widgets", `{"name":"w"}`)
			wantStatus(t, first, http.StatusCreated)

			r := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("X-Client", "alice")
			r.Header.Set(idempotency.HeaderKey, "k")
			w := httptest.NewRecorder()
			b.handler.ServeHTTP(w, r)
			wantStatus(t, w, http.StatusUnprocessableEntity)
			if c := problemClass(t, w); c != idempotency.ClassKeyReused {
				t.Fatalf("class %q", c)
			}
			if b.calls.Load() != 1 || b.count(t, "widgets") != 1 {
				t.Fatalf("calls %d widgets %d: the reused key ran the handler", b.calls.Load(), b.count(t, "widgets"))
			}
			// The original is untouched.
			wantReplayOf(t, b.post(t, "alice", "k", "/widgets", `{"name":"w"}`), first)
			if o := b.outcomes(t); o[idempotency.OutcomeMismatch] != 1 {
				t.Fatalf("outcomes %v, want mismatch 1", o)
			}
		})
	}
}

func TestMissingOrInvalidKeyIs400(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		values  []string // nil: no header
		class   string
		outcome string
	}{
		{"missing", nil, idempotency.ClassKeyMissing, idempotency.OutcomeMissingKey},
		{"empty", []string{""}, idempotency.ClassKeyMissing, idempotency.OutcomeMissingKey},
		{"blank", []string{"  "}, idempotency.ClassKeyMissing, idempotency.OutcomeMissingKey},
		{"256 characters", []string{strings.Repeat("a", 256)}, idempotency.ClassKeyInvalid, idempotency.OutcomeInvalidKey},
		{"256 characters quoted", []string{`"` + strings.Repeat("a", 256) + `"`}, idempotency.ClassKeyInvalid, idempotency.OutcomeInvalidKey},
		{"sent twice", []string{"a", "b"}, idempotency.ClassKeyInvalid, idempotency.OutcomeInvalidKey},
		{"control character", []string{"a\x01b"}, idempotency.ClassKeyInvalid, idempotency.OutcomeInvalidKey},
		{"not ASCII", []string{"clé"}, idempotency.ClassKeyInvalid, idempotency.OutcomeInvalidKey},
		{"unterminated quote", []string{`"abc`}, idempotency.ClassKeyInvalid, idempotency.OutcomeInvalidKey},
		{"bad escape", []string{`"a\nb"`}, idempotency.ClassKeyInvalid, idempotency.OutcomeInvalidKey},
		{"data after the string", []string{`"abc";x=1`}, idempotency.ClassKeyInvalid, idempotency.OutcomeInvalidKey},
		{"empty string", []string{`""`}, idempotency.ClassKeyMissing, idempotency.OutcomeMissingKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, idempotency.Config{})
			r := httptest.NewRequest(http.MethodPost, "/widgets", strings.NewReader(`{"name":"w"}`))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("X-Client", "alice")
			if tt.values != nil {
				r.Header[idempotency.HeaderKey] = tt.values
			}
			w := httptest.NewRecorder()
			b.handler.ServeHTTP(w, r)
			wantStatus(t, w, http.StatusBadRequest)
			if c := problemClass(t, w); c != tt.class {
				t.Fatalf("class %q, want %q", c, tt.class)
			}
			if b.calls.Load() != 0 || b.count(t, "widgets") != 0 || b.count(t, "idempotency_keys") != 0 {
				t.Fatal("a request without a valid key changed something")
			}
			if o := b.outcomes(t); o[tt.outcome] != 1 {
				t.Fatalf("outcomes %v, want %s 1", o, tt.outcome)
			}
		})
	}
}

func TestValidKeyForms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, header, key string
	}{
		{"uuid", "8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"},
		{"quoted uuid", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, "8e03978e-40d5-43e8-bc93-6894a57f9324"},
		{"255 characters", strings.Repeat("x", 255), strings.Repeat("x", 255)},
		{"escapes", `"a\"b\\c"`, `a"b\c`},
		{"inner space", "a b", "a b"},
		{"surrounding whitespace", " \tabc ", "abc"},
	}
	store, err := idempotency.New(idempotency.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "/widgets?x=1", strings.NewReader("body"))
			r.Header[idempotency.HeaderKey] = []string{tt.header}
			req, err := store.ReadRequest(r, "alice")
			if err != nil {
				t.Fatal(err)
			}
			want := idempotency.Request{Scope: "alice", Key: tt.key, Method: http.MethodPost, Path: "/widgets?x=1", Body: []byte("body")}
			if req.Scope != want.Scope || req.Key != want.Key || req.Method != want.Method || req.Path != want.Path || string(req.Body) != string(want.Body) {
				t.Fatalf("ReadRequest = %+v, want %+v", req, want)
			}
		})
	}
}

func TestFailedRequestStoresNothingAndTheKeyCanBeRetried(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		status int // 0: the handler panics
	}{
		{"validation problem", `{"name":""}`, http.StatusUnprocessableEntity},
		{"malformed body", `{"name":`, http.StatusBadRequest},
		{"failure after the write", `{"name":"fail"}`, http.StatusServiceUnavailable},
		{"panic after the write", `{"name":"panic"}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, idempotency.Config{})
			var w *httptest.ResponseRecorder
			func() {
				defer func() {
					p := recover()
					if (p != nil) != (tt.status == 0) {
						t.Fatalf("recovered %v", p)
					}
				}()
				w = b.post(t, "alice", "k", "/widgets", tt.body)
			}()
			if tt.status != 0 {
				wantStatus(t, w, tt.status)
				if w.Header().Get(idempotency.HeaderReplayed) != "" {
					t.Fatal("an error response marked as replayed")
				}
			}
			if b.count(t, "widgets") != 0 || b.count(t, "idempotency_keys") != 0 {
				t.Fatalf("widgets %d keys %d after a failed request, want none", b.count(t, "widgets"), b.count(t, "idempotency_keys"))
			}
			// The same failure again runs again: it was not stored.
			if tt.status != 0 {
				wantStatus(t, b.post(t, "alice", "k", "/widgets", tt.body), tt.status)
				if b.calls.Load() != 2 {
					t.Fatalf("handler ran %d times, want 2 (errors are not replayed)", b.calls.Load())
				}
			}
			// The corrected request with the same key succeeds, once.
			ok := b.post(t, "alice", "k", "/widgets", `{"name":"w"}`)
			wantStatus(t, ok, http.StatusCreated)
			wantReplayOf(t, b.post(t, "alice", "k", "/widgets", `{"name":"w"}`), ok)
			if b.count(t, "widgets") != 1 || b.count(t, "idempotency_keys") != 1 {
				t.Fatalf("widgets %d keys %d, want 1 and 1", b.count(t, "widgets"), b.count(t, "idempotency_keys"))
			}
			if o := b.outcomes(t); o[idempotency.OutcomeRolledBack] == 0 {
				t.Fatalf("outcomes %v, want rolled_back counted", o)
			}
		})
	}
}

func TestScopesAreIndependent(t *testing.T) {
	t.Parallel()
	b := setup(t, idempotency.Config{})
	alice := b.post(t, "alice", "k", "/widgets", `{"name":"a"}`)
	bob := b.post(t, "bob", "k", "/widgets", `{"name":"b"}`)
	wantStatus(t, alice, http.StatusCreated)
	wantStatus(t, bob, http.StatusCreated)
	if alice.Header().Get("Location") == bob.Header().Get("Location") {
		t.Fatal("two scopes got one widget")
	}
	wantReplayOf(t, b.post(t, "alice", "k", "/widgets", `{"name":"a"}`), alice)
	wantReplayOf(t, b.post(t, "bob", "k", "/widgets", `{"name":"b"}`), bob)
	// Alice's body under bob's scope is bob's mismatch, not alice's replay.
	wantStatus(t, b.post(t, "bob", "k", "/widgets", `{"name":"a"}`), http.StatusUnprocessableEntity)
	if b.count(t, "widgets") != 2 || b.count(t, "idempotency_keys") != 2 {
		t.Fatalf("widgets %d keys %d, want 2 and 2", b.count(t, "widgets"), b.count(t, "idempotency_keys"))
	}
}

func TestExpiredKeyIsNew(t *testing.T) {
	t.Parallel()
	b := setup(t, idempotency.Config{Retention: time.Hour})
	first := b.post(t, "alice", "k", "/widgets", `{"name":"a"}`)
	wantStatus(t, first, http.StatusCreated)

	b.clock.Advance(time.Hour - time.Second)
	wantReplayOf(t, b.post(t, "alice", "k", "/widgets", `{"name":"a"}`), first)
	wantStatus(t, b.post(t, "alice", "k", "/widgets", `{"name":"b"}`), http.StatusUnprocessableEntity)

	b.clock.Advance(time.Second) // expires_at reached
	second := b.post(t, "alice", "k", "/widgets", `{"name":"b"}`)
	wantStatus(t, second, http.StatusCreated)
	if second.Header().Get(idempotency.HeaderReplayed) != "" {
		t.Fatal("an expired key was replayed")
	}
	wantReplayOf(t, b.post(t, "alice", "k", "/widgets", `{"name":"b"}`), second)
	if b.count(t, "widgets") != 2 || b.count(t, "idempotency_keys") != 1 {
		t.Fatalf("widgets %d keys %d, want 2 and 1 (the expired row taken over)", b.count(t, "widgets"), b.count(t, "idempotency_keys"))
	}
}

func TestOversizedBodyIsRefusedBeforeTheHandlerOrAKey(t *testing.T) {
	t.Parallel()
	b := setup(t, idempotency.Config{MaxBodyBytes: 16})
	w := b.post(t, "alice", "k", "/widgets", `{"name":"a long widget name"}`)
	wantStatus(t, w, http.StatusRequestEntityTooLarge)
	if b.calls.Load() != 0 || b.count(t, "idempotency_keys") != 0 {
		t.Fatal("an oversized request reached the handler or stored a key")
	}
}

func TestNewValidatesConfigAndSharesMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	tests := []struct {
		name    string
		cfg     idempotency.Config
		wantErr bool
	}{
		{"zero value", idempotency.Config{}, false},
		{"with registry", idempotency.Config{Registerer: reg}, false},
		{"second store on the same registry", idempotency.Config{Registerer: reg}, false},
		{"negative retention", idempotency.Config{Retention: -time.Second}, true},
		{"negative body limit", idempotency.Config{MaxBodyBytes: -1}, true},
		{"empty header name", idempotency.Config{StoredHeaders: []string{""}}, true},
	}
	for _, tt := range tests {
		// Not parallel: two subtests register on one registry in turn.
		_, err := idempotency.New(tt.cfg)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: New error %v, want error %v", tt.name, err, tt.wantErr)
		}
	}
}
