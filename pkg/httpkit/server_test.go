package httpkit_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

// signalListener closes closed when the server closes it: the moment
// Shutdown has begun and new connections are refused.
type signalListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func listen(t *testing.T) *signalListener {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return &signalListener{Listener: ln, closed: make(chan struct{})}
}

func (l *signalListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { close(l.closed) })
	return err
}

// blockingHandler answers 200 "done" once release is closed, after
// signalling entered.
func blockingHandler(entered chan<- struct{}, release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "done")
	})
}

type result struct {
	status int
	body   string
	err    error
}

// get sends one request on its own transport and reports the outcome.
func get(ctx context.Context, url string) result {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return result{err: err}
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, body: string(b), err: err}
}

func TestServeGracefulShutdown(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	addr := ln.Addr().String()
	entered, release := make(chan struct{}, 1), make(chan struct{})
	health := httpkit.NewHealth()
	logger, _ := newLogger()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() {
		served <- httpkit.Serve(ctx, httpkit.ServerConfig{}, ln, blockingHandler(entered, release), health, logger)
	}()

	inflight := make(chan result, 1)
	go func() { inflight <- get(t.Context(), "http://"+addr+"/slow") }()
	<-entered // the request is being handled

	cancel()
	<-ln.closed // Shutdown has begun

	if !health.Draining() {
		t.Error("health not draining after shutdown began")
	}
	var d net.Dialer
	if conn, err := d.DialContext(t.Context(), "tcp", addr); err == nil {
		_ = conn.Close()
		t.Fatal("a new connection was accepted after shutdown began")
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v before the in-flight request finished", err)
	default:
	}

	close(release)
	if r := <-inflight; r.err != nil || r.status != http.StatusOK || r.body != "done" {
		t.Fatalf("in-flight request: %+v", r)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestServeShutdownTimeout(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() {
		cfg := httpkit.ServerConfig{ShutdownTimeout: 50 * time.Millisecond}
		served <- httpkit.Serve(ctx, cfg, ln, blockingHandler(entered, release), nil, nil)
	}()
	inflight := make(chan result, 1)
	go func() { inflight <- get(t.Context(), "http://"+ln.Addr().String()+"/stuck") }()
	<-entered

	cancel()
	err := <-served
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Serve = %v, want a shutdown deadline error", err)
	}
	if r := <-inflight; r.err == nil {
		t.Fatalf("the cut-off request succeeded: %+v", r)
	}
}

func TestServeListenError(t *testing.T) {
	t.Parallel()
	ln := listen(t) // the address is taken
	defer ln.Close()
	err := httpkit.Serve(t.Context(), httpkit.ServerConfig{Addr: ln.Addr().String()}, nil, http.NotFoundHandler(), nil, nil)
	if err == nil {
		t.Fatal("Serve on a taken address returned nil")
	}
}

// With no listener, Serve listens on cfg.Addr; a context that has already
// ended gives a clean, immediate shutdown.
func TestServeListensOnAddr(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := httpkit.Serve(ctx, httpkit.ServerConfig{Addr: "127.0.0.1:0"}, nil, http.NotFoundHandler(), httpkit.NewHealth(), nil); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestServerConfigWithDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   httpkit.ServerConfig
		want httpkit.ServerConfig
	}{
		{"zero", httpkit.ServerConfig{Addr: ":8080"}, httpkit.ServerConfig{
			Addr: ":8080", ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second, ShutdownTimeout: 20 * time.Second,
		}},
		{"set values kept", httpkit.ServerConfig{
			ReadHeaderTimeout: 1, ReadTimeout: 2, WriteTimeout: 3, IdleTimeout: 4, DrainDelay: 5, ShutdownTimeout: 6,
		}, httpkit.ServerConfig{
			ReadHeaderTimeout: 1, ReadTimeout: 2, WriteTimeout: 3, IdleTimeout: 4, DrainDelay: 5, ShutdownTimeout: 6,
		}},
		{"negative", httpkit.ServerConfig{ReadTimeout: -1, DrainDelay: -1}, httpkit.ServerConfig{
			ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second, ShutdownTimeout: 20 * time.Second,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.in.WithDefaults(); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
