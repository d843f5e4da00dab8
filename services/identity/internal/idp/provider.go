package idp

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/ratelimit"
	"github.com/shopfloor/shopfloor/services/identity/identityapi"
)

// Defaults of Config.
const (
	DefaultAccessTokenTTL  = time.Hour
	DefaultRefreshTokenTTL = 24 * time.Hour
	// KeyMargin is added to the token lifetime to get how long a retired
	// key stays published: clock skew between provider and verifiers, and
	// verifiers that cached the JWKS.
	KeyMargin = 15 * time.Minute
	// MinDemoPasswordLength is the shortest demo password accepted.
	MinDemoPasswordLength = 12
)

// Config configures a Provider.
type Config struct {
	// Issuer is the provider's URL and every token's "iss", e.g.
	// http://127.0.0.1:8090 (CheckIssuer). Required.
	Issuer string
	// DemoPassword is every demo user's password, at least
	// MinDemoPasswordLength characters. Required.
	DemoPassword string
	// SyntheticCustomerPrefix, when set, makes any username that starts
	// with it (e.g. "load-": "load-chaos-r1-c3") a customer who signs in
	// with DemoPassword: load tests and chaos drills need many customers,
	// and their orders must not mix with the demo users'. Empty (the
	// default): only the demo users exist.
	SyntheticCustomerPrefix string
	// ClientSecrets holds one secret per identityapi.ServiceClients entry
	// (CheckClientSecrets). Required.
	ClientSecrets map[string]string
	// WebRedirectURIs registers the web storefront's client
	// (identityapi.ClientWeb, code flow) with these exact redirect URIs;
	// its secret is then required in ClientSecrets. Empty: no web client.
	WebRedirectURIs []string
	// KeyDir keeps the signing keys across restarts (KeyRing); empty:
	// memory only.
	KeyDir string
	// AccessTokenTTL is the lifetime of access and ID tokens. Default
	// DefaultAccessTokenTTL.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the lifetime of a refresh token (each use gives a
	// new one). Default DefaultRefreshTokenTTL.
	RefreshTokenTTL time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock of the key ring and the storage (token "exp" and
	// "iat" come from the library, on the wall clock). Default time.Now.
	Now func() time.Time
	// SignInFailures is how many wrong passwords a user name may take
	// before its sign-ins are refused for a while (signInGuard). Zero:
	// DefaultSignInFailures.
	SignInFailures ratelimit.Limit
	// Registerer, when set, receives the sign-in throttle's metrics.
	Registerer prometheus.Registerer
}

// Provider is the sandbox OpenID Connect provider: zitadel/oidc's op
// package over Storage, plus the sign-in form and key rotation.
type Provider struct {
	// Storage and Keys are exposed for the serve command's timers and for
	// tests.
	Storage *Storage
	Keys    *KeyRing

	op     *op.Provider
	issuer string
	log    *slog.Logger
	guard  *signInGuard
}

// New checks cfg and builds the provider; it loads (or creates) the
// signing keys.
func New(cfg Config) (*Provider, error) {
	if cfg.AccessTokenTTL == 0 {
		cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if cfg.RefreshTokenTTL == 0 {
		cfg.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	insecure, err := CheckIssuer(cfg.Issuer)
	if err != nil {
		return nil, err
	}
	if len(cfg.DemoPassword) < MinDemoPasswordLength {
		return nil, fmt.Errorf("IDENTITY_DEMO_PASSWORD: must be at least %d characters", MinDemoPasswordLength)
	}
	if cfg.AccessTokenTTL < time.Minute {
		return nil, fmt.Errorf("IDENTITY_ACCESS_TOKEN_TTL: must be at least 1m (got %s)", cfg.AccessTokenTTL)
	}
	keys, err := OpenKeyRing(cfg.KeyDir, cfg.AccessTokenTTL+KeyMargin, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("IDENTITY_KEY_DIR: %w", err)
	}
	loginURL := func(id string) string {
		return cfg.Issuer + loginPath + "?" + url.Values{"authRequestID": {id}}.Encode()
	}
	clients, err := newClients(cfg.ClientSecrets, cfg.WebRedirectURIs, loginURL, cfg.AccessTokenTTL)
	if err != nil {
		return nil, err
	}
	storage := newStorage(keys, clients, cfg.DemoPassword, cfg.SyntheticCustomerPrefix, cfg.AccessTokenTTL, cfg.RefreshTokenTTL, cfg.Now)
	var cryptoKey [32]byte // encrypts the codes; they live one minute, so a new key per start is fine
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		return nil, err
	}
	opCfg := &op.Config{
		CryptoKey:             cryptoKey,
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
		SupportedScopes:       []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, oidc.ScopeOfflineAccess},
		SupportedClaims:       append(append([]string(nil), op.DefaultSupportedClaims...), identityapi.ClaimRoles, identityapi.ClaimScope),
	}
	opts := []op.Option{op.WithCORSOptions(nil)} // no browser JavaScript talks to it
	if insecure {
		opts = append(opts, op.WithAllowInsecure())
	}
	o, err := op.NewProvider(opCfg, storage, op.StaticIssuer(cfg.Issuer), opts...)
	if err != nil {
		return nil, fmt.Errorf("IDENTITY_ISSUER: %w", err)
	}
	guard, err := newSignInGuard(cfg.SignInFailures, cfg.Registerer, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("sign-in throttle: %w", err)
	}
	return &Provider{Storage: storage, Keys: keys, op: o, issuer: cfg.Issuer, log: cfg.Logger, guard: guard}, nil
}

// Issuer is the provider's issuer URL.
func (p *Provider) Issuer() string { return p.issuer }

// Routes mounts the public endpoints on mux: discovery, authorize (and its
// callback), token, userinfo, introspection, revocation, end session,
// JWKS, and the sign-in form at /login. It leaves "/" (and /healthz,
// /readyz) to the caller.
func (p *Provider) Routes(mux *http.ServeMux) {
	for _, path := range []string{
		oidc.DiscoveryEndpoint,
		p.op.AuthorizationEndpoint().Relative(),
		p.op.AuthorizationEndpoint().Relative() + "/callback",
		p.op.UserinfoEndpoint().Relative(),
		p.op.IntrospectionEndpoint().Relative(),
		p.op.RevocationEndpoint().Relative(),
		p.op.EndSessionEndpoint().Relative(),
		p.op.KeysEndpoint().Relative(),
	} {
		mux.Handle(path, p.op)
	}
	mux.Handle(p.op.TokenEndpoint().Relative(), withRequestedAudience(p.op))
	l := &login{storage: p.Storage, issuer: p.issuer,
		callback: p.op.AuthorizationEndpoint().Absolute(p.issuer) + "/callback", log: p.log, guard: p.guard}
	mux.HandleFunc("GET "+loginPath, l.show)
	mux.HandleFunc("POST "+loginPath, l.submit)
}

// AdminRoutes mounts POST /v1/admin/rotate-keys (httpkit.AdminPrefix) on
// mux, behind guard (the caller's authorization: an operator's token for
// audience identity). Serve it only on the admin listener (ADR 0023).
func (p *Provider) AdminRoutes(mux *http.ServeMux, guard func(http.Handler) http.Handler) {
	mux.Handle("POST "+httpkit.AdminPrefix+"rotate-keys", guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kid, err := p.Keys.Rotate()
		if err != nil {
			p.log.ErrorContext(r.Context(), "rotate signing keys", "err", err)
			http.Error(w, "key rotation failed; see the provider's log", http.StatusInternalServerError)
			return
		}
		p.log.InfoContext(r.Context(), "signing key rotated", "kid", kid, "reason", "admin")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{"kid": kid, "published": p.publishedKIDs()})
	})))
}

func (p *Provider) publishedKIDs() []string {
	var ids []string
	for _, k := range p.Keys.Published() {
		ids = append(ids, k.ID())
	}
	return ids
}

// Tick is the provider's periodic work: rotate the signing key when it is
// rotation old (or older), drop retired keys past their keep time, prune
// expired auth requests, codes and refresh tokens.
func (p *Provider) Tick(ctx context.Context, rotation time.Duration) error {
	rotated, err := p.Keys.RotateIfOlder(rotation)
	if rotated && err == nil {
		p.log.InfoContext(ctx, "signing key rotated", "kid", p.Keys.Signing().ID(), "reason", "schedule")
	}
	if n := p.Storage.Prune(); n > 0 {
		p.log.DebugContext(ctx, "pruned expired sign-ins and tokens", "records", n)
	}
	return err
}

type audienceKey struct{}

// withRequestedAudience passes the "audience" (Auth0) or "resource" (RFC
// 8707) parameter of a client_credentials request to
// Storage.ClientCredentialsTokenRequest, which the library calls without
// it.
func withRequestedAudience(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.ParseForm() == nil && r.PostForm.Get("grant_type") == string(oidc.GrantTypeClientCredentials) {
			aud := r.PostForm.Get("audience")
			if aud == "" {
				aud = r.PostForm.Get("resource")
			}
			if aud != "" {
				r = r.WithContext(context.WithValue(r.Context(), audienceKey{}, aud))
			}
		}
		next.ServeHTTP(w, r)
	})
}

func requestedAudience(ctx context.Context) string {
	s, _ := ctx.Value(audienceKey{}).(string)
	return s
}

// CheckIssuer accepts an http(s) URL without path, query, fragment or
// user info (the issuer is compared byte for byte by verifiers, so
// "http://x/" is not "http://x"). Plain http is accepted only for a
// loopback address, "localhost", or a single-label host name (a compose
// service name such as "identity"); insecure reports that it is http.
func CheckIssuer(issuer string) (insecure bool, err error) {
	const example = "e.g. http://127.0.0.1:8090 or https://id.example.com"
	u, err := url.Parse(issuer)
	if err != nil || issuer == "" {
		return false, fmt.Errorf("IDENTITY_ISSUER: not a URL (%s)", example)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return false, fmt.Errorf("IDENTITY_ISSUER: must be an http or https URL (%s), got %q", example, issuer)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Path != "" || strings.HasSuffix(issuer, "?") || strings.HasSuffix(issuer, "#") {
		return false, fmt.Errorf("IDENTITY_ISSUER: must be scheme://host[:port] only, without path, trailing slash, query or user info (%s), got %q", example, issuer)
	}
	if u.Scheme == "https" {
		return false, nil
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	if host == "localhost" || (ip != nil && ip.IsLoopback()) || (ip == nil && !strings.Contains(host, ".")) {
		return true, nil
	}
	return false, fmt.Errorf("IDENTITY_ISSUER: http is allowed only for loopback addresses, localhost and single-label host names such as compose service names; use https for %q", host)
}
