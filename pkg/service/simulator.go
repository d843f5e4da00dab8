package service

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/telemetry"
)

// Simulator is the process of a stand-in for an external party in the
// sandbox (the payment provider, the SMTP server): not a shopfloor
// service, so no database, no roles and no admin listener, only its own
// HTTP API next to /healthz, /readyz and /metrics.
type Simulator struct {
	Tel *telemetry.Telemetry
}

// StartSimulator sets up a simulator's telemetry (JSON logs to out);
// Close flushes it.
func StartSimulator(ctx context.Context, name string, level slog.Level, out io.Writer) (*Simulator, error) {
	tel, err := telemetry.New(ctx, telemetry.Config{ServiceName: name, LogLevel: level}, out)
	if err != nil {
		return nil, err
	}
	return &Simulator{Tel: tel}, nil
}

// Close flushes the telemetry, even when ctx has ended.
func (s *Simulator) Close(ctx context.Context) { _ = s.Tel.Shutdown(context.WithoutCancel(ctx)) }

// Serve serves api on ln, with /healthz, /readyz and /metrics beside it,
// every answer with X-Content-Type-Options: nosniff, until ctx ends.
func (s *Simulator) Serve(ctx context.Context, ln net.Listener, api http.Handler) error {
	health := httpkit.NewHealth()
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", health.Livez())
	mux.Handle("GET /readyz", health.Readyz())
	mux.Handle("GET /metrics", s.Tel.MetricsHandler())
	mux.Handle("/", api)
	return httpkit.Serve(ctx, httpkit.ServerConfig{}, ln, httpkit.NoSniff()(mux), health, s.Tel.Logger)
}
