package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// CodeFlow signs people in to a web application that keeps their tokens
// on its server (a backend for frontend): the OpenID Connect authorization
// code flow of a confidential client, with PKCE (S256) and a nonce as
// well, as OAuth 2.1 asks of every client. The browser only ever sees the
// code, which is useless without the client secret and the verifier.
//
// The provider is discovered on first use (it may start after the app);
// the authorization endpoint is the one the discovery document publishes
// (the browser goes there), the token endpoint and keys are fetched
// through DiscoveryURL when it is set (ClientConfig).
type CodeFlow struct {
	cfg         ClientConfig
	redirectURL string
	scopes      []string
	hc          *http.Client

	mu       sync.Mutex
	oauth    *oauth2.Config
	idTokens *oidc.IDTokenVerifier
}

// Identity is what a verified ID token says about the person.
type Identity struct {
	Subject string
	Email   string
	Name    string
}

// NewCodeFlow returns the flow of cfg's client with redirectURL (its
// callback, registered at the provider exactly). scopes are requested
// after "openid" (e.g. profile, email, offline_access for a refresh
// token). hc fetches discovery, keys and tokens (nil: a 5s timeout).
func NewCodeFlow(cfg ClientConfig, redirectURL string, scopes []string, hc *http.Client) (*CodeFlow, error) {
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if redirectURL == "" {
		return nil, errors.New("code flow: a redirect URL is required")
	}
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	return &CodeFlow{cfg: cfg, redirectURL: redirectURL, scopes: append([]string{oidc.ScopeOpenID}, scopes...), hc: hc}, nil
}

func (f *CodeFlow) discover(ctx context.Context) (*oauth2.Config, *oidc.IDTokenVerifier, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.oauth != nil {
		return f.oauth, f.idTokens, nil
	}
	p, err := discover(ctx, f.hc, f.cfg)
	if err != nil {
		return nil, nil, err
	}
	var claims struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := p.Claims(&claims); err != nil {
		return nil, nil, fmt.Errorf("%w: discovery document of %s: %w", ErrUnavailable, f.cfg.Issuer, err)
	}
	ep := p.Endpoint()
	f.oauth = &oauth2.Config{
		ClientID:     f.cfg.ClientID,
		ClientSecret: f.cfg.ClientSecret,
		RedirectURL:  f.redirectURL,
		Scopes:       f.scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   ep.AuthURL, // the browser's way in: as published
			TokenURL:  rewriteEndpoint(f.cfg.Issuer, f.cfg.DiscoveryURL, ep.TokenURL),
			AuthStyle: oauth2.AuthStyleInHeader,
		},
	}
	// The key set lives as long as the flow, not the request that
	// happened to discover.
	kctx := oidc.ClientContext(context.WithoutCancel(ctx), f.hc)
	keys := oidc.NewRemoteKeySet(kctx, rewriteEndpoint(f.cfg.Issuer, f.cfg.DiscoveryURL, claims.JWKS))
	f.idTokens = oidc.NewVerifier(f.cfg.Issuer, keys, &oidc.Config{ClientID: f.cfg.ClientID})
	return f.oauth, f.idTokens, nil
}

// AuthCodeURL is where to send the browser: the provider's sign-in with
// state, nonce and the S256 challenge of verifier (oauth2.GenerateVerifier);
// keep all three on the server side of the session until the callback.
func (f *CodeFlow) AuthCodeURL(ctx context.Context, state, nonce, verifier string) (string, error) {
	oc, _, err := f.discover(ctx)
	if err != nil {
		return "", err
	}
	return oc.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), nil
}

// Exchange redeems the callback's code with verifier, verifies the ID
// token (issuer, audience, expiry, signature, nonce) and returns the
// tokens and who signed in.
func (f *CodeFlow) Exchange(ctx context.Context, code, nonce, verifier string) (*oauth2.Token, Identity, error) {
	oc, v, err := f.discover(ctx)
	if err != nil {
		return nil, Identity{}, err
	}
	tok, err := oc.Exchange(context.WithValue(ctx, oauth2.HTTPClient, f.hc), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, Identity{}, fmt.Errorf("redeem the code: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, Identity{}, errors.New("the token response has no id_token")
	}
	idt, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, Identity{}, fmt.Errorf("ID token: %w", err)
	}
	if idt.Nonce != nonce {
		return nil, Identity{}, errors.New("ID token: nonce does not match the sign-in's")
	}
	var c struct {
		Email string `json:"email"`
		Name  string `json:"name"`
	}
	if err := idt.Claims(&c); err != nil {
		return nil, Identity{}, fmt.Errorf("ID token claims: %w", err)
	}
	return tok, Identity{Subject: idt.Subject, Email: c.Email, Name: c.Name}, nil
}

// Refresh returns tok when it is valid for another minute, and otherwise
// a new token from its refresh token (an error when it has none or the
// provider refuses it: sign in again).
func (f *CodeFlow) Refresh(ctx context.Context, tok *oauth2.Token) (*oauth2.Token, error) {
	if tok.Valid() && time.Until(tok.Expiry) > time.Minute {
		return tok, nil
	}
	if tok.RefreshToken == "" {
		return nil, errors.New("the session has expired and has no refresh token")
	}
	oc, _, err := f.discover(ctx)
	if err != nil {
		return nil, err
	}
	stale := *tok
	stale.Expiry = time.Unix(1, 0) // force the refresh
	nt, err := oc.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, f.hc), &stale).Token()
	if err != nil {
		return nil, fmt.Errorf("refresh the session: %w", err)
	}
	return nt, nil
}
