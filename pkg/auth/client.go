package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// ClientConfig is a service's identity when it calls another service.
type ClientConfig struct {
	// Issuer and DiscoveryURL as in Config; the token endpoint is read
	// from the discovery document.
	Issuer       string `env:"AUTH_ISSUER"`
	DiscoveryURL string `env:"AUTH_DISCOVERY_URL"`
	// ClientID and ClientSecret are this service's client at the provider
	// (client_secret_basic). The secret never has a default.
	ClientID     string `env:"AUTH_CLIENT_ID"`
	ClientSecret string `env:"AUTH_CLIENT_SECRET"`
}

// Validate names what is missing.
func (c ClientConfig) Validate() []error {
	var errs []error
	if c.Issuer == "" {
		errs = append(errs, errors.New("AUTH_ISSUER: required to get tokens for calls to other services"))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("AUTH_CLIENT_ID: required: this service's client id at the identity provider"))
	}
	if c.ClientSecret == "" {
		errs = append(errs, errors.New("AUTH_CLIENT_SECRET: required: this service's client secret (no default; make run generates one)"))
	}
	return errs
}

// ClientCredentials is an http.RoundTripper that sends every request with
// "Authorization: Bearer <token>", a client-credentials token for
// Audience. Tokens are fetched once and reused until 10s before expiry;
// concurrent requests share one fetch. A request that already has an
// Authorization header is sent as it is.
//
// The "audience" parameter is sent with the token request (Auth0 needs
// it; providers that choose audiences per client, like the sandbox's and
// Keycloak's, ignore it).
type ClientCredentials struct {
	cfg      ClientConfig
	audience string
	base     http.RoundTripper
	hc       *http.Client

	mu  sync.Mutex
	src oauth2.TokenSource
}

// NewClientCredentials returns a transport for calls to audience through
// base (nil: http.DefaultTransport). hc fetches discovery and tokens (nil:
// a client with a 5s timeout).
func NewClientCredentials(cfg ClientConfig, audience string, base http.RoundTripper, hc *http.Client) (*ClientCredentials, error) {
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if base == nil {
		base = http.DefaultTransport
	}
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	return &ClientCredentials{cfg: cfg, audience: audience, base: base, hc: hc}, nil
}

// Token returns a valid token for the audience, fetching one if needed.
func (c *ClientCredentials) Token(ctx context.Context) (*oauth2.Token, error) {
	src, err := c.source(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := src.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: client credentials token for %s: %w", ErrUnavailable, c.audience, err)
	}
	return tok, nil
}

func (c *ClientCredentials) source(ctx context.Context) (oauth2.TokenSource, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.src != nil {
		return c.src, nil
	}
	p, err := discover(ctx, c.hc, c.cfg)
	if err != nil {
		return nil, err
	}
	cc := clientcredentials.Config{
		ClientID:       c.cfg.ClientID,
		ClientSecret:   c.cfg.ClientSecret,
		TokenURL:       rewriteEndpoint(c.cfg.Issuer, c.cfg.DiscoveryURL, p.Endpoint().TokenURL),
		EndpointParams: url.Values{"audience": {c.audience}},
		AuthStyle:      oauth2.AuthStyleInHeader,
	}
	// The token source keeps the context for every refresh: give it one
	// that outlives the request that happened to fetch first.
	tctx := context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, c.hc)
	c.src = oauth2.ReuseTokenSourceWithExpiry(nil, cc.TokenSource(tctx), 10*time.Second)
	return c.src, nil
}

// RoundTrip implements http.RoundTripper.
func (c *ClientCredentials) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") != "" {
		return c.base.RoundTrip(req)
	}
	tok, err := c.Token(req.Context())
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	r2 := req.Clone(req.Context())
	r2.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	return c.base.RoundTrip(r2)
}

// discover reads the provider's discovery document of cfg.Issuer, through
// cfg.DiscoveryURL when it is set (the document must still name Issuer).
func discover(ctx context.Context, hc *http.Client, cfg ClientConfig) (*oidc.Provider, error) {
	pctx := oidc.ClientContext(ctx, hc)
	where := cfg.Issuer
	if cfg.DiscoveryURL != "" {
		where = cfg.DiscoveryURL
		pctx = oidc.InsecureIssuerURLContext(pctx, cfg.Issuer)
	}
	p, err := oidc.NewProvider(pctx, where)
	if err != nil {
		return nil, fmt.Errorf("%w: discover %s: %w", ErrUnavailable, where, err)
	}
	return p, nil
}
