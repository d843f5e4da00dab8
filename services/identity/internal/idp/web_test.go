package idp_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/services/identity/identityapi"
	"github.com/shopfloor/shopfloor/services/identity/internal/idp"
)

const (
	webSecret   = "web-secret-0123456789"
	webCallback = "http://127.0.0.1:8000/auth/callback"
)

// startWithWeb starts a provider with the web storefront's client.
func startWithWeb(t *testing.T) *op {
	t.Helper()
	return startWith(t, func(c *idp.Config) {
		c.ClientSecrets = maps.Clone(c.ClientSecrets)
		c.ClientSecrets[identityapi.ClientWeb] = webSecret
		c.WebRedirectURIs = []string{webCallback}
	})
}

// webFlow is the storefront's side (pkg/auth.CodeFlow) against o.
func webFlow(t *testing.T, o *op, secret, redirect string) *auth.CodeFlow {
	t.Helper()
	f, err := auth.NewCodeFlow(auth.ClientConfig{Issuer: o.issuer, ClientID: identityapi.ClientWeb, ClientSecret: secret},
		redirect, []string{"profile", "email", "offline_access"}, o.hc)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestWebClientSignsInWithCodeAndPKCE: the storefront's confidential
// client gets a person's tokens through the sign-in form (code + PKCE +
// nonce, client_secret_basic), the ID token names the person, the access
// token is for the public APIs and "web", and the refresh token renews it.
func TestWebClientSignsInWithCodeAndPKCE(t *testing.T) {
	t.Parallel()
	o := startWithWeb(t)
	ctx := context.Background()
	f := webFlow(t, o, webSecret, webCallback)
	verifier, state, nonce := oauth2.GenerateVerifier(), "state-1", "nonce-1"
	authURL, err := f.AuthCodeURL(ctx, state, nonce, verifier)
	if err != nil {
		t.Fatal(err)
	}
	code, err := identityapi.SignIn(ctx, o.hc, authURL, webCallback, state, identityapi.UserAda, password)
	if err != nil {
		t.Fatal(err)
	}
	tok, id, err := f.Exchange(ctx, code, nonce, verifier)
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != identityapi.UserAda || id.Email == "" || id.Name == "" {
		t.Errorf("identity %+v, want ada with e-mail and name", id)
	}
	c := verify(t, o.verifier(t, identityapi.ClientWeb), tok.AccessToken)
	if !slices.Contains(c.Roles, identityapi.RoleCustomer) {
		t.Errorf("roles %v, want customer", c.Roles)
	}
	for _, aud := range append(identityapi.PublicAudiences(), identityapi.ClientWeb) {
		verify(t, o.verifier(t, aud), tok.AccessToken) // fails the test if aud is missing
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token (offline_access was asked for)")
	}
	expired := *tok
	expired.AccessToken, expired.Expiry = "stale", expired.Expiry.Add(-24*3600e9)
	nt, err := f.Refresh(ctx, &expired)
	if err != nil {
		t.Fatal(err)
	}
	if nt.AccessToken == "" || nt.AccessToken == "stale" || nt.RefreshToken == tok.RefreshToken {
		t.Errorf("refresh gave access %q…, refresh rotated %v", nt.AccessToken[:min(10, len(nt.AccessToken))], nt.RefreshToken != tok.RefreshToken)
	}
}

// TestWebClientRefusesWhatAnAttackerWouldTry: a code redeemed without the
// PKCE verifier, with the wrong secret, or twice, a mismatched nonce, and
// a redirect URI that is not registered all fail.
func TestWebClientRefusesWhatAnAttackerWouldTry(t *testing.T) {
	t.Parallel()
	o := startWithWeb(t)
	ctx := context.Background()
	signIn := func(f *auth.CodeFlow, redirect, verifier string) (string, error) {
		authURL, err := f.AuthCodeURL(ctx, "st", "n", verifier)
		if err != nil {
			t.Fatal(err)
		}
		return identityapi.SignIn(ctx, o.hc, authURL, redirect, "st", identityapi.UserGrace, password)
	}
	good := webFlow(t, o, webSecret, webCallback)
	v := oauth2.GenerateVerifier()

	code, err := signIn(good, webCallback, v)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := good.Exchange(ctx, code, "n", oauth2.GenerateVerifier()); err == nil {
		t.Error("a code was redeemed with another PKCE verifier")
	}

	code, _ = signIn(good, webCallback, v)
	if _, _, err := webFlow(t, o, "wrong-secret-0123456789", webCallback).Exchange(ctx, code, "n", v); err == nil {
		t.Error("a code was redeemed with a wrong client secret")
	}

	code, _ = signIn(good, webCallback, v)
	if _, _, err := good.Exchange(ctx, code, "another-nonce", v); err == nil || !strings.Contains(err.Error(), "nonce") {
		t.Errorf("a mismatched nonce: %v, want a nonce error", err)
	}
	if _, _, err := good.Exchange(ctx, code, "n", v); err == nil {
		t.Error("a code was redeemed twice")
	}

	evil := "http://127.0.0.1:9999/auth/callback"
	if _, err := signIn(webFlow(t, o, webSecret, evil), evil, v); err == nil {
		t.Error("sign-in redirected to an unregistered redirect URI")
	}
}

// TestWebClientIsRegisteredOnlyWithRedirectURIs: no redirect URIs, no web
// client; redirect URIs without its secret, or its secret without redirect
// URIs, is a configuration error that names the variable.
func TestWebClientIsRegisteredOnlyWithRedirectURIs(t *testing.T) {
	t.Parallel()
	withWeb := maps.Clone(secrets)
	withWeb[identityapi.ClientWeb] = webSecret
	for _, tc := range []struct {
		name      string
		secrets   map[string]string
		redirects []string
		want      string
	}{
		{"redirects without secret", secrets, []string{webCallback}, `no secret for client "web"`},
		{"secret without redirects", withWeb, nil, "IDENTITY_WEB_REDIRECT_URIS"},
	} {
		if err := idp.CheckClientSecrets(tc.secrets, tc.redirects); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := idp.CheckClientSecrets(secrets, nil); err != nil {
		t.Errorf("no web client: %v", err)
	}
	o := start(t, "")
	f := webFlow(t, o, webSecret, webCallback)
	authURL, err := f.AuthCodeURL(context.Background(), "st", "n", oauth2.GenerateVerifier())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identityapi.SignIn(context.Background(), o.hc, authURL, webCallback, "st", identityapi.UserAda, password); err == nil {
		t.Error("a provider without IDENTITY_WEB_REDIRECT_URIS signed someone in through the web client")
	}
}
