package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
)

// whoami answers the principal's subject and roles.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		http.Error(w, "no principal", http.StatusInternalServerError)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"sub": p.Subject, "roles": p.Roles, "client": p.ClientID})
})

func newVerifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(cfg, "orders", auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func call(t *testing.T, h http.Handler, authz string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/v1/x", nil)
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestRequireAnswersEachCallerByPolicy is the caller table of the issue:
// every forged or misdirected token is 401, a verified token without the
// role 403, the rest pass.
func TestRequireAnswersEachCallerByPolicy(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	v := newVerifier(t, iss.Config("orders"))
	callers := iss.Callers(t, "orders", "ada")
	policies := map[string]auth.Policy{
		"customer-or-operator": auth.AnyOf(auth.RoleCustomer, auth.RoleOperator),
		"operator":             auth.AnyOf(auth.RoleOperator),
		"authenticated":        auth.Authenticated,
	}
	want := map[string]map[string]int{
		"customer-or-operator": {authtest.OtherCustomer: 200, authtest.Owner: 200, authtest.Operator: 200, authtest.Service: 403},
		"operator":             {authtest.OtherCustomer: 403, authtest.Owner: 403, authtest.Operator: 200, authtest.Service: 403},
		"authenticated":        {authtest.OtherCustomer: 200, authtest.Owner: 200, authtest.Operator: 200, authtest.Service: 200},
	}
	for name, policy := range policies {
		h := v.Handle(policy, whoami)
		for _, caller := range authtest.CallerNames {
			t.Run(name+"/"+caller, func(t *testing.T) {
				t.Parallel()
				w := call(t, h, callers[caller])
				code, ok := want[name][caller]
				if !ok {
					code = http.StatusUnauthorized
				}
				if w.Code != code {
					t.Fatalf("status %d, want %d: %s", w.Code, code, w.Body)
				}
				if code >= 400 {
					if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
						t.Errorf("Content-Type %q", ct)
					}
					if cc := w.Header().Get("Cache-Control"); !strings.Contains(cc, "no-store") {
						t.Errorf("Cache-Control %q: a refusal must never be cached", cc)
					}
					if wa := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Bearer ") {
						t.Errorf("WWW-Authenticate %q", wa)
					}
				}
			})
		}
	}
}

func TestExpiredIsInvalidTokenAndLeewayHonoured(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	cfg := iss.Config("orders")
	cfg.Leeway = time.Minute
	v := newVerifier(t, cfg)
	h := v.Handle(auth.Authenticated, whoami)
	justExpired := iss.Token(t, authtest.Claims{Subject: "ada", Audience: []string{"orders"}, Expiry: time.Now().Add(-10 * time.Second)})
	if w := call(t, h, "Bearer "+justExpired); w.Code != http.StatusOK {
		t.Fatalf("10s past exp with 1m leeway: %d %s", w.Code, w.Body)
	}
	long := iss.Token(t, authtest.Claims{Subject: "ada", Audience: []string{"orders"}, Expiry: time.Now().Add(-2 * time.Minute)})
	w := call(t, h, "Bearer "+long)
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("2m past exp: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	if !strings.Contains(w.Body.String(), "expired") {
		t.Errorf("body does not say expired: %s", w.Body)
	}
}

func TestRotatedKeysKeepOldTokensValid(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	v := newVerifier(t, iss.Config("orders"))
	h := v.Handle(auth.Authenticated, whoami)
	before := iss.Customer(t, "ada", "orders")
	if w := call(t, h, "Bearer "+before); w.Code != http.StatusOK {
		t.Fatalf("before rotation: %d", w.Code)
	}
	iss.Rotate(t) // the verifier has cached the old key set only
	after := iss.Customer(t, "grace", "orders")
	for name, tok := range map[string]string{"signed before": before, "signed after": after} {
		if w := call(t, h, "Bearer "+tok); w.Code != http.StatusOK {
			t.Errorf("%s rotation: %d %s", name, w.Code, w.Body)
		}
	}
}

func TestRolesFromADottedClaimPath(t *testing.T) {
	t.Parallel()
	// Keycloak puts realm roles under realm_access.roles; the fake issuer
	// writes "roles", so point the path at a claim it also writes to show
	// the lookup, and at a missing one to show it grants nothing.
	iss := authtest.NewIssuer(t)
	cfg := iss.Config("orders")
	cfg.RolesClaim = "realm_access.roles"
	v := newVerifier(t, cfg)
	p, err := v.Verify(t.Context(), iss.Operator(t, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Roles) != 0 {
		t.Fatalf("roles from a missing path: %v", p.Roles)
	}
	if w := call(t, v.Handle(auth.AnyOf(auth.RoleOperator), whoami), "Bearer "+iss.Operator(t, "orders")); w.Code != http.StatusForbidden {
		t.Fatalf("operator role at the wrong path still let through: %d", w.Code)
	}
}

func TestUnreachableProviderIs503ThenRecovers(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	v := newVerifier(t, auth.Config{Issuer: "http://" + addr, Audience: "orders", RolesClaim: "roles"})
	w := call(t, v.Handle(auth.Authenticated, whoami), "Bearer x.y.z")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("provider down: %d Retry-After=%q, want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	if err := v.Check(t.Context()); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("Check: %v", err)
	}
}

func TestConfigValidateNamesTheVariable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  auth.Config
		want string
	}{
		{auth.Config{}, "AUTH_ISSUER"},
		{auth.Config{Issuer: "ftp://x"}, "AUTH_ISSUER"},
		{auth.Config{Issuer: "http://x", DiscoveryURL: "nope"}, "AUTH_DISCOVERY_URL"},
		{auth.Config{Issuer: "http://x", Leeway: time.Hour}, "AUTH_LEEWAY"},
	} {
		_, err := auth.NewVerifier(tc.cfg, "orders", auth.Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestClientCredentialsTransportAddsAndReusesAToken(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	iss.AddClient("orders", "orders-secret-0123456789")
	v := newVerifier(t, iss.Config("catalog"))
	callee := httptest.NewServer(v.Handle(auth.AnyOf(auth.RoleService), whoami))
	t.Cleanup(callee.Close)

	cc, err := auth.NewClientCredentials(auth.ClientConfig{Issuer: iss.URL, ClientID: "orders", ClientSecret: "orders-secret-0123456789"}, "catalog", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: cc}
	for range 3 {
		resp, err := hc.Get(callee.URL + "/v1/x")
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Sub   string   `json:"sub"`
			Roles []string `json:"roles"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || body.Sub != "orders" {
			t.Fatalf("status %d sub %q", resp.StatusCode, body.Sub)
		}
	}
	if n := iss.Issued(); n != 1 {
		t.Fatalf("%d tokens fetched for 3 calls, want 1 (reused until near expiry)", n)
	}

	bad, err := auth.NewClientCredentials(auth.ClientConfig{Issuer: iss.URL, ClientID: "orders", ClientSecret: "wrong"}, "catalog", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&http.Client{Transport: bad}).Get(callee.URL + "/v1/x") //nolint:bodyclose // err is asserted non-nil
	if !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("wrong secret: %v", err)
	}
}

func TestWithPrincipalRoundTrips(t *testing.T) {
	t.Parallel()
	if _, ok := auth.FromContext(context.Background()); ok {
		t.Fatal("empty context has a principal")
	}
	ctx := auth.WithPrincipal(context.Background(), auth.Principal{Subject: "ada", Roles: []string{auth.RoleCustomer}})
	p, ok := auth.FromContext(ctx)
	if !ok || p.Subject != "ada" || !p.Has(auth.RoleCustomer) || p.IsOperator() {
		t.Fatalf("%+v %v", p, ok)
	}
}

// TestDiscoveryURLReachesTheProviderUnderAnotherName is compose's case:
// tokens say iss=http://localhost:8090, the container reaches the
// provider as http://identity:8090. Here the issuer claims a host nobody
// listens on, and the service is pointed at the real address.
func TestDiscoveryURLReachesTheProviderUnderAnotherName(t *testing.T) {
	t.Parallel()
	real := authtest.NewIssuer(t)
	public := "http://shop.invalid:8090"
	real.SetPublicURL(public)
	real.AddClient("orders", "orders-secret-0123456789")
	v := newVerifier(t, auth.Config{Issuer: public, DiscoveryURL: real.URL, Audience: "orders", RolesClaim: "roles"})
	tok := real.Token(t, authtest.Claims{Issuer: public, Subject: "ada", Audience: []string{"orders"}, Roles: []string{auth.RoleCustomer}})
	if w := call(t, v.Handle(auth.Authenticated, whoami), "Bearer "+tok); w.Code != http.StatusOK {
		t.Fatalf("through DiscoveryURL: %d %s", w.Code, w.Body)
	}
	cc, err := auth.NewClientCredentials(auth.ClientConfig{Issuer: public, DiscoveryURL: real.URL, ClientID: "orders", ClientSecret: "orders-secret-0123456789"}, "catalog", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Token(t.Context()); err != nil {
		t.Fatalf("token through DiscoveryURL: %v", err)
	}
}

// TestIdentifyVerifiesBeforeRoutingAndRequireDoesNotVerifyAgain: Identify
// names the caller of a valid token without refusing anyone; Require
// takes that verification (here the clock moves past the token's expiry
// in between, and Require still accepts it) but applies its own policy;
// another verifier, or another token, is verified afresh.
func TestIdentifyVerifiesBeforeRoutingAndRequireDoesNotVerifyAgain(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	now := time.Now()
	v, err := auth.NewVerifier(iss.Config("orders"), "orders", auth.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tok := iss.Token(t, authtest.Claims{Subject: "ada", Audience: []string{"orders"}, Roles: []string{auth.RoleCustomer}, Expiry: now.Add(time.Minute)})
	r := httptest.NewRequest(http.MethodGet, "/v1/x", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	p, r2, ok := v.Identify(r)
	if !ok || p.Subject != "ada" {
		t.Fatalf("Identify: %+v %v", p, ok)
	}
	if _, ok := auth.FromContext(r2.Context()); ok {
		t.Fatal("Identify put the principal where a route without Require finds it")
	}
	now = now.Add(time.Hour) // the token has expired: only a fresh verification notices
	for policy, want := range map[string]int{auth.RoleCustomer: 200, auth.RoleOperator: 403} {
		w := httptest.NewRecorder()
		v.Handle(auth.AnyOf(policy), whoami).ServeHTTP(w, r2)
		if w.Code != want {
			t.Errorf("Require(%s) after Identify: %d, want %d: %s", policy, w.Code, want, w.Body)
		}
	}
	other, err := auth.NewVerifier(iss.Config("orders"), "orders", auth.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	if other.Handle(auth.Authenticated, whoami).ServeHTTP(w, r2); w.Code != http.StatusUnauthorized {
		t.Errorf("another verifier: %d, want 401 (it verifies afresh: expired)", w.Code)
	}
	if w := call(t, v.Handle(auth.Authenticated, whoami), "Bearer "+tok); w.Code != http.StatusUnauthorized {
		t.Errorf("a request without Identify's verification: %d, want 401 (expired by v's clock)", w.Code)
	}
	for _, authz := range []string{"", "Bearer junk"} {
		r := httptest.NewRequest(http.MethodGet, "/v1/x", nil)
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		if _, r2, ok := v.Identify(r); ok || r2 != r {
			t.Errorf("Identify(%q): ok %v, request replaced %v; want neither", authz, ok, r2 != r)
		}
	}
}
