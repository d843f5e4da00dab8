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

// newClients registers the public CLI client and one confidential client
// per identityapi.ServiceClients entry, with its secret from secrets.
func newClients(secrets map[string]string, loginURL func(string) string, idTokenTTL time.Duration) (map[string]*client, error) {
	if err := CheckClientSecrets(secrets); err != nil {
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
// client that is not registered. It never shows a secret.
func CheckClientSecrets(secrets map[string]string) error {
	var problems []string
	for _, sc := range identityapi.ServiceClients() {
		s, ok := secrets[sc.ID]
		switch {
		case !ok || s == "":
			problems = append(problems, fmt.Sprintf("no secret for client %q", sc.ID))
		case len(s) < MinSecretLength:
			problems = append(problems, fmt.Sprintf("the secret of client %q is shorter than %d characters", sc.ID, MinSecretLength))
		}
	}
	var unknown []string
	for id := range secrets {
		if !slices.ContainsFunc(identityapi.ServiceClients(), func(sc identityapi.ServiceClient) bool { return sc.ID == id }) {
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
