package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/chaos/target"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/config"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/identity/identityapi"
	"github.com/shopfloor/shopfloor/services/web/internal/console"
	"github.com/shopfloor/shopfloor/services/web/internal/session"
	"github.com/shopfloor/shopfloor/services/web/internal/shop"
)

// Config is the serve command's configuration, from the environment. web
// has no database: it embeds service.Telemetry, not Base.
type Config struct {
	service.Telemetry
	service.HTTP
	// HTTPAddr is the storefront (the system's front page).
	HTTPAddr string `env:"HTTP_ADDR" envDefault:":8000"`
	// AdminAddr is the admin listener: /metrics and /readyz details. Never publish it (ADR 0023).
	AdminAddr string `env:"ADMIN_ADDR" envDefault:":9000"`
	// PublicURL is the storefront as browsers reach it; its
	// /auth/callback is the sign-in's redirect URI, registered at the
	// provider (IDENTITY_WEB_REDIRECT_URIS). https makes cookies Secure.
	PublicURL string `env:"WEB_PUBLIC_URL,required"`
	// SessionSecret seals the session and cart cookies (at least 32
	// characters; no default: make run and init-env.sh generate one).
	SessionSecret string `env:"WEB_SESSION_SECRET,required" secret:"true"`
	// Auth: the provider (AUTH_ISSUER, AUTH_DISCOVERY_URL); AUTH_AUDIENCE
	// defaults to "web", the audience of the tokens issued through the
	// web client.
	Auth auth.Config
	// ClientID and ClientSecret are the web client at the provider.
	ClientID     string `env:"AUTH_CLIENT_ID" envDefault:"web"`
	ClientSecret string `env:"AUTH_CLIENT_SECRET,required" secret:"true"`
	// The public APIs. CatalogURL is the CDN in front of catalog.
	CatalogURL       string `env:"CATALOG_URL,required"`
	OrdersURL        string `env:"ORDERS_URL,required"`
	PaymentsURL      string `env:"PAYMENTS_URL,required"`
	NotificationsURL string `env:"NOTIFICATIONS_URL,required"`
	SearchURL        string `env:"SEARCH_URL,required"`
	// MailURL is the sandbox SMTP sink's HTTP API (smtp-sink): set, the
	// order page links each e-mail to its text.
	MailURL string `env:"MAIL_URL"`
	// TraceURL, when set, links each trace id on the order page to the
	// trace viewer: "{trace_id}" in it is replaced (compose's
	// observability profile: Grafana's Explore on Tempo).
	TraceURL string `env:"WEB_TRACE_URL"`
	// Currency of the shop's prices and orders.
	Currency string `env:"WEB_CURRENCY" envDefault:"EUR"`
	// ConsolePortBase, when set, turns on the operators' plumbing console
	// for the make-run sandbox started with SHOPFLOOR_PORT_BASE=this
	// (its processes' admin listeners, Toxiproxy, the provider
	// simulator: chaos/target.LocalEndpoints). Never set it outside a
	// sandbox: the console cuts links and stops processes.
	ConsolePortBase int `env:"WEB_CONSOLE_PORT_BASE"`
	// ConsoleCompose turns the console on for the compose sandbox the web
	// container runs in (chaos/target.ComposeEndpoints: service names on
	// the compose network). It cannot stop containers (no container
	// engine socket in the web container) or run drills.
	ConsoleCompose bool `env:"WEB_CONSOLE_COMPOSE"`
	// ConsoleCtl and ConsoleRunDir let the console stop and start
	// processes (deploy/local/ctl.sh of that run directory); empty: it
	// cannot.
	ConsoleCtl    string `env:"WEB_CONSOLE_CTL"`
	ConsoleRunDir string `env:"WEB_CONSOLE_RUN_DIR"`
	// BackendTimeout bounds each call to an API.
	BackendTimeout time.Duration `env:"WEB_BACKEND_TIMEOUT" envDefault:"5s"`
}

// Validate reports rules beyond one value's syntax.
func (c Config) Validate() []error {
	errs := c.Auth.Validate()
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		errs = append(errs, fmt.Errorf("WEB_PUBLIC_URL: must be an http(s) origin such as http://127.0.0.1:8000 (got %q)", c.PublicURL))
	}
	if len(c.SessionSecret) < session.MinSecretLength {
		errs = append(errs, fmt.Errorf("WEB_SESSION_SECRET: must be at least %d characters", session.MinSecretLength))
	}
	for name, v := range map[string]string{"CATALOG_URL": c.CatalogURL, "ORDERS_URL": c.OrdersURL, "PAYMENTS_URL": c.PaymentsURL,
		"NOTIFICATIONS_URL": c.NotificationsURL, "SEARCH_URL": c.SearchURL, "MAIL_URL": c.MailURL} {
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s: must be an http(s) URL (got %q)", name, v))
		}
	}
	if c.TraceURL != "" {
		if u, err := url.Parse(strings.ReplaceAll(c.TraceURL, "{trace_id}", "x")); err != nil || (u.Scheme != "http" && u.Scheme != "https") ||
			u.Host == "" || !strings.Contains(c.TraceURL, "{trace_id}") {
			errs = append(errs, fmt.Errorf("WEB_TRACE_URL: must be an http(s) URL with {trace_id} in it (got %q)", c.TraceURL))
		}
	}
	if c.ConsolePortBase < 0 || c.ConsolePortBase > 60000 {
		errs = append(errs, fmt.Errorf("WEB_CONSOLE_PORT_BASE: must be a port base such as 8000 (got %d)", c.ConsolePortBase))
	}
	if c.ConsoleCompose && c.ConsolePortBase != 0 {
		errs = append(errs, errors.New("WEB_CONSOLE_COMPOSE and WEB_CONSOLE_PORT_BASE: set one (the compose sandbox, or a make-run one)"))
	}
	if c.ConsoleCtl != "" && c.ConsoleRunDir == "" {
		errs = append(errs, errors.New("WEB_CONSOLE_RUN_DIR: required with WEB_CONSOLE_CTL (the run whose processes it controls)"))
	}
	if c.BackendTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("WEB_BACKEND_TIMEOUT: must be at least 100ms (got %s)", c.BackendTimeout))
	}
	return errs
}

const usage = `usage: web [serve]`

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 1 && args[1] != "serve" {
		return fmt.Errorf("unknown command %q (%s)", args[1], usage)
	}
	cfg, err := config.Load[Config](getenv)
	if err != nil {
		return err
	}
	rt, err := service.Start(ctx, "web", service.Base{Telemetry: cfg.Telemetry}, stdout)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	lns, err := service.Listen(cfg.HTTPAddr, cfg.AdminAddr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, rt, lns)
}

// serve runs the storefront. It is ready when the identity provider
// answers; a backend that is down costs the pages that need it, each of
// which says so (503 with a readable page), not the whole shop.
func serve(ctx context.Context, cfg Config, rt *service.Runtime, lns service.Listeners) error {
	health := httpkit.NewHealth()
	mux := rt.NewMuxes(health)
	if cfg.Auth.Audience == "" {
		cfg.Auth.Audience = identityapi.ClientWeb
	}
	verifier, err := rt.APIVerifier(cfg.Auth, true, health)
	if err != nil {
		return errors.Join(err, lns.Close())
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: rt.Tel.HTTPTransport(nil)}
	publicURL := strings.TrimSuffix(cfg.PublicURL, "/")
	flow, err := auth.NewCodeFlow(auth.ClientConfig{Issuer: cfg.Auth.Issuer, DiscoveryURL: cfg.Auth.DiscoveryURL, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret},
		publicURL+"/auth/callback", []string{"profile", "email", "offline_access"}, hc)
	if err != nil {
		return errors.Join(err, lns.Close())
	}
	sealer, err := session.New(cfg.SessionSecret, strings.HasPrefix(publicURL, "https://"), nil)
	if err != nil {
		return errors.Join(err, lns.Close())
	}
	cons, closeConsole := newConsole(cfg, rt.Log)
	defer closeConsole()
	srv, err := shop.New(shop.Config{
		Backends: &shop.Backends{Catalog: cfg.CatalogURL, Orders: cfg.OrdersURL, Payments: cfg.PaymentsURL,
			Notifications: cfg.NotificationsURL, Search: cfg.SearchURL, Mail: cfg.MailURL, TraceURL: cfg.TraceURL,
			HC: &http.Client{Timeout: cfg.BackendTimeout, Transport: rt.Tel.HTTPTransport(nil)}},
		Flow: flow, Verifier: verifier, Sealer: sealer, Currency: cfg.Currency, PublicURL: publicURL, Log: rt.Log,
		Console: cons,
	})
	if err != nil {
		return errors.Join(err, lns.Close())
	}
	// The storefront owns every path (its own readable 404 page); the
	// public mux keeps /healthz, /readyz and the reserved 404s of
	// /metrics and /v1/admin.
	site := http.NewServeMux()
	srv.Routes(site)
	for _, p := range []string{"GET /healthz", "GET /readyz", "GET /metrics", "GET /metrics/", "GET /v1/admin", "GET /v1/admin/"} {
		site.Handle(p, mux.Public)
	}
	return rt.ServeMuxes(ctx, cfg.HTTP, lns, service.Muxes{Public: site, Admin: mux.Admin}, health)
}

// newConsole is the plumbing console of the sandbox cfg names, or nil,
// and what closes its connections.
func newConsole(cfg Config, log *slog.Logger) (*console.Console, func()) {
	hc := &http.Client{Timeout: 3 * time.Second}
	var sys *target.System
	switch {
	case cfg.ConsoleCompose:
		e := target.ComposeEndpoints()
		sys = &target.System{Endpoints: e, HTTP: hc, Mail: &target.Mailpit{URL: e.Mail, HTTP: hc}}
	case cfg.ConsolePortBase != 0:
		e := target.LocalEndpoints(cfg.ConsolePortBase)
		if cfg.ConsoleRunDir != "" {
			e.DropAbsentInstances(cfg.ConsoleRunDir)
		}
		sys = &target.System{Endpoints: e, HTTP: hc, Mail: &target.SMTPSink{URL: e.Mail, HTTP: hc}}
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
			c.EnableDrills(&target.System{Endpoints: e, HTTP: dhc, Mail: &target.SMTPSink{URL: e.Mail, HTTP: dhc}, Procs: sys.Procs, Identity: id})
		}
	}
	// Stream dead letters: straight to NATS, not through its Toxiproxy
	// link (a cut link must not blind the console); it connects in the
	// background and keeps reconnecting.
	nc, err := nats.Connect(e.NATS, nats.Name("web console"), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
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
