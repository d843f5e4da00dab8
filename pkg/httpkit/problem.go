package httpkit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	kithttp "github.com/go-kit/kit/transport/http"
	"github.com/jackc/pgx/v5/pgconn"
)

// ProblemBase is the prefix of every problem type URI this repository
// defines; the rest of the URI is the problem's class ("not-found",
// "malformed-json", ...). The URIs identify problems, they need not resolve.
const ProblemBase = "https://shopfloor.dev/problems/"

// ContentTypeProblem is the media type of an RFC 9457 problem document.
const ContentTypeProblem = "application/problem+json"

// Problem is an RFC 9457 problem document. It is also an error, so use
// cases and decoders return it as is and ErrorEncoder writes it unchanged.
//
// A *Problem held in a package-level variable (a sentinel such as "note not
// found") is safe to share: nothing in this package modifies a Problem it
// is given.
type Problem struct {
	// Type is ProblemBase + class. Empty is written as "about:blank".
	Type string `json:"type"`
	// Title is the short, fixed text for the status. Empty is written as
	// http.StatusText(Status).
	Title string `json:"title"`
	// Status is the HTTP status code. A value outside 100..999 is written
	// as 500.
	Status int `json:"status"`
	// Detail tells a person what went wrong with this request and, where
	// possible, what to do about it. It must not contain internal error
	// text.
	Detail string `json:"detail,omitempty"`
	// Instance optionally identifies this occurrence (a URI reference).
	Instance string `json:"instance,omitempty"`
	// Errors lists the fields that failed validation, if any.
	Errors []FieldError `json:"errors,omitempty"`
	// RetryAfter, when positive, is sent as the Retry-After header in whole
	// seconds, rounded up (a 500ms hint becomes "1"). It is not part of the
	// JSON body.
	RetryAfter time.Duration `json:"-"`
}

// FieldError names one invalid field of a request and why it is invalid.
// Field is the JSON name (dotted for nested fields, e.g. "lines.2.qty");
// Pointer, when set, is the same place as an RFC 6901 JSON Pointer in a
// URI fragment ("#/lines/2/qty"), as RFC 9457's examples write it.
type FieldError struct {
	Field   string `json:"field"`
	Pointer string `json:"pointer,omitempty"`
	Message string `json:"message"`
}

// ProblemProvider is implemented by errors that know the problem they stand
// for (for example a domain error type declared in a service's http
// package). ErrorEncoder finds it anywhere in the error's chain.
type ProblemProvider interface {
	Problem() *Problem
}

// NewProblem returns a problem with Type ProblemBase+class and Title
// http.StatusText(status). class should be a short kebab-case word that a
// client can switch on ("not-found", "conflict", "invalid-field").
func NewProblem(status int, class, detail string) *Problem {
	return &Problem{
		Type:   ProblemBase + class,
		Title:  http.StatusText(status),
		Status: status,
		Detail: detail,
	}
}

// Error returns "<status> <title>: <detail>" (without ": <detail>" when
// Detail is empty), so a Problem that ends up in a log line still reads
// well.
func (p *Problem) Error() string {
	title := p.Title
	if title == "" {
		title = http.StatusText(p.Status)
	}
	if p.Detail == "" {
		return fmt.Sprintf("%d %s", p.Status, title)
	}
	return fmt.Sprintf("%d %s: %s", p.Status, title, p.Detail)
}

// Class returns Type without ProblemBase ("not-found"), or Type unchanged
// when it does not start with ProblemBase.
func (p *Problem) Class() string {
	return strings.TrimPrefix(p.Type, ProblemBase)
}

// WriteProblem writes p as application/problem+json with p.Status, and a
// Retry-After header when p.RetryAfter is positive. p is not modified;
// empty Type and Title are written as "about:blank" and the status text. A
// nil p is written as a 500 "internal" problem. Call it before anything
// else has been written to w.
func WriteProblem(w http.ResponseWriter, p *Problem) {
	if p == nil {
		p = internalProblem()
	}
	out := *p
	if out.Status < 100 || out.Status > 999 {
		out.Status = http.StatusInternalServerError
	}
	if out.Type == "" {
		out.Type = "about:blank"
	}
	if out.Title == "" {
		out.Title = http.StatusText(out.Status)
	}
	var body bytes.Buffer
	if err := json.NewEncoder(&body).Encode(out); err != nil {
		// Only plain strings and ints: this cannot fail. Fall back to a
		// body that is still a valid problem document.
		body.Reset()
		body.WriteString(`{"type":"about:blank","title":"Internal Server Error","status":500}`)
		out.Status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", ContentTypeProblem)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	if out.RetryAfter > 0 {
		secs := int64((out.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	w.WriteHeader(out.Status)
	_, _ = w.Write(body.Bytes()) // the client may be gone; nothing to do
}

// ErrorEncoder returns the go-kit error encoder that turns every error a
// go-kit server meets (decoding, endpoint, encoding) into a problem
// response. It is the one place errors become HTTP statuses:
//
//   - a *Problem anywhere in the chain (errors.As) is written as is;
//   - an error implementing ProblemProvider is written as its Problem();
//   - a *http.MaxBytesError becomes 413 "body-too-large";
//   - context.DeadlineExceeded becomes 504 "timeout" (logged at Warn);
//   - a dependency that cannot be reached or whose connection broke
//     mid-request (ConnectionLost: PostgreSQL down, restarting, out of
//     slots, or the link cut during a query) becomes 503
//     "dependency-unavailable" with Retry-After: 1 (Warn), never 500;
//   - a statement or transaction the database ended by a session timeout
//     (DatabaseTimedOut) becomes 503 "dependency-busy" with Retry-After: 1;
//   - anything else becomes 500 "internal" with the fixed detail
//     "internal error". The error text is never sent to the client; it is
//     logged at Error with the request's context, so trace ids attach.
//
// A nil logger discards the log lines.
func ErrorEncoder(logger *slog.Logger) kithttp.ErrorEncoder {
	logger = orDiscard(logger)
	return func(ctx context.Context, err error, w http.ResponseWriter) {
		WriteProblem(w, problemFor(ctx, logger, err))
	}
}

// StatusClientClosedRequest is the status of an answer to a request whose
// client went away first (no HTTP status exists for it; nginx's 499).
const StatusClientClosedRequest = 499

// problemFor maps err to the problem to write, logging what the client is
// not told.
func problemFor(ctx context.Context, logger *slog.Logger, err error) *Problem {
	var p *Problem
	if errors.As(err, &p) && p != nil {
		return p
	}
	var pp ProblemProvider
	if errors.As(err, &pp) {
		if p := pp.Problem(); p != nil {
			return p
		}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(mbe.Limit)
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		// The client went away (a caller's attempt timeout, a closed
		// browser tab): nobody reads this answer, and it is not a server
		// error. 499 (nginx's "client closed request") keeps it out of the
		// 5xx error rates and the error log.
		logger.LogAttrs(ctx, slog.LevelInfo, "client closed the request", slog.Any("err", err))
		p := NewProblem(StatusClientClosedRequest, "client-closed-request", "the client closed the request before it was answered")
		p.Title = "Client Closed Request"
		return p
	}
	if errors.Is(err, context.DeadlineExceeded) {
		logger.LogAttrs(ctx, slog.LevelWarn, "request timed out", slog.Any("err", err))
		return NewProblem(http.StatusGatewayTimeout, "timeout", "the request did not complete in time; it may be retried")
	}
	// A dependency could not be reached, its connection died mid-request,
	// or the database ended a statement or transaction by a session
	// timeout (a slow or blocked database): a dependency failure, not a
	// bug. Nothing was committed that the client cannot find again by
	// retrying (with the same Idempotency-Key where the route takes one).
	for _, dep := range []struct {
		is                 func(error) bool
		msg, class, detail string
	}{
		{ConnectionLost, "dependency unavailable", "dependency-unavailable", "a dependency of this service is unavailable; retry after the Retry-After delay"},
		{DatabaseTimedOut, "database timeout", "dependency-busy", "the database did not answer in time; retry after the Retry-After delay"},
	} {
		if dep.is(err) {
			logger.LogAttrs(ctx, slog.LevelWarn, dep.msg, slog.Any("err", err))
			p := NewProblem(http.StatusServiceUnavailable, dep.class, dep.detail)
			p.RetryAfter = time.Second
			return p
		}
	}
	logger.LogAttrs(ctx, slog.LevelError, "request failed", slog.Any("err", err))
	return internalProblem()
}

// DatabaseTimedOut reports whether err is PostgreSQL ending a statement or
// a session by a session timeout (pgdb.Config): statement_timeout (57014),
// lock_timeout (55P03), idle_in_transaction_session_timeout (25P03).
func DatabaseTimedOut(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "57014" || pe.Code == "55P03" || pe.Code == "25P03")
}

// ConnectionLost reports whether err means a connection to a dependency
// could not be made or broke in the middle of a request: PostgreSQL's
// connect errors and closed connections (pgconn), an unexpected EOF, a
// reset or refused connection, a broken pipe, or any net.Error that is
// not a timeout; and a server that is going away or not back yet:
// SQLSTATE class 08 (connection exception) and 57P01–57P03 (shutdown,
// crash of another backend, cannot connect now: a PostgreSQL crash and
// its recovery). Timeouts are context.DeadlineExceeded's (504).
func ConnectionLost(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03") {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && !ne.Timeout()
}

func internalProblem() *Problem {
	return NewProblem(http.StatusInternalServerError, "internal", "internal error")
}

func tooLarge(limit int64) *Problem {
	return NewProblem(http.StatusRequestEntityTooLarge, "body-too-large",
		fmt.Sprintf("the request body exceeds the limit of %d bytes", limit))
}

func orDiscard(logger *slog.Logger) *slog.Logger {
	if logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return logger
}
