package idp

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/shopfloor/shopfloor/services/identity/identityapi"
)

// MinSecretLength is the shortest client secret the provider accepts.
const MinSecretLength = 16

// client is a registered OAuth client (op.Client).
type client struct {
	id string
	// secret is the SHA-256 of the client secret; public clients have none.
	secret     [32]byte
	public     bool
	redirects  []string
	grants     []oidc.GrantType
	responses  []oidc.ResponseType
	appType    op.ApplicationType
	authMethod oidc.AuthMethod
	// audiences go into "aud" of the access tokens: for the public client
	// the public APIs and itself, for a service client the services it
	// may call.
	audiences  []string
	loginURL   func(authRequestID string) string
	idTokenTTL time.Duration
}

// newClients registers the public CLI client, one confidential client
// per identityapi.ServiceClients entry with its secret from secrets, and,
// when webRedirects is not empty, the web storefront's confidential client
// (identityapi.ClientWeb) with those redirect URIs.
func newClients(secrets map[string]string, webRedirects []string, loginURL func(string) string, idTokenTTL time.Duration) (map[string]*client, error) {
	if err := CheckClientSecrets(secrets, webRedirects); err != nil {
		return nil, err
	}
	clients := map[string]*client{
		identityapi.ClientCLI: {
			id:         identityapi.ClientCLI,
			public:     true,
			redirects:  []string{identityapi.CLIRedirectURI},
			grants:     []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken},
			responses:  []oidc.ResponseType{oidc.ResponseTypeCode},
			appType:    op.ApplicationTypeNative,
			authMethod: oidc.AuthMethodNone,
			audiences:  append(identityapi.PublicAudiences(), identityapi.ClientCLI),
			loginURL:   loginURL,
			idTokenTTL: idTokenTTL,
		},
	}
	if len(webRedirects) > 0 {
		// A backend-for-frontend: the browser never sees a token. It is
		// confidential (client_secret_basic) and uses PKCE as well (OAuth
		// 2.1); the redirect URIs must match exactly (http is accepted for
		// a confidential code-flow client: the sandbox runs on localhost).
		clients[identityapi.ClientWeb] = &client{
			id:         identityapi.ClientWeb,
			secret:     sha256.Sum256([]byte(secrets[identityapi.ClientWeb])),
			redirects:  slices.Clone(webRedirects),
			grants:     []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken},
			responses:  []oidc.ResponseType{oidc.ResponseTypeCode},
			appType:    op.ApplicationTypeWeb,
			authMethod: oidc.AuthMethodBasic,
			audiences:  append(identityapi.PublicAudiences(), identityapi.ClientWeb),
			loginURL:   loginURL,
			idTokenTTL: idTokenTTL,
		}
	}
	for _, sc := range identityapi.ServiceClients() {
		clients[sc.ID] = &client{
			id:         sc.ID,
			secret:     sha256.Sum256([]byte(secrets[sc.ID])),
			grants:     []oidc.GrantType{oidc.GrantTypeClientCredentials},
			appType:    op.ApplicationTypeWeb,
			authMethod: oidc.AuthMethodBasic,
			audiences:  slices.Clone(sc.Audiences),
			loginURL:   loginURL,
			idTokenTTL: idTokenTTL,
		}
	}
	return clients, nil
}

// CheckClientSecrets reports, in IDENTITY_CLIENT_SECRETS' words, a service
// client without a secret, a secret shorter than MinSecretLength and a
// client that is not registered. The web client (identityapi.ClientWeb)
// is registered, and then needs a secret, when webRedirects is not empty.
// It never shows a secret.
func CheckClientSecrets(secrets map[string]string, webRedirects []string) error {
	var problems []string
	required := make([]string, 0, len(identityapi.ServiceClients())+1)
	for _, sc := range identityapi.ServiceClients() {
		required = append(required, sc.ID)
	}
	if len(webRedirects) > 0 {
		required = append(required, identityapi.ClientWeb)
	}
	for _, id := range required {
		s, ok := secrets[id]
		switch {
		case !ok || s == "":
			problems = append(problems, fmt.Sprintf("no secret for client %q", id))
		case len(s) < MinSecretLength:
			problems = append(problems, fmt.Sprintf("the secret of client %q is shorter than %d characters", id, MinSecretLength))
		}
	}
	var unknown []string
	for id := range secrets {
		if id == identityapi.ClientWeb && len(webRedirects) == 0 {
			problems = append(problems, fmt.Sprintf("client %q has a secret but no redirect URI (IDENTITY_WEB_REDIRECT_URIS)", id))
			continue
		}
		if !slices.Contains(required, id) {
			unknown = append(unknown, fmt.Sprintf("%q", id))
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		problems = append(problems, "unknown clients "+strings.Join(unknown, ", "))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("IDENTITY_CLIENT_SECRETS: %s (expected %s)", strings.Join(problems, "; "), secretsFormat())
}

// ParseClientSecrets parses "orders=s1,payments=s2". Errors never show a
// secret.
func ParseClientSecrets(s string) (map[string]string, error) {
	out := map[string]string{}
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, secret, ok := strings.Cut(part, "=")
		id = strings.TrimSpace(id)
		if !ok || id == "" {
			return nil, fmt.Errorf("IDENTITY_CLIENT_SECRETS: entry %d is not client=secret (expected %s)", i+1, secretsFormat())
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("IDENTITY_CLIENT_SECRETS: client %q appears twice", id)
		}
		out[id] = secret
	}
	return out, nil
}

func secretsFormat() string {
	ids := make([]string, 0, len(identityapi.ServiceClients()))
	for _, sc := range identityapi.ServiceClients() {
		ids = append(ids, sc.ID+"=<secret>")
	}
	return strings.Join(ids, ",")
}

// checkSecret compares in constant time (of the hashes: the length of the
// secret does not show either).
func (c *client) checkSecret(secret string) bool {
	if c.public {
		return false
	}
	h := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(h[:], c.secret[:]) == 1
}

func (c *client) GetID() string                        { return c.id }
func (c *client) RedirectURIs() []string               { return c.redirects }
func (c *client) PostLogoutRedirectURIs() []string     { return nil }
func (c *client) ApplicationType() op.ApplicationType  { return c.appType }
func (c *client) AuthMethod() oidc.AuthMethod          { return c.authMethod }
func (c *client) ResponseTypes() []oidc.ResponseType   { return c.responses }
func (c *client) GrantTypes() []oidc.GrantType         { return c.grants }
func (c *client) LoginURL(id string) string            { return c.loginURL(id) }
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration       { return c.idTokenTTL }
func (c *client) DevMode() bool                        { return false }
func (c *client) IsScopeAllowed(string) bool           { return false }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

var _ op.Client = (*client)(nil)
