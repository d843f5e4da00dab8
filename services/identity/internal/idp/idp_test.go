package idp_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/identity/identityapi"
	"github.com/shopfloor/shopfloor/services/identity/internal/idp"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

const password = "correct-horse-battery"

var secrets = map[string]string{
	identityapi.ClientOrders:        "orders-secret-0123456789",
	identityapi.ClientPayments:      "payments-secret-0123456789",
	identityapi.ClientNotifications: "notifications-secret-0123456789",
	identityapi.ClientSearch:        "search-secret-0123456789",
}

// op is a provider served in-process: the public endpoints at issuer, the
// admin ones at admin. restart swaps in a new Provider (a new process)
// behind the same address.
type op struct {
	issuer string
	admin  string
	hc     *http.Client
	cfg    idp.Config
	h      atomic.Pointer[http.Handler]
	ah     atomic.Pointer[http.Handler]
	p      atomic.Pointer[idp.Provider]
}

func start(t *testing.T, keyDir string) *op {
	t.Helper()
	return startWith(t, func(c *idp.Config) { c.KeyDir = keyDir })
}

// startWith starts a provider with the test config changed by edit.
func startWith(t *testing.T, edit func(*idp.Config)) *op {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &op{issuer: "http://" + ln.Addr().String(), hc: &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}}
	o.cfg = idp.Config{Issuer: o.issuer, DemoPassword: password, ClientSecrets: secrets,
		Logger: slog.New(slog.DiscardHandler)}
	edit(&o.cfg)
	o.restart(t)
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*o.h.Load()).ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}}
	srv.Start()
	adm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*o.ah.Load()).ServeHTTP(w, r) }))
	o.admin = adm.URL
	t.Cleanup(func() {
		o.hc.CloseIdleConnections()
		srv.Close()
		adm.Close()
	})
	return o
}

// restart builds a new Provider from the same config (keys from KeyDir
// when set) and serves it from now on.
func (o *op) restart(t *testing.T) {
	t.Helper()
	p, err := idp.New(o.cfg)
	if err != nil {
		t.Fatal(err)
	}
	health := httpkit.NewHealth()
	mux := httpkit.NewPublicMux(health)
	p.Routes(mux)
	admin := httpkit.NewAdminMux(health, nil)
	// The admin API wants an operator's token for audience identity,
	// checked as run.go does (pkg/auth against this provider).
	v, err := auth.NewVerifier(auth.Config{Issuer: o.issuer}, identityapi.AudienceIdentity, auth.Options{HTTPClient: o.hc})
	if err != nil {
		t.Fatal(err)
	}
	p.AdminRoutes(admin, func(h http.Handler) http.Handler { return v.Handle(auth.AnyOf(auth.RoleOperator), h) })
	var h, ah http.Handler = mux, admin
	o.h.Store(&h)
	o.ah.Store(&ah)
	o.p.Store(p)
}

func (o *op) userToken(t *testing.T, user string) identityapi.Token {
	t.Helper()
	tok, err := identityapi.UserToken(context.Background(), o.hc, o.issuer, identityapi.ClientCLI, user, password)
	if err != nil {
		t.Fatalf("UserToken(%s): %v", user, err)
	}
	return tok
}

func (o *op) rotate(t *testing.T) string {
	t.Helper()
	resp, err := o.rotateAs(t, o.userToken(t, identityapi.UserOscar).AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		KID       string   `json:"kid"`
		Published []string `json:"published"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("rotate: %s %v", resp.Status, err)
	}
	return body.KID
}

// rotateAs asks the admin API to rotate the keys with token ("" for
// none).
func (o *op) rotateAs(t *testing.T, token string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, o.admin+httpkit.AdminPrefix+"rotate-keys", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return o.hc.Do(req)
}

// TestRotateKeysIsForOperators: the admin API refuses a caller without a
// token (401) and a customer (403), and rotates for an operator.
func TestRotateKeysIsForOperators(t *testing.T) {
	t.Parallel()
	o := start(t, "")
	for _, tc := range []struct {
		who   string
		token string
		want  int
	}{{"nobody", "", http.StatusUnauthorized}, {"a customer", o.userToken(t, identityapi.UserAda).AccessToken, http.StatusForbidden},
		{"an operator", o.userToken(t, identityapi.UserOscar).AccessToken, http.StatusOK}} {
		resp, err := o.rotateAs(t, tc.token)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("rotate-keys as %s: %d, want %d", tc.who, resp.StatusCode, tc.want)
		}
	}
}

// verifier is what a resource server runs: go-oidc with a RemoteKeySet
// on the discovered JWKS, for the audience aud.
func (o *op) verifier(t *testing.T, aud string) *oidc.IDTokenVerifier {
	t.Helper()
	ctx := oidc.ClientContext(context.Background(), o.hc)
	p, err := oidc.NewProvider(ctx, o.issuer)
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil {
		t.Fatal(err)
	}
	return oidc.NewVerifier(o.issuer, oidc.NewRemoteKeySet(ctx, meta.JWKS), &oidc.Config{ClientID: aud})
}

type claims struct {
	Subject  string   `json:"sub"`
	Audience []string `json:"aud"`
	Roles    []string `json:"roles"`
	ClientID string   `json:"client_id"`
	Scope    string   `json:"scope"`
	Email    string   `json:"email"`
	Name     string   `json:"name"`
	Exp      int64    `json:"exp"`
	Iat      int64    `json:"iat"`
}

func verify(t *testing.T, v *oidc.IDTokenVerifier, token string) claims {
	t.Helper()
	idt, err := v.Verify(oidc.ClientContext(context.Background(), http.DefaultClient), token)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	var c claims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// header decodes a JWT's protected header.
func header(t *testing.T, token string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestUserTokensAreRS256PerAudienceAndLastAnHour(t *testing.T) {
	t.Parallel()
	o := start(t, "")
	public := append(identityapi.PublicAudiences(), identityapi.ClientCLI)
	for _, tc := range []struct {
		user  string
		roles []string
	}{
		{identityapi.UserAda, []string{identityapi.RoleCustomer}},
		{identityapi.UserGrace, []string{identityapi.RoleCustomer}},
		{identityapi.UserOscar, []string{identityapi.RoleOperator}},
	} {
		t.Run(tc.user, func(t *testing.T) {
			t.Parallel()
			tok := o.userToken(t, tc.user)
			if h := header(t, tok.AccessToken); h["alg"] != "RS256" || h["kid"] == "" {
				t.Errorf("header %v: want RS256 with a kid", h)
			}
			// Every public API accepts it.
			for _, aud := range identityapi.PublicAudiences() {
				c := verify(t, o.verifier(t, aud), tok.AccessToken)
				if c.Subject != tc.user || !slices.Equal(c.Roles, tc.roles) || !slices.Equal(c.Audience, public) ||
					c.ClientID != identityapi.ClientCLI || c.Email != tc.user+"@example.com" || c.Name == "" ||
					!strings.Contains(c.Scope, "openid") || c.Exp-c.Iat != int64(time.Hour/time.Second) {
					t.Fatalf("claims for %s: %+v", aud, c)
				}
			}
			if time.Until(tok.Expiry) < 50*time.Minute {
				t.Errorf("expiry %v: want about an hour", tok.Expiry)
			}
			// The ID token is for the client.
			idc := verify(t, o.verifier(t, identityapi.ClientCLI), tok.IDToken)
			if idc.Subject != tc.user || idc.Email != tc.user+"@example.com" {
				t.Errorf("id token claims: %+v", idc)
			}
		})
	}
}

func TestSignInRefusesWrongPasswordAndUnknownUser(t *testing.T) {
	t.Parallel()
	o := start(t, "")
	ctx := context.Background()
	for _, tc := range []struct{ user, password string }{
		{identityapi.UserAda, password + "x"},
		{"mallory", password},
		{identityapi.UserAda, ""},
	} {
		_, err := identityapi.UserToken(ctx, o.hc, o.issuer, identityapi.ClientCLI, tc.user, tc.password)
		if !errors.Is(err, identityapi.ErrSignInRefused) {
			t.Errorf("%s/%q: %v, want ErrSignInRefused", tc.user, tc.password, err)
		}
	}
}

// TestSignInGivesNoUserEnumeration posts a wrong password for a known user
// and any password for an unknown one: the two answers are the same page.
func TestSignInGivesNoUserEnumeration(t *testing.T) {
	t.Parallel()
	o := start(t, "")
	page := func(user string) (int, string) {
		loc := authorize(t, o, url.Values{"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
			"code_challenge_method": {"S256"}})
		u, err := url.Parse(loc)
		if err != nil || u.Path != "/login" {
			t.Fatalf("authorize redirected to %q, want the sign-in form", loc)
		}
		id := u.Query().Get("authRequestID")
		resp, err := o.hc.PostForm(o.issuer+"/login", url.Values{"authRequestID": {id}, "username": {user}, "password": {"not-the-password"}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.NewReplacer(id, "ID", `autocomplete="username" value="`+user+`"`, "USER").Replace(string(b))
	}
	s1, known := page(identityapi.UserAda)
	s2, unknown := page("mallory")
	if s1 != s2 || known != unknown || !strings.Contains(known, "unknown user or wrong password") {
		t.Fatalf("answers differ or lack the error:\n%d %s\n---\n%d %s", s1, known, s2, unknown)
	}
}

// authorize sends an authorization request for the CLI client with extra
// parameters and returns where the provider redirects.
func authorize(t *testing.T, o *op, extra url.Values) string {
	t.Helper()
	q := url.Values{"client_id": {identityapi.ClientCLI}, "redirect_uri": {identityapi.CLIRedirectURI},
		"response_type": {"code"}, "scope": {"openid"}, "state": {"s1"}}
	for k, v := range extra {
		q[k] = v
	}
	nc := *o.hc
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := nc.Get(o.issuer + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %s", resp.Status)
	}
	return resp.Header.Get("Location")
}

func TestPublicClientNeedsPKCE(t *testing.T) {
	t.Parallel()
	o := start(t, "")
	for name, extra := range map[string]url.Values{
		"no code_challenge": {},
		"plain method":      {"code_challenge": {"abcdefghijklmnopqrstuvwxyz0123456789abcdefg"}, "code_challenge_method": {"plain"}},
		"no method":         {"code_challenge": {"abcdefghijklmnopqrstuvwxyz0123456789abcdefg"}},
	} {
		loc := authorize(t, o, extra)
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(loc, identityapi.CLIRedirectURI) || u.Query().Get("error") != "invalid_request" ||
			!strings.Contains(u.Query().Get("error_description"), "PKCE") || u.Query().Get("code") != "" {
			t.Errorf("%s: redirected to %q, want invalid_request (PKCE) at the redirect URI", name, loc)
		}
	}
	if n, _, _ := o.p.Load().Storage.Pending(); n != 0 {
		t.Errorf("%d auth requests stored for refused requests", n)
	}
}

func TestServiceTokensNameOnlyAudiencesTheClientMayCall(t *testing.T) {
	t.Parallel()
	o := start(t, "")
	ctx := context.Background()
	for _, sc := range identityapi.ServiceClients() {
		for _, aud := range []string{"", sc.Audiences[0]} {
			tok, err := identityapi.ServiceToken(ctx, o.hc, o.issuer, sc.ID, secrets[sc.ID], aud)
			if err != nil {
				t.Fatalf("%s for %q: %v", sc.ID, aud, err)
			}
			c := verify(t, o.verifier(t, sc.Audiences[0]), tok.AccessToken)
			want := sc.Audiences // no audience asked for: every one the client may call
			if aud != "" {
				want = []string{aud}
			}
			if c.Subject != sc.ID || c.ClientID != sc.ID || !slices.Equal(c.Audience, want) ||
				!slices.Equal(c.Roles, []string{identityapi.RoleService}) || c.Email != "" {
				t.Fatalf("%s claims: %+v", sc.ID, c)
			}
		}
	}
	// orders' token for catalog is for catalog only.
	tok, err := identityapi.ServiceToken(ctx, o.hc, o.issuer, identityapi.ClientOrders, secrets[identityapi.ClientOrders], identityapi.AudienceCatalog)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.verifier(t, identityapi.AudienceOrders).Verify(ctx, tok.AccessToken); err == nil {
		t.Error("orders' service token verified for audience orders")
	}
	// Not for an audience the client may not call (payments may call
	// orders only; orders may read payments for its stuck-order repair).
	if _, err := identityapi.ServiceToken(ctx, o.hc, o.issuer, identityapi.ClientPayments, secrets[identityapi.ClientPayments], identityapi.AudienceCatalog); err == nil ||
		!strings.Contains(err.Error(), "invalid_target") {
		t.Errorf("payments asking for catalog: %v, want invalid_target", err)
	}
	// A bad secret, an unknown client and the public client are refused.
	for _, tc := range []struct{ id, secret string }{
		{identityapi.ClientOrders, secrets[identityapi.ClientPayments]},
		{identityapi.ClientOrders, ""},
		{"mallory", "mallory-secret-0123456789"},
		{identityapi.ClientCLI, ""},
	} {
		if _, err := identityapi.ServiceToken(ctx, o.hc, o.issuer, tc.id, tc.secret, ""); err == nil {
			t.Errorf("client %q with a bad secret got a token", tc.id)
		}
	}
}

func TestRefreshTokenRotates(t *testing.T) {
	t.Parallel()
	o := start(t, "")
	tok := o.userToken(t, identityapi.UserGrace)
	// refresh answers the status and the JSON body (closed).
	refresh := func(rt string) (int, map[string]any) {
		resp, err := o.hc.PostForm(o.issuer+"/oauth/token", url.Values{"grant_type": {"refresh_token"},
			"client_id": {identityapi.ClientCLI}, "refresh_token": {rt}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	status, body := refresh(tok.RefreshToken)
	if status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, body)
	}
	at, _ := body["access_token"].(string)
	if c := verify(t, o.verifier(t, identityapi.AudienceOrders), at); c.Subject != identityapi.UserGrace ||
		!slices.Equal(c.Roles, []string{identityapi.RoleCustomer}) {
		t.Fatalf("refreshed claims: %+v", c)
	}
	if body["refresh_token"] == tok.RefreshToken || body["refresh_token"] == "" {
		t.Fatalf("refresh token not replaced: %v", body["refresh_token"])
	}
	if status, body := refresh(tok.RefreshToken); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("reused refresh token: %d %v", status, body)
	}
}

// TestRotationLogsNobodyOut: a token signed before a rotation still
// verifies with a go-oidc RemoteKeySet that cached the old JWKS and with a
// fresh one; a token signed after has the new kid and verifies too.
func TestRotationLogsNobodyOut(t *testing.T) {
	t.Parallel()
	o := start(t, "")
	v := o.verifier(t, identityapi.AudienceOrders)
	before := o.userToken(t, identityapi.UserAda)
	verify(t, v, before.AccessToken) // v has now cached the JWKS with the old key only
	oldKID := header(t, before.AccessToken)["kid"]

	newKID := o.rotate(t)
	after := o.userToken(t, identityapi.UserAda)
	if kid := header(t, after.AccessToken)["kid"]; kid != newKID || kid == oldKID {
		t.Fatalf("kid after rotation %v, want the new key %v (old %v)", kid, newKID, oldKID)
	}
	verify(t, v, after.AccessToken) // an unknown kid: v fetches the JWKS again
	verify(t, v, before.AccessToken)
	verify(t, o.verifier(t, identityapi.AudienceOrders), before.AccessToken)
	if _, err := identityapi.ServiceToken(context.Background(), o.hc, o.issuer, identityapi.ClientSearch, secrets[identityapi.ClientSearch], ""); err != nil {
		t.Fatal(err)
	}
}

// TestKeysSurviveRestart: with a key directory, a token issued before a
// restart verifies against the new instance, and the key files are 0600.
func TestKeysSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	o := start(t, dir)
	o.rotate(t) // two keys on disk: one retired, one signing
	before := o.userToken(t, identityapi.UserOscar)
	svc, err := identityapi.ServiceToken(context.Background(), o.hc, o.issuer, identityapi.ClientPayments, secrets[identityapi.ClientPayments], "")
	if err != nil {
		t.Fatal(err)
	}
	kid := header(t, before.AccessToken)["kid"]

	o.restart(t)
	v := o.verifier(t, identityapi.AudienceOrders) // a resource server that starts after the restart
	if c := verify(t, v, before.AccessToken); c.Subject != identityapi.UserOscar {
		t.Fatalf("claims after restart: %+v", c)
	}
	verify(t, v, svc.AccessToken)
	if after := o.userToken(t, identityapi.UserOscar); header(t, after.AccessToken)["kid"] != kid {
		t.Errorf("restart changed the signing key")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("%d files in the key directory, want 2", len(entries))
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(e.Name(), ".pem") || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", e.Name(), info.Mode().Perm())
		}
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("key directory: %v %v", info.Mode().Perm(), err)
	}
}

func TestDiscoveryAdvertisesIssuerKeysGrantsAndPKCE(t *testing.T) {
	t.Parallel()
	o := start(t, "")
	resp, err := o.hc.Get(o.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Issuer     string   `json:"issuer"`
		JWKS       string   `json:"jwks_uri"`
		Grants     []string `json:"grant_types_supported"`
		Methods    []string `json:"code_challenge_methods_supported"`
		Algs       []string `json:"id_token_signing_alg_values_supported"`
		TokenAuths []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.Issuer != o.issuer || d.JWKS != o.issuer+"/keys" || !slices.Contains(d.Grants, "client_credentials") ||
		!slices.Contains(d.Grants, "refresh_token") || !slices.Contains(d.Methods, "S256") || !slices.Equal(d.Algs, []string{"RS256"}) {
		t.Fatalf("discovery: %+v", d)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	ok := idp.Config{Issuer: "http://127.0.0.1:8090", DemoPassword: password, ClientSecrets: secrets}
	short := map[string]string{}
	for k, v := range secrets {
		short[k] = v
	}
	short[identityapi.ClientSearch] = "short"
	for _, tc := range []struct {
		name string
		edit func(*idp.Config)
		want string
	}{
		{"https issuer", func(c *idp.Config) { c.Issuer = "https://id.example.com" }, ""},
		{"compose issuer", func(c *idp.Config) { c.Issuer = "http://identity:8090" }, ""},
		{"http public issuer", func(c *idp.Config) { c.Issuer = "http://id.example.com" }, "IDENTITY_ISSUER: http is allowed only"},
		{"trailing slash", func(c *idp.Config) { c.Issuer = "http://127.0.0.1:8090/" }, "IDENTITY_ISSUER: must be scheme://host"},
		{"ftp", func(c *idp.Config) { c.Issuer = "ftp://127.0.0.1" }, "IDENTITY_ISSUER: must be an http or https URL"},
		{"short password", func(c *idp.Config) { c.DemoPassword = "short" }, "IDENTITY_DEMO_PASSWORD: must be at least 12"},
		{"short secret", func(c *idp.Config) { c.ClientSecrets = short }, `IDENTITY_CLIENT_SECRETS: the secret of client "search" is shorter`},
	} {
		cfg := ok
		tc.edit(&cfg)
		_, err := idp.New(cfg)
		if tc.want == "" && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestSyntheticCustomersSignInOnlyWithTheConfiguredPrefix: with a prefix set, any well-formed username
// with it signs in as a customer with the demo password (load tests and
// drills); without one, or with a bad shape, it is an unknown user.
func TestSyntheticCustomersSignInOnlyWithTheConfiguredPrefix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	off := start(t, "")
	if _, err := identityapi.UserToken(ctx, off.hc, off.issuer, identityapi.ClientCLI, "load-r1-c1", password); !errors.Is(err, identityapi.ErrSignInRefused) {
		t.Fatalf("synthetic user without a prefix configured: %v", err)
	}
	o := startWith(t, func(c *idp.Config) { c.SyntheticCustomerPrefix = "load-" })
	tok, err := identityapi.UserToken(ctx, o.hc, o.issuer, identityapi.ClientCLI, "load-r1-c1", password)
	if err != nil {
		t.Fatal(err)
	}
	c := verify(t, o.verifier(t, identityapi.AudienceOrders), tok.AccessToken)
	if c.Subject != "load-r1-c1" || !slices.Equal(c.Roles, []string{identityapi.RoleCustomer}) {
		t.Fatalf("claims %+v", c)
	}
	for _, bad := range []string{"load-", "load-a b", "load-" + strings.Repeat("x", 64), "loader"} {
		if _, err := identityapi.UserToken(ctx, o.hc, o.issuer, identityapi.ClientCLI, bad, password); !errors.Is(err, identityapi.ErrSignInRefused) {
			t.Errorf("%q: %v, want refused", bad, err)
		}
	}
	if _, err := identityapi.UserToken(ctx, o.hc, o.issuer, identityapi.ClientCLI, "load-r1-c2", password+"x"); !errors.Is(err, identityapi.ErrSignInRefused) {
		t.Errorf("synthetic user with a wrong password: %v", err)
	}
}
