package target

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/services/identity/identityapi"
)

// Identity is where drills sign in: the sandbox OpenID Connect provider
// (services/identity) of the system under test. Every public API wants a
// bearer token (ADR 0021, 0022): the load signs in as synthetic customers
// (identityapi's "load-" prefix, which make run enables), and the checks
// read everything as the operator (identityapi.UserOscar).
type Identity struct {
	// Issuer is the provider's URL, exactly the tokens' "iss"
	// (IDENTITY_ISSUER): http://127.0.0.1:<base+90> for a local run,
	// http://localhost:8090 for compose.
	Issuer string
	// DemoPassword is every demo and synthetic user's password
	// (IDENTITY_DEMO_PASSWORD of a local run, SHOPFLOOR_DEMO_PASSWORD of
	// compose's .env).
	DemoPassword string
}

// Operator is the user whose token reads every customer's orders,
// payments, e-mails and search results and writes through catalog's
// admin API.
const Operator = identityapi.UserOscar

// ReadIdentityEnv reads IDENTITY_ISSUER and IDENTITY_DEMO_PASSWORD from a
// run directory's identity.env (deploy/local/run.sh writes it, mode 0600,
// as NAME=value lines; # comments and blank lines are skipped). Both must
// be present.
func ReadIdentityEnv(path string) (Identity, error) {
	env, err := readEnvFile(path)
	if err != nil {
		return Identity{}, fmt.Errorf("identity settings: %w (does this run's run.sh write identity.env?)", err)
	}
	id := Identity{Issuer: env["IDENTITY_ISSUER"], DemoPassword: env["IDENTITY_DEMO_PASSWORD"]}
	if id.Issuer == "" || id.DemoPassword == "" {
		return Identity{}, fmt.Errorf("identity settings: %s lacks IDENTITY_ISSUER or IDENTITY_DEMO_PASSWORD", path)
	}
	return id, nil
}

// tokenRefresh is how long before its expiry a cached token is replaced:
// longer than any single drill step, so a token never expires in flight.
const tokenRefresh = 5 * time.Minute

// unknownLifetime is assumed for a token answered without expires_in.
const unknownLifetime = 10 * time.Minute

// tokenCache holds one access token per user. Each user has its own lock,
// so sign-ins of different users run in parallel and concurrent callers
// for the same user share one sign-in.
type tokenCache struct {
	mu    sync.Mutex
	users map[string]*cachedToken
	// fetch and now are identityapi.UserToken and time.Now; tests replace
	// them.
	fetch func(ctx context.Context, user string) (identityapi.Token, error)
	now   func() time.Time
}

type cachedToken struct {
	mu  sync.Mutex
	tok identityapi.Token
}

func (c *tokenCache) get(ctx context.Context, user string) (string, error) {
	c.mu.Lock()
	e, ok := c.users[user]
	if !ok {
		e = &cachedToken{}
		c.users[user] = e
	}
	c.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tok.AccessToken != "" && e.tok.Expiry.Sub(c.now()) > tokenRefresh {
		return e.tok.AccessToken, nil
	}
	tok, err := c.fetch(ctx, user)
	if err != nil {
		return "", err
	}
	if tok.AccessToken == "" {
		return "", fmt.Errorf("sign in as %s: the provider answered no access token", user)
	}
	if tok.Expiry.IsZero() {
		tok.Expiry = c.now().Add(unknownLifetime)
	}
	e.tok = tok
	return tok.AccessToken, nil
}

// Token returns an access token of user (a demo user such as Operator, or
// a synthetic customer "load-…"), signing in at s.Identity through the
// authorization code flow with PKCE of identityapi.ClientCLI on first use
// and again when the cached token has less than 5 minutes left (tokens
// live 1h in the sandbox). A refused sign-in wraps
// identityapi.ErrSignInRefused: the user is unknown (is
// IDENTITY_SYNTHETIC_CUSTOMER_PREFIX=load- set?) or the password wrong.
// Safe for concurrent use.
func (s *System) Token(ctx context.Context, user string) (string, error) {
	s.tokensOnce.Do(func() {
		s.tokens = &tokenCache{users: map[string]*cachedToken{}, now: time.Now, fetch: s.signIn}
	})
	return s.tokens.get(ctx, user)
}

func (s *System) signIn(ctx context.Context, user string) (identityapi.Token, error) {
	if s.identityErr != nil {
		return identityapi.Token{}, fmt.Errorf("sign in as %s: %w", user, s.identityErr)
	}
	if s.Identity.Issuer == "" || s.Identity.DemoPassword == "" {
		return identityapi.Token{}, fmt.Errorf("sign in as %s: no identity provider configured (issuer and demo password)", user)
	}
	tok, err := identityapi.UserToken(ctx, s.Client(), s.Identity.Issuer, identityapi.ClientCLI, user, s.Identity.DemoPassword)
	if err != nil {
		return identityapi.Token{}, fmt.Errorf("sign in as %s at %s: %w", user, s.Identity.Issuer, err)
	}
	return tok, nil
}

// Bearer returns an Authorization header carrying user's token.
func (s *System) Bearer(ctx context.Context, user string) (http.Header, error) {
	tok, err := s.Token(ctx, user)
	if err != nil {
		return nil, err
	}
	return http.Header{"Authorization": {"Bearer " + tok}}, nil
}

// GetAs GETs url with user's token and decodes a 200 answer into v (see
// DoJSON); a failed sign-in is returned as is.
func (s *System) GetAs(ctx context.Context, user, url string, v any) error {
	h, err := s.Bearer(ctx, user)
	if err != nil {
		return err
	}
	return DoJSON(ctx, s.Client(), http.MethodGet, url, h, nil, v)
}

// readEnvFile reads KEY=VALUE lines (a run directory's identity.env,
// postgres.env): blank lines and # comments skipped, an "export " prefix
// and quotes around the value dropped.
func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path) //nolint:gosec // G304: the run directory's own file
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		env[strings.TrimPrefix(strings.TrimSpace(k), "export ")] = strings.Trim(v, `"'`)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return env, nil
}
