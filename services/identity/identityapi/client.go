package identityapi

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Token is what the provider's token endpoint answered.
type Token struct {
	// AccessToken is the bearer JWT to send as "Authorization: Bearer …".
	AccessToken string
	// Expiry is when AccessToken stops being accepted (from expires_in).
	Expiry time.Time
	// RefreshToken gets a new access token (UserToken only; single use:
	// each refresh answers a new one).
	RefreshToken string
	// IDToken is the OpenID Connect ID token (UserToken only).
	IDToken string
}

// ErrSignInRefused is returned by UserToken when the provider showed its
// sign-in form again after the user name and password were posted: the
// user is unknown or the password is wrong (the provider does not say
// which).
var ErrSignInRefused = errors.New("identity: sign-in refused: unknown user or wrong password")

// userScopes are the scopes UserToken asks for.
var userScopes = []string{"openid", "profile", "email", "offline_access"}

// maxPage bounds what UserToken reads of any page.
const maxPage = 1 << 20

// UserToken signs username in at the provider issuer as a browser would,
// through the authorization code flow with PKCE (S256) of the public
// client clientID (normally ClientCLI), and returns the tokens:
//
//  1. discovery (issuer + /.well-known/openid-configuration);
//  2. GET the authorization endpoint, following redirects to the sign-in
//     form;
//  3. POST the form with username and password (and its hidden fields);
//  4. follow redirects until one points at CLIRedirectURI, and read code
//     (and check state) from its Location: nothing needs to listen there;
//  5. exchange the code and the PKCE verifier at the token endpoint.
//
// A wrong password or an unknown user is ErrSignInRefused. An error the
// provider redirects back (e.g. "invalid_request") is returned with its
// description. hc may be nil (http.DefaultClient); its redirect policy is
// not used, its transport, jar and timeout are.
func UserToken(ctx context.Context, hc *http.Client, issuer, clientID, username, password string) (Token, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	meta, err := discover(ctx, hc, issuer)
	if err != nil {
		return Token{}, err
	}
	conf := oauth2.Config{
		ClientID:    clientID,
		Endpoint:    oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: CLIRedirectURI,
		Scopes:      userScopes,
	}
	verifier := oauth2.GenerateVerifier()
	state, err := randomString()
	if err != nil {
		return Token{}, err
	}
	code, err := signIn(ctx, hc, conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), state, username, password)
	if err != nil {
		return Token{}, err
	}
	tok, err := conf.Exchange(context.WithValue(ctx, oauth2.HTTPClient, hc), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return Token{}, fmt.Errorf("identity: exchange the code at %s: %w", meta.TokenEndpoint, err)
	}
	idToken, _ := tok.Extra("id_token").(string)
	return Token{AccessToken: tok.AccessToken, Expiry: tok.Expiry, RefreshToken: tok.RefreshToken, IDToken: idToken}, nil
}

// ServiceToken gets an access token for the service client clientID by
// the client_credentials grant (secret in HTTP Basic auth). audience, when
// not empty, asks for a token for that one service (sent as "audience",
// Auth0's parameter); the provider refuses an audience the client may not
// call (invalid_target). hc may be nil.
func ServiceToken(ctx context.Context, hc *http.Client, issuer, clientID, secret, audience string) (Token, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	meta, err := discover(ctx, hc, issuer)
	if err != nil {
		return Token{}, err
	}
	conf := clientcredentials.Config{ClientID: clientID, ClientSecret: secret, TokenURL: meta.TokenEndpoint,
		AuthStyle: oauth2.AuthStyleInHeader}
	if audience != "" {
		conf.EndpointParams = url.Values{"audience": {audience}}
	}
	tok, err := conf.Token(context.WithValue(ctx, oauth2.HTTPClient, hc))
	if err != nil {
		return Token{}, fmt.Errorf("identity: client credentials for %s at %s: %w", clientID, meta.TokenEndpoint, err)
	}
	return Token{AccessToken: tok.AccessToken, Expiry: tok.Expiry}, nil
}

type metadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
}

func discover(ctx context.Context, hc *http.Client, issuer string) (metadata, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return metadata{}, fmt.Errorf("identity: issuer %q: %w", issuer, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return metadata{}, fmt.Errorf("identity: discovery: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPage))
	if err != nil {
		return metadata{}, fmt.Errorf("identity: discovery: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return metadata{}, fmt.Errorf("identity: discovery: %s answered %s", u, resp.Status)
	}
	var m metadata
	if err := json.Unmarshal(body, &m); err != nil {
		return metadata{}, fmt.Errorf("identity: discovery: %s: %w", u, err)
	}
	if m.Issuer != issuer {
		return metadata{}, fmt.Errorf("identity: discovery: %s names issuer %q, not %q", u, m.Issuer, issuer)
	}
	if m.AuthorizationEndpoint == "" || m.TokenEndpoint == "" {
		return metadata{}, fmt.Errorf("identity: discovery: %s lacks the authorization or token endpoint", u)
	}
	return m, nil
}

// signIn is SignIn for ClientCLI's redirect URI.
func signIn(ctx context.Context, hc *http.Client, authURL, state, username, password string) (string, error) {
	return SignIn(ctx, hc, authURL, CLIRedirectURI, state, username, password)
}

// SignIn is a person at the sandbox provider's sign-in form, for tests
// and tools: it walks from the authorization URL (authURL, with state)
// to the redirect to redirectURI, posting the form once with username
// and password on the way, and returns the code the redirect carries.
// ErrSignInRefused: the form came back (wrong password or unknown user).
func SignIn(ctx context.Context, hc *http.Client, authURL, redirectURI, state, username, password string) (string, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	nc := *hc
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	redirect, err := url.Parse(redirectURI)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return "", err
	}
	posted := false
	for range 10 {
		resp, err := nc.Do(req)
		if err != nil {
			return "", fmt.Errorf("identity: sign-in: %w", err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxPage))
		_ = resp.Body.Close()
		if err != nil {
			return "", fmt.Errorf("identity: sign-in: %s: %w", req.URL.Redacted(), err)
		}
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			loc, err := resp.Location()
			if err != nil {
				return "", fmt.Errorf("identity: sign-in: %s answered %s without a usable Location: %w", req.URL.Redacted(), resp.Status, err)
			}
			if sameRedirect(loc, redirect) {
				return codeFrom(loc, state)
			}
			req, err = http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
			if err != nil {
				return "", err
			}
		case resp.StatusCode == http.StatusOK:
			f, ok := findForm(body)
			if !ok {
				return "", fmt.Errorf("identity: sign-in: %s answered a page without a sign-in form", req.URL.Redacted())
			}
			if posted {
				return "", ErrSignInRefused
			}
			posted = true
			action, err := req.URL.Parse(f.action)
			if err != nil {
				return "", fmt.Errorf("identity: sign-in form action %q: %w", f.action, err)
			}
			f.values.Set(f.userField, username)
			f.values.Set(f.passwordField, password)
			req, err = http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(f.values.Encode()))
			if err != nil {
				return "", err
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		default:
			return "", fmt.Errorf("identity: sign-in: %s answered %s: %s", req.URL.Redacted(), resp.Status, snippet(body))
		}
	}
	return "", errors.New("identity: sign-in: too many redirects")
}

// sameRedirect reports whether loc is the registered redirect URI; for a
// loopback redirect the port does not matter (RFC 8252, 7.3).
func sameRedirect(loc, redirect *url.URL) bool {
	return loc.Scheme == redirect.Scheme && loc.Hostname() == redirect.Hostname() && loc.Path == redirect.Path
}

func codeFrom(loc *url.URL, state string) (string, error) {
	q := loc.Query()
	if e := q.Get("error"); e != "" {
		return "", fmt.Errorf("identity: authorization refused: %s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != state {
		return "", errors.New("identity: authorization response has the wrong state")
	}
	code := q.Get("code")
	if code == "" {
		return "", errors.New("identity: authorization response has no code")
	}
	return code, nil
}

type form struct {
	action                   string
	values                   url.Values
	userField, passwordField string
}

// findForm finds the first form with a password field, its action, its
// hidden fields and the names of its user and password fields.
func findForm(page []byte) (form, bool) {
	doc, err := html.Parse(strings.NewReader(string(page)))
	if err != nil {
		return form{}, false
	}
	var found *form
	var walk func(n *html.Node, in *form)
	walk = func(n *html.Node, in *form) {
		if found != nil {
			return
		}
		if n.Type == html.ElementNode && n.Data == "form" {
			in = &form{action: attr(n, "action"), values: url.Values{}}
		}
		if in != nil && n.Type == html.ElementNode && n.Data == "input" {
			name := attr(n, "name")
			switch strings.ToLower(attr(n, "type")) {
			case "hidden":
				in.values.Set(name, attr(n, "value"))
			case "password":
				in.passwordField = name
			case "", "text", "email":
				if in.userField == "" {
					in.userField = name
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, in)
		}
		if n.Type == html.ElementNode && n.Data == "form" && in.passwordField != "" && in.userField != "" && found == nil {
			found = in
		}
	}
	walk(doc, nil)
	if found == nil {
		return form{}, false
	}
	return *found, true
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func snippet(body []byte) string {
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func randomString() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
