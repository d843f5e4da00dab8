package main

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/chaos/target"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/web/internal/console"
	"github.com/shopfloor/shopfloor/services/web/internal/session"
	"github.com/shopfloor/shopfloor/services/web/internal/shop"
)

// edge is the whole serve command: the storefront and console own every
// path of the public listener (their own readable 404 page), behind the
// per-address rate limit; /healthz, /readyz and the reserved 404s of
// /metrics and /v1/admin stay the standard ones. It is ready when the identity provider answers; a
// backend that is down costs the pages that need it, each of which says
// so (503 with a readable page), not the whole shop.
func edge(_ context.Context, app *service.App, cfg *Config) error {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: app.Tel.HTTPTransport(nil)}
	publicURL := strings.TrimSuffix(cfg.PublicURL, "/")
	flow, err := auth.NewCodeFlow(auth.ClientConfig{Issuer: cfg.Auth.Issuer, DiscoveryURL: cfg.Auth.DiscoveryURL, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret},
		publicURL+"/auth/callback", []string{"profile", "email", "offline_access"}, hc)
	if err != nil {
		return err
	}
	sealer, err := session.New(cfg.SessionSecret, strings.HasPrefix(publicURL, "https://"), nil)
	if err != nil {
		return err
	}
	cons, closeConsole := newConsole(*cfg, app.Log)
	app.Defer(closeConsole)
	srv, err := shop.New(shop.Config{
		Backends: &shop.Backends{Catalog: cfg.CatalogURL, Orders: cfg.OrdersURL, Payments: cfg.PaymentsURL,
			Notifications: cfg.NotificationsURL, Search: cfg.SearchURL, Mail: cfg.MailURL, TraceURL: cfg.TraceURL,
			HC: &http.Client{Timeout: cfg.BackendTimeout, Transport: app.Tel.HTTPTransport(nil)}},
		Flow: flow, Verifier: app.Authz, Sealer: sealer, Currency: cfg.Currency, PublicURL: publicURL, Log: app.Log,
		Console: cons,
	})
	if err != nil {
		return err
	}
	// Pages are limited per client address (RATE_LIMIT_ANONYMOUS: browsers
	// carry a session, not a bearer token); the probes are not.
	app.LimitPublic("web", srv.Routes)
	return nil
}

// newConsole is the plumbing console of the sandbox cfg names, or nil,
// and what closes its connections.
func newConsole(cfg Config, log *slog.Logger) (*console.Console, func()) {
	hc := &http.Client{Timeout: 3 * time.Second}
	var sys *target.System
	switch {
	case cfg.ConsoleCompose:
		e := target.ComposeEndpoints()
		sys = &target.System{Endpoints: e, HTTP: hc, Mail: &target.Mailpit{URL: e.Mail, HTTP: hc}, NATSPassword: cfg.ConsoleNATSPassword}
	case cfg.ConsolePortBase != 0:
		e := target.LocalEndpoints(cfg.ConsolePortBase)
		if cfg.ConsoleRunDir != "" {
			e.DropAbsentInstances(cfg.ConsoleRunDir)
		}
		sys = &target.System{Endpoints: e, HTTP: hc, Mail: &target.SMTPSink{URL: e.Mail, HTTP: hc}, NATSPassword: cfg.ConsoleNATSPassword}
	default:
		return nil, func() {}
	}
	e := sys.Endpoints
	if cfg.ConsoleCtl != "" {
		sys.Procs = &target.Ctl{Script: cfg.ConsoleCtl, Env: []string{
			"SHOPFLOOR_PORT_BASE=" + strconv.Itoa(cfg.ConsolePortBase), "SHOPFLOOR_RUN_DIR=" + cfg.ConsoleRunDir}}
	}
	c := console.New(sys)
	// Drills sign in the sandbox's synthetic customers with its demo
	// password (identity.env of the run directory), and their checkouts
	// may wait on a faulty system: a patient client of their own.
	if cfg.ConsoleRunDir != "" && sys.Procs != nil {
		if id, err := target.ReadIdentityEnv(filepath.Join(cfg.ConsoleRunDir, "identity.env")); err == nil {
			dhc := &http.Client{Timeout: 10 * time.Second}
			c.EnableDrills(&target.System{Endpoints: e, HTTP: dhc, Mail: &target.SMTPSink{URL: e.Mail, HTTP: dhc}, Procs: sys.Procs, Identity: id,
				NATSPassword: cfg.ConsoleNATSPassword})
		}
	}
	// Stream dead letters: on Kafka, its dead-letter topics; on NATS,
	// straight to NATS, not through its Toxiproxy link (a cut link must
	// not blind the console), connecting in the background and
	// reconnecting.
	if len(cfg.ConsoleKafkaBrokers) > 0 {
		c.EnableKafkaStreamDLQs(cfg.ConsoleKafkaBrokers)
		return c, func() {}
	}
	nc, err := sys.NATSConfig().Connect("web console", nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	if err != nil {
		log.Warn("console: no NATS connection; stream dead letters are not shown", "err", err)
		return c, func() {}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		log.Warn("console: no JetStream; stream dead letters are not shown", "err", err)
		return c, func() {}
	}
	c.EnableStreamDLQs(js)
	return c, nc.Close
}
