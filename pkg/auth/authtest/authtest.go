// Package authtest is a stand-in OpenID Connect issuer for tests: it
// serves discovery and a JWKS from an httptest server and mints access
// tokens with whatever claims a test needs, including the ones no real
// provider would issue on request (expired, for another audience, from
// another issuer, alg "none", tampered). The identity provider is an
// external party to a service, so a fake of it is fair in a service's
// tests; services/identity's own tests use the real provider.
package authtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/shopfloor/shopfloor/pkg/auth"
)

// Issuer is a running fake issuer.
type Issuer struct {
	// URL is the issuer URL ("iss") and where it listens.
	URL string
	// public, when set, is the issuer URL the discovery document names,
	// with every endpoint under it (SetPublicURL).
	public string

	mu   sync.Mutex
	keys []jose.JSONWebKey // private; the first signs
	// ClientSecrets are the client-credentials clients the token
	// endpoint accepts (client id → secret).
	clients map[string]string
	// Issued counts tokens handed out by the token endpoint.
	issued int
}

// NewIssuer starts an issuer that stops when t ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	iss := &Issuer{clients: map[string]string{}}
	iss.Rotate(t)
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	iss.URL = srv.URL
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		iss.mu.Lock()
		base := iss.URL
		if iss.public != "" {
			base = iss.public
		}
		iss.mu.Unlock()
		writeJSON(w, map[string]any{
			"issuer":                                base,
			"authorization_endpoint":                base + "/authorize",
			"token_endpoint":                        base + "/oauth/token",
			"jwks_uri":                              base + "/keys",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		iss.mu.Lock()
		defer iss.mu.Unlock()
		var set jose.JSONWebKeySet
		for _, k := range iss.keys {
			set.Keys = append(set.Keys, k.Public())
		}
		writeJSON(w, set)
	})
	mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		iss.mu.Lock()
		want, known := iss.clients[id]
		iss.mu.Unlock()
		if !ok || !known || secret != want || r.FormValue("grant_type") != "client_credentials" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		iss.mu.Lock()
		iss.issued++
		iss.mu.Unlock()
		iss.mu.Lock()
		issuer := iss.public
		iss.mu.Unlock()
		tok := iss.Token(t, Claims{Issuer: issuer, Subject: id, ClientID: id, Audience: []string{r.FormValue("audience")}, Roles: []string{auth.RoleService}})
		writeJSON(w, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
	})
	return iss
}

// SetPublicURL makes the discovery document name u as the issuer and
// put every endpoint under it, as a provider behind another host name
// does; the server still listens at URL. Tokens minted afterwards still
// say iss=URL unless Claims.Issuer says otherwise.
func (i *Issuer) SetPublicURL(u string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.public = u
}

// AddClient registers a client-credentials client.
func (i *Issuer) AddClient(id, secret string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.clients[id] = secret
}

// Issued is how many tokens the token endpoint has handed out.
func (i *Issuer) Issued() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.issued
}

// Rotate adds a new signing key; the old ones stay in the JWKS.
func (i *Issuer) Rotate(t testing.TB) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	kid := base64.RawURLEncoding.EncodeToString([]byte(time.Now().Format(time.RFC3339Nano)))
	i.keys = append([]jose.JSONWebKey{{Key: k, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig"}}, i.keys...)
}

// Config is an auth.Config that trusts this issuer for audience.
func (i *Issuer) Config(audience string) auth.Config {
	return auth.Config{Issuer: i.URL, Audience: audience, RolesClaim: "roles", Leeway: 30 * time.Second}
}

// Claims are the claims of a minted token.
type Claims struct {
	Issuer   string // empty: the issuer's URL
	Subject  string
	Audience []string
	ClientID string
	Roles    []string
	Scope    string
	// Expiry: zero means an hour from now.
	Expiry time.Time
}

// Token mints a signed access token.
func (i *Issuer) Token(t testing.TB, c Claims) string {
	t.Helper()
	i.mu.Lock()
	key := i.keys[0]
	i.mu.Unlock()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(i.payload(t, c))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (i *Issuer) payload(t testing.TB, c Claims) []byte {
	t.Helper()
	if c.Issuer == "" {
		c.Issuer = i.URL
	}
	if c.Expiry.IsZero() {
		c.Expiry = time.Now().Add(time.Hour)
	}
	if c.ClientID == "" {
		c.ClientID = "shopfloor-cli"
	}
	b, err := json.Marshal(map[string]any{
		"iss": c.Issuer, "sub": c.Subject, "aud": c.Audience, "client_id": c.ClientID,
		"roles": c.Roles, "scope": c.Scope,
		"exp": c.Expiry.Unix(), "iat": time.Now().Add(-time.Minute).Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Customer mints a customer's token for audience.
func (i *Issuer) Customer(t testing.TB, subject, audience string) string {
	return i.Token(t, Claims{Subject: subject, Audience: []string{audience}, Roles: []string{auth.RoleCustomer}})
}

// Operator mints an operator's token for audience.
func (i *Issuer) Operator(t testing.TB, audience string) string {
	return i.Token(t, Claims{Subject: "oscar", Audience: []string{audience}, Roles: []string{auth.RoleOperator}})
}

// Service mints a client-credentials token of client for audience.
func (i *Issuer) Service(t testing.TB, client, audience string) string {
	return i.Token(t, Claims{Subject: client, ClientID: client, Audience: []string{audience}, Roles: []string{auth.RoleService}})
}

// Caller names of Callers, in the order tables list them.
const (
	None          = "none"
	Expired       = "expired"
	Tampered      = "tampered"
	WrongAudience = "wrong-audience"
	OtherIssuer   = "other-issuer"
	AlgNone       = "alg-none"
	OtherCustomer = "other-customer"
	Owner         = "owner"
	Operator      = "operator"
	Service       = "service"
)

// CallerNames lists every caller of Callers.
var CallerNames = []string{None, Expired, Tampered, WrongAudience, OtherIssuer, AlgNone, OtherCustomer, Owner, Operator, Service}

// Callers returns an Authorization header value per caller name for a
// table test of a service registered as audience: owner is the customer
// who owns the resources under test, "other-customer" is someone else.
// None is the empty string (no header).
func (i *Issuer) Callers(t testing.TB, audience, owner string) map[string]string {
	t.Helper()
	other := NewIssuer(t)
	ownerTok := i.Customer(t, owner, audience)
	b := func(s string) string { return "Bearer " + s }
	return map[string]string{
		None:          "",
		Expired:       b(i.Token(t, Claims{Subject: owner, Audience: []string{audience}, Roles: []string{auth.RoleCustomer}, Expiry: time.Now().Add(-2 * time.Minute)})),
		Tampered:      b(tamper(t, ownerTok)),
		WrongAudience: b(i.Customer(t, owner, audience+"-other")),
		OtherIssuer:   b(other.Token(t, Claims{Issuer: i.URL, Subject: owner, Audience: []string{audience}, Roles: []string{auth.RoleOperator}})),
		AlgNone:       b(algNone(t, i.payload(t, Claims{Subject: owner, Audience: []string{audience}, Roles: []string{auth.RoleOperator}}))),
		OtherCustomer: b(i.Customer(t, owner+"-other", audience)),
		Owner:         b(ownerTok),
		Operator:      b(i.Operator(t, audience)),
		Service:       b(i.Service(t, "some-service", audience)),
	}
}

// tamper swaps the payload of a signed token for one granting operator,
// keeping the signature.
func tamper(t testing.TB, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["roles"] = []string{auth.RoleOperator}
	b, _ := json.Marshal(m)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func algNone(t testing.TB, payload []byte) string {
	t.Helper()
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	return h + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
