package main

import (
	"fmt"
	"time"

	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/identity/internal/idp"
)

// Config is the serve command's configuration, from the environment.
// identity has no database: it embeds service.Telemetry, not Base.
// Its public listener (HTTP_ADDR, default :8090) serves discovery, JWKS,
// authorize, token, userinfo and the sign-in form; the admin one
// (ADMIN_ADDR, :9090, never published: ADR 0023) POST
// /v1/admin/rotate-keys, /metrics and /readyz with details.
type Config struct {
	service.Telemetry
	service.Serve
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
	// SignInFailures wrong passwords a user name may take at once, and
	// one more every SignInFailureEvery; past that its sign-ins are
	// refused (429, Retry-After) until one is allowed again.
	SignInFailures     int           `env:"IDENTITY_SIGNIN_FAILURES" envDefault:"10"`
	SignInFailureEvery time.Duration `env:"IDENTITY_SIGNIN_FAILURE_EVERY" envDefault:"12s"`
}

// Validate reports rules beyond one value's syntax.
func (c Config) Validate() []error {
	var errs []error
	if _, err := idp.CheckIssuer(c.Issuer); err != nil {
		errs = append(errs, err)
	}
	if c.SignInFailures < 1 || c.SignInFailureEvery <= 0 {
		errs = append(errs, fmt.Errorf("IDENTITY_SIGNIN_FAILURES (%d) and IDENTITY_SIGNIN_FAILURE_EVERY (%s): must be positive", c.SignInFailures, c.SignInFailureEvery))
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
