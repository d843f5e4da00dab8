package httpkit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ServerConfig holds the HTTP server's address and timeouts. A zero field
// means its default (see WithDefaults); there is deliberately no way to
// turn a timeout off.
type ServerConfig struct {
	// Addr is the TCP address to listen on, such as ":8080". It is used
	// only when Serve is given no listener.
	Addr string
	// ReadHeaderTimeout bounds reading the request line and headers
	// (default 5s; guards against slowloris).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading the whole request (default 15s).
	ReadTimeout time.Duration
	// WriteTimeout bounds the time from the end of the request headers to
	// the end of the response (default 30s). Handlers that may take longer
	// should get a context deadline shorter than this.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a keep-alive connection waits for the
	// next request (default 120s).
	IdleTimeout time.Duration
	// DrainDelay is how long the server keeps serving after readiness
	// fails, before it stops accepting connections, so that load
	// balancers see /readyz fail and stop routing to it (default 0, right
	// for local runs; set it to a few probe intervals behind a load
	// balancer).
	DrainDelay time.Duration
	// ShutdownTimeout bounds how long in-flight requests get to finish
	// after the listener is closed (default 20s). Requests still running
	// then are cut off and Serve returns an error.
	ShutdownTimeout time.Duration
}

// Default server timeouts; see ServerConfig.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 15 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultShutdownTimeout   = 20 * time.Second
)

// WithDefaults returns c with every zero or negative timeout replaced by
// its default. DrainDelay stays 0 unless set (negative becomes 0).
func (c ServerConfig) WithDefaults() ServerConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&c.ReadTimeout, DefaultReadTimeout)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.ShutdownTimeout, DefaultShutdownTimeout)
	if c.DrainDelay < 0 {
		c.DrainDelay = 0
	}
	return c
}

// Serve serves h until ctx ends, then shuts down gracefully:
//
//  1. health.SetDraining(), so /readyz answers 503 (health may be nil);
//  2. keep serving for cfg.DrainDelay, so load balancers notice;
//  3. close the listener (new connections are refused) and wait up to
//     cfg.ShutdownTimeout for in-flight requests to finish, closing idle
//     keep-alive connections.
//
// It listens on cfg.Addr, or serves ln when ln is not nil; either way the
// listener is closed when Serve returns. cfg.WithDefaults is applied.
// Request contexts carry ctx's values but are not cancelled when ctx
// ends: cancelling ctx is the signal to drain, not to abort requests.
//
// Serve returns nil after a clean shutdown, and an error when listening
// fails, the server fails, or requests were still running when
// ShutdownTimeout ran out (they are then cut off). A nil logger discards
// the log lines.
func Serve(ctx context.Context, cfg ServerConfig, ln net.Listener, h http.Handler, health *Health, logger *slog.Logger) error {
	cfg = cfg.WithDefaults()
	logger = orDiscard(logger)
	base := context.WithoutCancel(ctx)
	if ln == nil {
		var lc net.ListenConfig
		var err error
		ln, err = lc.Listen(base, "tcp", cfg.Addr)
		if err != nil {
			return fmt.Errorf("http listen %s: %w", cfg.Addr, err)
		}
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("http serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	if health != nil {
		health.SetDraining()
	}
	logger.LogAttrs(base, slog.LevelInfo, "http draining", slog.Duration("drain_delay", cfg.DrainDelay))
	if cfg.DrainDelay > 0 {
		t := time.NewTimer(cfg.DrainDelay)
		select {
		case <-t.C:
		case err := <-served:
			t.Stop()
			return fmt.Errorf("http serve %s: %w", ln.Addr(), err)
		}
	}

	sctx, cancel := context.WithTimeout(base, cfg.ShutdownTimeout)
	defer cancel()
	logger.LogAttrs(base, slog.LevelInfo, "http shutting down", slog.Duration("timeout", cfg.ShutdownTimeout))
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close() // cut off what is left; the error below says why
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return fmt.Errorf("http shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http serve %s: %w", ln.Addr(), err)
	}
	logger.LogAttrs(base, slog.LevelInfo, "http stopped")
	return nil
}
