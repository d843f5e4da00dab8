package httpkit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

// outOfStock is a domain error that knows its problem.
type outOfStock struct{ sku string }

func (e outOfStock) Error() string { return "out of stock: " + e.sku }
func (e outOfStock) Problem() *httpkit.Problem {
	return httpkit.NewProblem(http.StatusConflict, "out-of-stock", "not enough "+e.sku+" in stock")
}

func TestErrorEncoderMapsEachErrorToItsProblem(t *testing.T) {
	t.Parallel()
	notFound := httpkit.NewProblem(http.StatusNotFound, "not-found", "no order with this id")
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantClass  string
		wantDetail string
		wantLog    string // substring of the log output; "" means nothing logged
	}{
		{name: "problem", err: notFound, wantStatus: 404, wantClass: "not-found", wantDetail: "no order with this id"},
		{name: "wrapped problem", err: fmt.Errorf("get order 42: %w", notFound), wantStatus: 404, wantClass: "not-found", wantDetail: "no order with this id"},
		{name: "problem provider", err: fmt.Errorf("reserve: %w", outOfStock{"bolt"}), wantStatus: 409, wantClass: "out-of-stock", wantDetail: "not enough bolt"},
		{name: "max bytes", err: fmt.Errorf("read: %w", &http.MaxBytesError{Limit: 7}), wantStatus: 413, wantClass: "body-too-large", wantDetail: "7 bytes"},
		{name: "deadline", err: fmt.Errorf("query: %w", context.DeadlineExceeded), wantStatus: 504, wantClass: "timeout", wantLog: "request timed out"},
		{name: "generic", err: fmt.Errorf("insert: %w", errors.New("secret dsn postgres://admin:hunter2@db")), wantStatus: 500, wantClass: "internal", wantDetail: "internal error", wantLog: "hunter2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logger, logs := newLogger()
			rec := httptest.NewRecorder()
			httpkit.ErrorEncoder(logger)(context.Background(), tt.err, rec)

			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			p := parseProblem(t, rec.Header(), rec.Body.Bytes())
			if p.Status != tt.wantStatus || p.Class() != tt.wantClass || p.Title != http.StatusText(tt.wantStatus) {
				t.Fatalf("problem %+v", p)
			}
			if !strings.Contains(p.Detail, tt.wantDetail) {
				t.Errorf("detail %q does not contain %q", p.Detail, tt.wantDetail)
			}
			if strings.Contains(rec.Body.String(), "hunter2") || strings.Contains(rec.Body.String(), "insert:") {
				t.Errorf("error text leaked to the client: %s", rec.Body)
			}
			if got := logs.String(); (tt.wantLog == "") != (got == "") || !strings.Contains(got, tt.wantLog) {
				t.Errorf("log %q, want it to contain %q", got, tt.wantLog)
			}
		})
	}
}

// TestDatabaseUnavailableIs503: a request that cannot get a PostgreSQL
// connection (here a real dial to a port nothing listens on) did nothing
// and may be retried: 503 with Retry-After, not a 500.
// TestClientGoneIsNot500: a request whose client went away (its context
// canceled) is answered 499 and logged at info, not as a failed request;
// a cancellation while the client still waits is still a 500.
func TestClientGoneIsNot500(t *testing.T) {
	t.Parallel()
	logger, logs := newLogger()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	httpkit.ErrorEncoder(logger)(gone, fmt.Errorf("query: %w", context.Canceled), rec)
	if rec.Code != httpkit.StatusClientClosedRequest || strings.Contains(logs.String(), "ERROR") || !strings.Contains(logs.String(), "client closed the request") {
		t.Fatalf("client gone = %d, logs %q", rec.Code, logs.String())
	}
	rec = httptest.NewRecorder()
	httpkit.ErrorEncoder(logger)(context.Background(), fmt.Errorf("query: %w", context.Canceled), rec)
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("canceled while the client waits = %d, want 500", rec.Code)
	}
}

func TestDatabaseUnavailableIs503(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	_, connErr := pgconn.Connect(context.Background(), "postgres://x@"+addr+"/db?connect_timeout=2")
	var ce *pgconn.ConnectError
	if !errors.As(connErr, &ce) {
		t.Fatalf("dialing a closed port: %T %v, want a *pgconn.ConnectError", connErr, connErr)
	}
	logger, logs := newLogger()
	rec := httptest.NewRecorder()
	httpkit.ErrorEncoder(logger)(context.Background(), fmt.Errorf("get order 42: %w", connErr), rec)
	p := parseProblem(t, rec.Header(), rec.Body.Bytes())
	if rec.Code != http.StatusServiceUnavailable || p.Class() != "dependency-unavailable" || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("status %d, problem %+v, Retry-After %q; want 503 dependency-unavailable with Retry-After 1",
			rec.Code, p, rec.Header().Get("Retry-After"))
	}
	if strings.Contains(rec.Body.String(), addr) || !strings.Contains(logs.String(), "dependency unavailable") {
		t.Errorf("body %s, log %s: want the address only in the log", rec.Body, logs)
	}
}

func TestRetryAfterRoundsUpToWholeSeconds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		retryAfter time.Duration
		want       string
	}{
		{"none", 0, ""},
		{"whole seconds", 3 * time.Second, "3"},
		{"rounded up", 1500 * time.Millisecond, "2"},
		{"sub-second", time.Millisecond, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := httpkit.NewProblem(http.StatusServiceUnavailable, "not-ready", "starting")
			p.RetryAfter = tt.retryAfter
			rec := httptest.NewRecorder()
			httpkit.ErrorEncoder(nil)(context.Background(), fmt.Errorf("create: %w", p), rec)
			if rec.Code != http.StatusServiceUnavailable {
				t.Fatalf("status %d", rec.Code)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.want {
				t.Fatalf("Retry-After %q, want %q", got, tt.want)
			}
			if strings.Contains(rec.Body.String(), "etry") {
				t.Errorf("RetryAfter leaked into the body: %s", rec.Body)
			}
		})
	}
}

func TestWriteProblemFillsTypeTitleAndAValidStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		p          *httpkit.Problem
		wantStatus int
		wantType   string
		wantTitle  string
	}{
		{"nil", nil, 500, httpkit.ProblemBase + "internal", "Internal Server Error"},
		{"bare", &httpkit.Problem{Status: 409}, 409, "about:blank", "Conflict"},
		{"bad status", &httpkit.Problem{Status: 42, Title: "odd"}, 500, "about:blank", "odd"},
		{"field errors", &httpkit.Problem{Type: httpkit.ProblemBase + "invalid-field", Status: 400, Errors: []httpkit.FieldError{{Field: "qty", Message: "must be positive"}}}, 400, httpkit.ProblemBase + "invalid-field", "Bad Request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var before httpkit.Problem
			if tt.p != nil {
				before = *tt.p
			}
			rec := httptest.NewRecorder()
			httpkit.WriteProblem(rec, tt.p)
			got := parseProblem(t, rec.Header(), rec.Body.Bytes())
			if rec.Code != tt.wantStatus || got.Status != tt.wantStatus || got.Type != tt.wantType || got.Title != tt.wantTitle {
				t.Fatalf("got %d %+v", rec.Code, got)
			}
			if tt.p != nil {
				if tt.p.Type != before.Type || tt.p.Title != before.Title || tt.p.Status != before.Status {
					t.Errorf("WriteProblem modified its argument: %+v", tt.p)
				}
				if len(tt.p.Errors) > 0 && (len(got.Errors) != 1 || got.Errors[0] != tt.p.Errors[0]) {
					t.Errorf("errors %+v", got.Errors)
				}
			}
		})
	}
}

func TestProblemErrorStatesStatusTitleAndDetail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p         *httpkit.Problem
		want      string
		wantClass string
	}{
		{httpkit.NewProblem(404, "not-found", "no such order"), "404 Not Found: no such order", "not-found"},
		{httpkit.NewProblem(409, "conflict", ""), "409 Conflict", "conflict"},
		{&httpkit.Problem{Type: "urn:other", Status: 400}, "400 Bad Request", "urn:other"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			if got := tt.p.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if got := tt.p.Class(); got != tt.wantClass {
				t.Errorf("Class() = %q, want %q", got, tt.wantClass)
			}
		})
	}
}

func TestConnectionLostIsA503NeverA500(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"unexpected EOF mid-query", fmt.Errorf("idempotency: look up key: %w", io.ErrUnexpectedEOF), true},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{"connection refused", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true},
		{"closed pgx connection", fmt.Errorf("query: %w", pgconn.ErrConnClosed), true},
		{"server crashed: another backend's crash", fmt.Errorf("insert: %w", &pgconn.PgError{Severity: "FATAL", Code: "57P02"}), true},
		{"server recovering", &pgconn.PgError{Severity: "FATAL", Code: "57P03"}, true},
		{"server shut down", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, true},
		{"connection exception", &pgconn.PgError{Severity: "FATAL", Code: "08006"}, true},
		{"a constraint is no outage", &pgconn.PgError{Code: "23505"}, false},
		{"a timeout is 504's", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, false},
		{"a bug", errors.New("nil map"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := httpkit.ConnectionLost(tc.err); got != tc.want {
				t.Fatalf("ConnectionLost = %v, want %v", got, tc.want)
			}
			if !tc.want {
				return
			}
			w := httptest.NewRecorder()
			httpkit.ErrorEncoder(nil)(context.Background(), tc.err, w)
			if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
				t.Fatalf("status %d Retry-After %q, want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
			}
		})
	}
}

// TestDatabaseTimeoutsAreA503: a statement, lock or idle-transaction
// timeout of the database answers 503 "dependency-busy" with Retry-After;
// another database error stays a 500.
func TestDatabaseTimeoutsAreA503(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code string
		want int
	}{{"57014", 503}, {"55P03", 503}, {"25P03", 503}, {"23505", 500}} {
		err := fmt.Errorf("orders: insert: %w", &pgconn.PgError{Code: tc.code, Message: "x"})
		w := httptest.NewRecorder()
		httpkit.ErrorEncoder(nil)(context.Background(), err, w)
		if w.Code != tc.want || (tc.want == 503 && (w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "dependency-busy"))) {
			t.Errorf("SQLSTATE %s: %d %q %s, want %d", tc.code, w.Code, w.Header().Get("Retry-After"), w.Body, tc.want)
		}
	}
}
