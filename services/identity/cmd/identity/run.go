package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/config"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/identity/identityapi"
	"github.com/shopfloor/shopfloor/services/identity/internal/idp"
)

const usage = "usage: identity token [-issuer URL] [-client ID] [-audience AUD] [USER]"

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
		KeyDir: cfg.KeyDir, AccessTokenTTL: cfg.AccessTokenTTL, RefreshTokenTTL: cfg.RefreshTokenTTL, Logger: log})
	if err != nil {
		return err
	}
	log.WarnContext(ctx, "this is the sandbox identity provider: demo users share one password and nothing is rate limited; "+
		"point services at a real provider (Keycloak, Auth0, …) outside the sandbox", "issuer", cfg.Issuer)
	if cfg.KeyDir == "" {
		log.WarnContext(ctx, "IDENTITY_KEY_DIR is empty: signing keys live in memory, a restart invalidates every token")
	}
	p.Routes(app.Muxes.Public)
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

// tokenConfig is what the token command reads from the environment.
type tokenConfig struct {
	Issuer        string `env:"IDENTITY_ISSUER,required"`
	DemoPassword  string `env:"IDENTITY_DEMO_PASSWORD" secret:"true"`
	ClientSecrets string `env:"IDENTITY_CLIENT_SECRETS" secret:"true"`
}

// tokenCommand prints an access token, for curl, k6 and drills:
//
//	identity token ada                          # a person (demo password)
//	identity token -client orders -audience catalog   # a service
func tokenCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("identity token", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	issuer := fs.String("issuer", "", "issuer URL (default IDENTITY_ISSUER)")
	clientID := fs.String("client", identityapi.ClientCLI, "client id: "+identityapi.ClientCLI+" for a person, or a service client")
	audience := fs.String("audience", "", "service tokens: the audience to ask for (default: all the client may call)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("token: %w (%s)", err, usage)
	}
	env := getenv
	if *issuer != "" {
		env = func(k string) string {
			if k == "IDENTITY_ISSUER" {
				return *issuer
			}
			return getenv(k)
		}
	}
	cfg, err := config.Load[tokenConfig](env)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	var tok identityapi.Token
	if *clientID == identityapi.ClientCLI {
		if fs.NArg() != 1 {
			return fmt.Errorf("token: name one demo user (%s)", usage)
		}
		if cfg.DemoPassword == "" {
			return errors.New("IDENTITY_DEMO_PASSWORD: required to sign a user in")
		}
		tok, err = identityapi.UserToken(ctx, hc, cfg.Issuer, *clientID, fs.Arg(0), cfg.DemoPassword)
	} else {
		secrets, perr := idp.ParseClientSecrets(cfg.ClientSecrets)
		if perr != nil {
			return perr
		}
		secret, ok := secrets[*clientID]
		if !ok {
			return fmt.Errorf("IDENTITY_CLIENT_SECRETS: no secret for client %q", *clientID)
		}
		tok, err = identityapi.ServiceToken(ctx, hc, cfg.Issuer, *clientID, secret, *audience)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok.AccessToken)
	return err
}
