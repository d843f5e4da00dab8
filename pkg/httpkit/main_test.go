package httpkit_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newServer starts h on an httptest server that is closed with the test.
func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

// reply is a response whose body has been read and closed.
type reply struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

// do sends a request to ts and returns the reply.
func do(t *testing.T, ts *httptest.Server, method, path, contentType string, body io.Reader) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, ts.URL+path, body)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return reply{StatusCode: resp.StatusCode, Header: resp.Header, Body: b}
}

// parseProblem checks that a response is a problem document and decodes it.
func parseProblem(t *testing.T, header http.Header, body []byte) httpkit.Problem {
	t.Helper()
	if ct := header.Get("Content-Type"); ct != httpkit.ContentTypeProblem {
		t.Fatalf("Content-Type = %q, want %q; body %s", ct, httpkit.ContentTypeProblem, body)
	}
	var p httpkit.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem body %s: %v", body, err)
	}
	return p
}

// logBuffer collects log output; safe for use from server goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	var b logBuffer
	return slog.New(slog.NewJSONHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}
