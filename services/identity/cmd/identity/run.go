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
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/lifecycle"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/identity/identityapi"
	"github.com/shopfloor/shopfloor/services/identity/internal/idp"
)

// Config is the serve command's configuration, from the environment.
// identity has no database: it embeds service.Telemetry, not Base.
type Config struct {
	service.Telemetry
	service.HTTP
	// HTTPAddr is the public listener: discovery, JWKS, authorize, token,
	// userinfo, the sign-in form, /healthz and /readyz.
	HTTPAddr string `env:"HTTP_ADDR" envDefault:":8090"`
	// AdminAddr is the admin listener, which is never published (ADR
	// 0023): POST /v1/admin/rotate-keys, /metrics, /readyz with details.
	AdminAddr string `env:"ADMIN_ADDR" envDefault:":9090"`
	// Issuer is the provider's URL, every token's "iss" (idp.CheckIssuer).
	Issuer string `env:"IDENTITY_ISSUER,required"`
	// DemoPassword is every demo user's password (no default on purpose).
	DemoPassword string `env:"IDENTITY_DEMO_PASSWORD,required" secret:"true"`
	// SyntheticCustomerPrefix makes any username with this prefix a
	// customer with the demo password, for load tests and drills
	// (make run sets "load-"; empty: demo users only).
	SyntheticCustomerPrefix string `env:"IDENTITY_SYNTHETIC_CUSTOMER_PREFIX"`
	// ClientSecrets is "orders=<secret>,payments=<secret>,…": one secret
	// per service client, each at least 16 characters.
	ClientSecrets string `env:"IDENTITY_CLIENT_SECRETS,required" secret:"true"`
	// WebRedirectURIs are the web storefront's exact callback URLs
	// ("http://127.0.0.1:8000/auth/callback"); set, they register the
	// "web" client, whose secret then goes into IDENTITY_CLIENT_SECRETS.
	WebRedirectURIs []string `env:"IDENTITY_WEB_REDIRECT_URIS"`
	// KeyDir keeps the signing keys across restarts (PEM, 0600); empty
	// keeps them in memory (a restart then invalidates every token).
	KeyDir string `env:"IDENTITY_KEY_DIR"`
	// KeyRotation is the age at which the signing key is replaced.
	KeyRotation time.Duration `env:"IDENTITY_KEY_ROTATION" envDefault:"24h"`
	// AccessTokenTTL is the lifetime of access and ID tokens; a retired
	// key stays published this long plus idp.KeyMargin.
	AccessTokenTTL time.Duration `env:"IDENTITY_ACCESS_TOKEN_TTL" envDefault:"1h"`
	// RefreshTokenTTL is the lifetime of a refresh token.
	RefreshTokenTTL time.Duration `env:"IDENTITY_REFRESH_TOKEN_TTL" envDefault:"24h"`
}

// Validate reports rules beyond one value's syntax.
func (c Config) Validate() []error {
	var errs []error
	if _, err := idp.CheckIssuer(c.Issuer); err != nil {
		errs = append(errs, err)
	}
	if len(c.DemoPassword) < idp.MinDemoPasswordLength {
		errs = append(errs, fmt.Errorf("IDENTITY_DEMO_PASSWORD: must be at least %d characters", idp.MinDemoPasswordLength))
	}
	if secrets, err := idp.ParseClientSecrets(c.ClientSecrets); err != nil {
		errs = append(errs, err)
	} else if err := idp.CheckClientSecrets(secrets, c.WebRedirectURIs); err != nil {
		errs = append(errs, err)
	}
	if c.KeyRotation < time.Minute {
		errs = append(errs, fmt.Errorf("IDENTITY_KEY_ROTATION: must be at least 1m (got %s)", c.KeyRotation))
	}
	if c.AccessTokenTTL < time.Minute || c.AccessTokenTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("IDENTITY_ACCESS_TOKEN_TTL: must be 1m..24h (got %s)", c.AccessTokenTTL))
	}
	if c.RefreshTokenTTL < c.AccessTokenTTL {
		errs = append(errs, fmt.Errorf("IDENTITY_REFRESH_TOKEN_TTL: must be at least IDENTITY_ACCESS_TOKEN_TTL (got %s)", c.RefreshTokenTTL))
	}
	return errs
}

const usage = `usage: identity [serve | token [-issuer URL] [-client ID] [-audience AUD] [USER]]`

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 1 {
		cmd = args[1]
	}
	switch cmd {
	case "serve":
	case "token":
		return tokenCommand(ctx, args[min(2, len(args)):], getenv, stdout)
	default:
		return fmt.Errorf("unknown command %q (%s)", cmd, usage)
	}
	cfg, err := config.Load[Config](getenv)
	if err != nil {
		return err
	}
	rt, err := service.Start(ctx, "identity", service.Base{Telemetry: cfg.Telemetry}, stdout)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	// zitadel/oidc logs through the default logger (its documented way to
	// configure it): make that the service's JSON logger.
	slog.SetDefault(rt.Log)
	lns, err := service.Listen(cfg.HTTPAddr, cfg.AdminAddr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, rt, lns)
}

// serve runs the provider on the public and admin listeners, and rotates
// keys and prunes expired records on a timer.
func serve(ctx context.Context, cfg Config, rt *service.Runtime, lns service.Listeners) error {
	log := rt.Log
	secrets, err := idp.ParseClientSecrets(cfg.ClientSecrets)
	if err != nil {
		_ = lns.Close()
		return err
	}
	p, err := idp.New(idp.Config{Issuer: cfg.Issuer, DemoPassword: cfg.DemoPassword, SyntheticCustomerPrefix: cfg.SyntheticCustomerPrefix, ClientSecrets: secrets, WebRedirectURIs: cfg.WebRedirectURIs,
		KeyDir: cfg.KeyDir, AccessTokenTTL: cfg.AccessTokenTTL, RefreshTokenTTL: cfg.RefreshTokenTTL, Logger: log})
	if err != nil {
		_ = lns.Close()
		return err
	}
	log.WarnContext(ctx, "this is the sandbox identity provider: demo users share one password and nothing is rate limited; "+
		"point services at a real provider (Keycloak, Auth0, …) outside the sandbox", "issuer", cfg.Issuer)
	if cfg.KeyDir == "" {
		log.WarnContext(ctx, "IDENTITY_KEY_DIR is empty: signing keys live in memory, a restart invalidates every token")
	}

	health := httpkit.NewHealth()
	muxes := rt.NewMuxes(health)
	p.Routes(muxes.Public)
	// Its own operator API wants an operator's token for audience
	// identity, verified like every service verifies its tokens (pkg/auth:
	// discovery and JWKS from this provider's own issuer URL, on first use).
	// It reaches itself on its public listener (the issuer URL may name a
	// proxy in front of it): its address, or loopback when it listens on
	// every address.
	host, port, err := net.SplitHostPort(lns.Public.Addr().String())
	if err != nil {
		_ = lns.Close()
		return err
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	admin, err := auth.NewVerifier(auth.Config{Issuer: cfg.Issuer, DiscoveryURL: "http://" + net.JoinHostPort(host, port), Leeway: 30 * time.Second},
		identityapi.AudienceIdentity, auth.Options{Registerer: rt.Tel.Registry})
	if err != nil {
		_ = lns.Close()
		return err
	}
	p.AdminRoutes(muxes.Admin, func(h http.Handler) http.Handler { return admin.Handle(auth.AnyOf(auth.RoleOperator), h) })

	g := lifecycle.NewGroup(log)
	g.Add("keys", func(ctx context.Context) error {
		tick := min(time.Minute, cfg.KeyRotation/4)
		return service.Every(ctx, tick, func(ctx context.Context) error { return p.Tick(ctx, cfg.KeyRotation) }, log)
	})
	g.Add("http", func(ctx context.Context) error {
		return rt.ServeMuxes(ctx, cfg.HTTP, lns, muxes, health)
	})
	return g.Run(ctx)
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
