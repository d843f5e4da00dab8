package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

// Roles the shopfloor services know. A provider may issue others; they
// are carried in Principal.Roles and ignored by the built-in policies.
const (
	// RoleCustomer may place orders and read and cancel their own.
	RoleCustomer = "customer"
	// RoleOperator may read every customer's data and use admin routes.
	RoleOperator = "operator"
	// RoleService is a workload calling with a client-credentials token.
	RoleService = "service"
)

// Config says which provider a service trusts and who it is to that
// provider. The zero value is not usable: Issuer and Audience are
// required (Validate).
type Config struct {
	// Issuer is the provider's issuer URL exactly as tokens carry it in
	// "iss" (e.g. http://127.0.0.1:8090, https://tenant.eu.auth0.com/,
	// https://kc.example.com/realms/shop).
	Issuer string `env:"AUTH_ISSUER"`
	// DiscoveryURL, when set, is where this process reaches the provider
	// instead of Issuer: for a container that reaches it under another
	// name than the one in "iss" (compose: iss http://localhost:8090,
	// reached at http://identity:8090). The discovery document must still
	// name Issuer as its issuer; its endpoints under Issuer (JWKS, token)
	// are fetched under DiscoveryURL.
	DiscoveryURL string `env:"AUTH_DISCOVERY_URL"`
	// Audience is this service's identifier at the provider; a token must
	// list it in "aud". Empty means the service's name.
	Audience string `env:"AUTH_AUDIENCE"`
	// RolesClaim is where the roles are in the token: a top-level claim
	// ("roles", the default) or a dotted path ("realm_access.roles").
	RolesClaim string `env:"AUTH_ROLES_CLAIM" envDefault:"roles"`
	// Leeway is the clock skew allowed past "exp" (default 30s, at most 5m).
	Leeway time.Duration `env:"AUTH_LEEWAY" envDefault:"30s"`
}

// rewrite returns u fetched through DiscoveryURL: a provider's endpoint
// under Issuer is moved under DiscoveryURL (the discovery document names
// its endpoints under the public issuer, which a container may not reach).
func (c Config) rewrite(u string) string { return rewriteEndpoint(c.Issuer, c.DiscoveryURL, u) }

func rewriteEndpoint(issuer, discovery, u string) string {
	if discovery == "" {
		return u
	}
	iss, d := strings.TrimSuffix(issuer, "/"), strings.TrimSuffix(discovery, "/")
	if rest, ok := strings.CutPrefix(u, iss); ok && (rest == "" || strings.HasPrefix(rest, "/")) {
		return d + rest
	}
	return u
}

// Validate reports what is missing or out of range, naming the variables.
func (c Config) Validate() []error {
	var errs []error
	if c.Issuer == "" {
		errs = append(errs, errors.New("AUTH_ISSUER: required: the OpenID Connect issuer whose tokens this service accepts (make run sets it; see README, Identity)"))
	} else if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fmt.Errorf("AUTH_ISSUER: %q is not an http(s) URL", c.Issuer))
	}
	if c.DiscoveryURL != "" {
		if u, err := url.Parse(c.DiscoveryURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("AUTH_DISCOVERY_URL: %q is not an http(s) URL", c.DiscoveryURL))
		}
	}
	if c.Leeway < 0 || c.Leeway > 5*time.Minute {
		errs = append(errs, fmt.Errorf("AUTH_LEEWAY: must be 0..5m (got %s)", c.Leeway))
	}
	return errs
}

// Principal is the verified caller of a request.
type Principal struct {
	// Subject is the token's "sub": a customer's id, or a service client's.
	Subject string
	// ClientID is the OAuth client the token was issued to ("client_id",
	// else "azp").
	ClientID string
	// Roles are read from Config.RolesClaim.
	Roles []string
	// Scopes are the token's "scope" split at spaces.
	Scopes []string
	// Expiry is when the token stops being accepted (before leeway).
	Expiry time.Time
}

// Has reports whether the principal holds role.
func (p Principal) Has(role string) bool { return slices.Contains(p.Roles, role) }

// IsOperator reports whether the principal is an operator.
func (p Principal) IsOperator() bool { return p.Has(RoleOperator) }

// Owner is the customer whose data p may see: p's own subject, or ""
// (every customer's) for an operator. Use it as the filter of a read, and
// answer another customer's resource as a missing one.
func (p Principal) Owner() string {
	if p.IsOperator() {
		return ""
	}
	return p.Subject
}

// IdempotencyScope is the Idempotency-Key scope of p ("sub:<subject>"):
// keys are per authenticated principal, so one caller cannot replay, or
// collide with, another's key.
func (p Principal) IdempotencyScope() string { return "sub:" + p.Subject }

// Caller returns the principal Require put in ctx, or a 401 problem when
// there is none: a handler mounted without Require is a wiring mistake,
// and it must refuse, never treat the request as "anybody".
func Caller(ctx context.Context) (Principal, error) {
	p, ok := FromContext(ctx)
	if !ok || p.Subject == "" {
		return Principal{}, httpkit.NewProblem(http.StatusUnauthorized, "unauthorized", "this route needs an access token")
	}
	return p, nil
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal Require put in ctx. ok is false on a
// route without Require, which is a wiring mistake a handler must treat
// as "nobody" (deny), never as "anybody".
func FromContext(ctx context.Context) (p Principal, ok bool) {
	p, ok = ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Verifier checks access tokens against one issuer. It is safe for
// concurrent use. The provider is discovered on first use (and again after
// a failure, at most once a second), so a service may start before its
// provider.
type Verifier struct {
	cfg     Config
	hc      *http.Client
	now     func() time.Time
	rejects *prometheus.CounterVec

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	provider *oidc.Provider
	lastTry  time.Time
	lastErr  error
}

// Options are a Verifier's optional collaborators.
type Options struct {
	// HTTPClient fetches discovery and keys (default: 5s timeout).
	HTTPClient *http.Client
	// Registerer, when set, gets auth_rejections_total{reason}.
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// NewVerifier returns a Verifier for cfg; defaultAudience is used when
// cfg.Audience is empty (pass the service's name).
func NewVerifier(cfg Config, defaultAudience string, opts Options) (*Verifier, error) {
	if cfg.Audience == "" {
		cfg.Audience = defaultAudience
	}
	if cfg.RolesClaim == "" {
		cfg.RolesClaim = "roles"
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.Audience == "" {
		return nil, errors.New("AUTH_AUDIENCE: required")
	}
	v := &Verifier{cfg: cfg, hc: opts.HTTPClient, now: opts.Now}
	if v.hc == nil {
		v.hc = &http.Client{Timeout: 5 * time.Second}
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.rejects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "auth_rejections_total",
		Help: "Requests refused by token verification or authorization, by reason (missing, invalid, expired, forbidden, unavailable).",
	}, []string{"reason"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(v.rejects); err != nil {
			return nil, fmt.Errorf("register auth metrics: %w", err)
		}
	}
	return v, nil
}

// Audience is the audience tokens must carry for this verifier.
func (v *Verifier) Audience() string { return v.cfg.Audience }

// ErrUnavailable means the provider could not be discovered: the token
// was not judged. Callers answer 503, not 401.
var ErrUnavailable = errors.New("identity provider unavailable")

// ErrExpired means the token was valid once and has expired.
var ErrExpired = errors.New("token expired")

// Check discovers the provider if it has not been yet: for /readyz, so a
// process whose provider is unreachable is not ready.
func (v *Verifier) Check(ctx context.Context) error {
	_, err := v.idTokenVerifier(ctx)
	return err
}

func (v *Verifier) idTokenVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.verifier != nil {
		return v.verifier, nil
	}
	if now := v.now(); now.Sub(v.lastTry) < time.Second && v.lastErr != nil {
		return nil, v.lastErr
	}
	v.lastTry = v.now()
	// The provider's key set fetches with the client in this context, for
	// the verifier's whole life: it must not be the request's context.
	pctx := oidc.ClientContext(context.WithoutCancel(ctx), v.hc)
	where := v.cfg.Issuer
	if v.cfg.DiscoveryURL != "" {
		where = v.cfg.DiscoveryURL
		pctx = oidc.InsecureIssuerURLContext(pctx, v.cfg.Issuer)
	}
	dctx, cancel := context.WithTimeout(pctx, 5*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(dctx, v.hc), where)
	if err != nil {
		v.lastErr = fmt.Errorf("%w: discover %s: %w", ErrUnavailable, where, err)
		return nil, v.lastErr
	}
	// NewProvider bound its key set to dctx; build the verifier on a key
	// set that lives as long as the process.
	var meta struct {
		JWKSURL string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKSURL == "" {
		v.lastErr = fmt.Errorf("%w: discovery document of %s has no jwks_uri", ErrUnavailable, where)
		return nil, v.lastErr
	}
	algs := slices.DeleteFunc(slices.Clone(meta.Algs), func(a string) bool { return a == "none" || strings.HasPrefix(a, "HS") })
	if len(algs) == 0 {
		algs = []string{oidc.RS256}
	}
	keys := oidc.NewRemoteKeySet(pctx, v.cfg.rewrite(meta.JWKSURL))
	leeway := v.cfg.Leeway
	v.verifier = oidc.NewVerifier(v.cfg.Issuer, keys, &oidc.Config{
		ClientID:             v.cfg.Audience,
		SupportedSigningAlgs: algs,
		Now:                  func() time.Time { return v.now().Add(-leeway) },
	})
	v.provider, v.lastErr = p, nil
	return v.verifier, nil
}

// Verify checks raw (the token without "Bearer ") and returns its
// principal. The error wraps ErrUnavailable when the provider could not be
// reached, ErrExpired for an expired token; any other error means the
// token is not acceptable.
func (v *Verifier) Verify(ctx context.Context, raw string) (Principal, error) {
	iv, err := v.idTokenVerifier(ctx)
	if err != nil {
		return Principal{}, err
	}
	tok, err := iv.Verify(ctx, raw)
	if err != nil {
		if _, ok := errors.AsType[*oidc.TokenExpiredError](err); ok {
			return Principal{}, fmt.Errorf("%w: %w", ErrExpired, err)
		}
		return Principal{}, err
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return Principal{}, fmt.Errorf("read claims: %w", err)
	}
	p := Principal{Subject: tok.Subject, Expiry: tok.Expiry}
	p.ClientID, _ = claims["client_id"].(string)
	if p.ClientID == "" {
		p.ClientID, _ = claims["azp"].(string)
	}
	if s, ok := claims["scope"].(string); ok {
		p.Scopes = strings.Fields(s)
	}
	p.Roles = stringsAt(claims, v.cfg.RolesClaim)
	if p.Subject == "" {
		return Principal{}, errors.New("token has no subject")
	}
	return p, nil
}

// stringsAt reads a string array (or one string) at a dotted path.
func stringsAt(claims map[string]any, path string) []string {
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	switch x := cur.(type) {
	case string:
		return []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// Policy is who may call a route: a caller holding any of Roles (none
// listed: any verified caller).
type Policy struct {
	Roles []string
}

// AnyOf is the policy "holds at least one of roles".
func AnyOf(roles ...string) Policy { return Policy{Roles: roles} }

// Authenticated is the policy "any verified caller".
var Authenticated = Policy{}

func (p Policy) allows(pr Principal) bool {
	if len(p.Roles) == 0 {
		return true
	}
	return slices.ContainsFunc(p.Roles, pr.Has)
}

// Require returns middleware that lets a request through only with a
// bearer token Verify accepts and a principal the policy allows; the
// principal is in the request context (FromContext).
func (v *Verifier) Require(policy Policy) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, ok := bearer(r)
			if !ok {
				v.refuse(w, "missing", http.StatusUnauthorized, "", "this route needs Authorization: Bearer <access token> from the identity provider (README: make token)")
				return
			}
			p, err := v.identified(r.Context(), raw)
			switch {
			case errors.Is(err, ErrUnavailable):
				v.rejects.WithLabelValues("unavailable").Inc()
				w.Header().Set("Cache-Control", "private, no-store")
				writeProblem(w, http.StatusServiceUnavailable, "identity-provider-unavailable", "the identity provider cannot be reached to check the token; retry shortly", time.Second)
				return
			case errors.Is(err, ErrExpired):
				v.refuse(w, "expired", http.StatusUnauthorized, "invalid_token", "the access token has expired; get a new one")
				return
			case err != nil:
				v.refuse(w, "invalid", http.StatusUnauthorized, "invalid_token", "the access token is not valid here (signature, issuer or audience); get one from "+v.cfg.Issuer+" for audience "+v.cfg.Audience)
				return
			}
			if !policy.allows(p) {
				v.refuse(w, "forbidden", http.StatusForbidden, "insufficient_scope", "this route needs one of the roles "+strings.Join(policy.Roles, ", "))
				return
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
		})
	}
}

// Identify verifies r's bearer token, when it has one, before any route
// is chosen, and refuses nothing: for middleware that must know who calls
// before routing, such as a per-caller rate limit. ok is false without a
// token or with one that Verify does not accept (the route's Require then
// answers it, or the route needs no token). On success the returned
// request carries the verification, so that Require does not verify the
// same token again (it still applies its policy); the principal is not
// put where FromContext finds it, so a route mounted without Require
// still treats the request as nobody's.
func (v *Verifier) Identify(r *http.Request) (p Principal, out *http.Request, ok bool) {
	raw, ok := bearer(r)
	if !ok {
		return Principal{}, r, false
	}
	p, err := v.Verify(r.Context(), raw)
	if err != nil {
		return Principal{}, r, false
	}
	return p, r.WithContext(context.WithValue(r.Context(), identifiedKey{}, identity{v: v, raw: raw, p: p})), true
}

type identifiedKey struct{}

// identity is a token Identify verified, and by which verifier.
type identity struct {
	v   *Verifier
	raw string
	p   Principal
}

// identified is Verify(ctx, raw), unless Identify verified the same token
// with v for this request already.
func (v *Verifier) identified(ctx context.Context, raw string) (Principal, error) {
	if id, ok := ctx.Value(identifiedKey{}).(identity); ok && id.v == v && id.raw == raw {
		return id.p, nil
	}
	return v.Verify(ctx, raw)
}

// Handle is Require(policy)(h): for mounting, mux.Handle(pattern, v.Handle(policy, h)).
func (v *Verifier) Handle(policy Policy, h http.Handler) http.Handler { return v.Require(policy)(h) }

func (v *Verifier) refuse(w http.ResponseWriter, reason string, status int, code, detail string) {
	v.rejects.WithLabelValues(reason).Inc()
	challenge := `Bearer realm="shopfloor"`
	if code != "" {
		challenge += `, error="` + code + `"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	w.Header().Set("Cache-Control", "private, no-store")
	class := "unauthorized"
	if status == http.StatusForbidden {
		class = "forbidden"
	}
	writeProblem(w, status, class, detail, 0)
}

// bearer returns the token of "Authorization: Bearer <token>" (scheme
// case-insensitive, RFC 6750 §2.1).
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func writeProblem(w http.ResponseWriter, status int, class, detail string, retryAfter time.Duration) {
	p := httpkit.NewProblem(status, class, detail)
	p.RetryAfter = retryAfter
	httpkit.WriteProblem(w, p)
}
