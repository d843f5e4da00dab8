package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/web/internal/session"
)

// Config is the serve command's configuration, from the environment. web
// has no database: it embeds service.Telemetry, not Base.
type Config struct {
	// HTTP_ADDR (default :8000) is the storefront, the system's front
	// page; ADMIN_ADDR (:9000) has /metrics and /readyz details.
	service.Telemetry
	service.Serve
	// PublicURL is the storefront as browsers reach it; its
	// /auth/callback is the sign-in's redirect URI, registered at the
	// provider (IDENTITY_WEB_REDIRECT_URIS). https makes cookies Secure.
	PublicURL string `env:"WEB_PUBLIC_URL,required"`
	// SessionSecret seals the session and cart cookies (at least 32
	// characters; no default: make run and init-env.sh generate one).
	SessionSecret string `env:"WEB_SESSION_SECRET,required" secret:"true"`
	// The provider is service.Serve's Auth (AUTH_ISSUER,
	// AUTH_DISCOVERY_URL); AUTH_AUDIENCE defaults to "web", the audience
	// of the tokens issued through the web client.
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
	// ConsoleNATSPassword is the NATS operator's password (ADR 0039):
	// the console lists and redrives stream dead letters, and its drills
	// read consumer state, as the operator. Empty: it connects without
	// credentials, which a broker with authorization refuses (the
	// console then shows no stream dead letters).
	ConsoleNATSPassword string `env:"WEB_CONSOLE_NATS_PASSWORD"`
	// ConsoleKafkaBrokers, when set, are the seed brokers of a sandbox
	// whose streams run on Kafka (STREAM_ENGINE=kafka, ADR 0046): the
	// console lists and inspects the Kafka dead-letter topics instead of
	// JetStream's (a redrive there is not built).
	ConsoleKafkaBrokers []string `env:"WEB_CONSOLE_KAFKA_BROKERS"`
	// BackendTimeout bounds each call to an API.
	BackendTimeout time.Duration `env:"WEB_BACKEND_TIMEOUT" envDefault:"5s"`
}

// Validate reports rules beyond one value's syntax.
func (c Config) Validate() []error {
	var errs []error
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
