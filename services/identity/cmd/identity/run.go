package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/ratelimit"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/identity/identityapi"
	"github.com/shopfloor/shopfloor/services/identity/internal/idp"
)

// edge is the whole serve command: the provider's routes on the public
// listener, its operator API on the admin one, and key rotation.
func edge(ctx context.Context, app *service.App, cfg *Config) error {
	log := app.Log
	// zitadel/oidc logs through the default logger (its documented way to
	// configure it): make that the service's JSON logger.
	slog.SetDefault(log)
	secrets, err := idp.ParseClientSecrets(cfg.ClientSecrets)
	if err != nil {
		return err
	}
	p, err := idp.New(idp.Config{Issuer: cfg.Issuer, DemoPassword: cfg.DemoPassword, SyntheticCustomerPrefix: cfg.SyntheticCustomerPrefix, ClientSecrets: secrets, WebRedirectURIs: cfg.WebRedirectURIs,
		KeyDir: cfg.KeyDir, AccessTokenTTL: cfg.AccessTokenTTL, RefreshTokenTTL: cfg.RefreshTokenTTL, Logger: log,
		SignInFailures: ratelimit.Limit{Rate: 1 / cfg.SignInFailureEvery.Seconds(), Burst: cfg.SignInFailures}, Registerer: app.Tel.Registry})
	if err != nil {
		return err
	}
	log.WarnContext(ctx, "this is the sandbox identity provider: demo users share one password; "+
		"point services at a real provider (Keycloak, Auth0, …) outside the sandbox", "issuer", cfg.Issuer)
	if cfg.KeyDir == "" {
		log.WarnContext(ctx, "IDENTITY_KEY_DIR is empty: signing keys live in memory, a restart invalidates every token")
	}
	// Every endpoint is limited per client address (RATE_LIMIT_ANONYMOUS:
	// a browser signing in carries no token), and each user name's wrong
	// passwords besides (IDENTITY_SIGNIN_FAILURES).
	app.LimitPublic("identity", p.Routes)
	admin, err := selfVerifier(app, cfg)
	if err != nil {
		return err
	}
	p.AdminRoutes(app.Muxes.Admin, func(h http.Handler) http.Handler { return admin.Handle(auth.AnyOf(auth.RoleOperator), h) })
	app.Every("keys", min(time.Minute, cfg.KeyRotation/4), func(ctx context.Context) error { return p.Tick(ctx, cfg.KeyRotation) })
	return nil
}

// selfVerifier checks the tokens of identity's own operator API: an
// operator's token for audience identity, verified like every service
// verifies its tokens (pkg/auth: discovery and JWKS from this provider's
// own issuer URL, on first use). It reaches itself on its public listener
// (the issuer URL may name a proxy in front of it): its address, or
// loopback when it listens on every address.
func selfVerifier(app *service.App, cfg *Config) (*auth.Verifier, error) {
	host, port, err := net.SplitHostPort(app.Listeners.Public.Addr().String())
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return auth.NewVerifier(auth.Config{Issuer: cfg.Issuer, DiscoveryURL: "http://" + net.JoinHostPort(host, port), Leeway: 30 * time.Second},
		identityapi.AudienceIdentity, auth.Options{Registerer: app.Tel.Registry})
}
