package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/shopfloor/shopfloor/pkg/config"
	"github.com/shopfloor/shopfloor/pkg/lifecycle"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/notifications/smtpsink"
)

// smtpSink is `notifications smtp-sink`: the SMTP sink as its own process
// (the mail relay of tests and drills), SMTP on SMTP_SINK_ADDR, its HTTP
// API (messages, stats, down switch), probes and metrics on
// SMTP_SINK_HTTP_ADDR. SMTP_SINK_DOWN=true starts it refusing mail.
func smtpSink(ctx context.Context, inv *service.Invocation) error {
	type sinkConfig struct {
		Addr     string     `env:"SMTP_SINK_ADDR" envDefault:":1025"`
		HTTPAddr string     `env:"SMTP_SINK_HTTP_ADDR" envDefault:":8025"`
		Down     bool       `env:"SMTP_SINK_DOWN" envDefault:"false"`
		LogLevel slog.Level `env:"LOG_LEVEL" envDefault:"INFO"`
	}
	cfg, err := config.Load[sinkConfig](inv.Getenv)
	if err != nil {
		return err
	}
	sim, err := service.StartSimulator(ctx, "smtp-sink", cfg.LogLevel, inv.Stdout)
	if err != nil {
		return err
	}
	defer sim.Close(ctx)
	sink, err := smtpsink.New(smtpsink.Config{Logger: sim.Tel.Logger, Registerer: sim.Tel.Registry})
	if err != nil {
		return err
	}
	sink.SetDown(cfg.Down)
	smtpLn, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on SMTP_SINK_ADDR %s: %w", cfg.Addr, err)
	}
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		_ = smtpLn.Close()
		return fmt.Errorf("listen on SMTP_SINK_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	g := lifecycle.NewGroup(sim.Tel.Logger)
	g.Add("smtp", func(ctx context.Context) error {
		stop := context.AfterFunc(ctx, func() { _ = sink.Close() })
		defer stop()
		return sink.Serve(smtpLn)
	})
	g.Add("http", func(ctx context.Context) error { return sim.Serve(ctx, httpLn, sink.Handler()) })
	err = g.Run(ctx)
	return errors.Join(err, sink.Close())
}
