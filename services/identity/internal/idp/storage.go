package idp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/shopfloor/shopfloor/services/identity/identityapi"
)

// Lifetimes of the short-lived records, and the bound on sign-ins in
// progress (a flood of authorize requests cannot grow memory without end).
const (
	AuthRequestTTL         = 10 * time.Minute
	CodeTTL                = time.Minute
	MaxPendingAuthRequests = 10_000
)

var (
	// ErrSignInExpired: the auth request is unknown, expired or used.
	ErrSignInExpired = errors.New("this sign-in has expired or was already used; start again from your application")
	// ErrBadCredentials: unknown user or wrong password (never which).
	ErrBadCredentials = errors.New("unknown user or wrong password")
)

// Storage is the provider's op.Storage, in memory and guarded by one
// mutex: users and clients (fixed at start), auth requests and codes
// (minutes), refresh tokens (RefreshTokenTTL, rotated on each use), and
// the KeyRing. Access tokens are self-contained JWTs and are not stored,
// so they cannot be revoked: they end at "exp". A restart forgets sign-ins
// in progress and refresh tokens (not the keys when the KeyRing persists
// them).
type Storage struct {
	keys     *KeyRing
	clients  map[string]*client
	users    map[string]identityapi.User
	password [32]byte // SHA-256 of the demo password
	// synthetic, when set, makes every username with this prefix a
	// customer (Config.SyntheticCustomerPrefix).
	synthetic  string
	accessTTL  time.Duration
	refreshTTL time.Duration
	now        func() time.Time

	mu           sync.Mutex
	authRequests map[string]*authRequest
	codes        map[string]code
	refresh      map[string]*refreshToken
}

type code struct {
	authRequestID string
	expires       time.Time
}

func newStorage(keys *KeyRing, clients map[string]*client, password, syntheticPrefix string, accessTTL, refreshTTL time.Duration, now func() time.Time) *Storage {
	users := map[string]identityapi.User{}
	for _, u := range identityapi.DemoUsers() {
		users[u.Username] = u
	}
	return &Storage{keys: keys, clients: clients, users: users, synthetic: syntheticPrefix, password: sha256.Sum256([]byte(password)),
		accessTTL: accessTTL, refreshTTL: refreshTTL, now: now,
		authRequests: map[string]*authRequest{}, codes: map[string]code{}, refresh: map[string]*refreshToken{}}
}

// Prune deletes expired auth requests, codes and refresh tokens and
// returns how many records it deleted. The provider runs it every minute.
func (s *Storage) Prune() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := 0
	for id, ar := range s.authRequests {
		if now.After(ar.expires) {
			delete(s.authRequests, id)
			n++
		}
	}
	for c, v := range s.codes {
		if now.After(v.expires) {
			delete(s.codes, c)
			n++
		}
	}
	for t, rt := range s.refresh {
		if now.After(rt.expires) {
			delete(s.refresh, t)
			n++
		}
	}
	return n
}

// Pending returns the number of stored auth requests, codes and refresh
// tokens (for tests and metrics).
func (s *Storage) Pending() (authRequests, codes, refreshTokens int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.authRequests), len(s.codes), len(s.refresh)
}

// CheckPassword reports whether username is a demo user and password is
// the demo password, taking the same time for an unknown user as for a
// wrong password.
func (s *Storage) CheckPassword(username, password string) bool {
	h := sha256.Sum256([]byte(password))
	ok := subtle.ConstantTimeCompare(h[:], s.password[:]) == 1
	_, known := s.user(username)
	return ok && known
}

// user returns a demo user, or a synthetic customer when username has
// the synthetic prefix and a safe shape (letters, digits, '-', '_', '.';
// at most 64 characters).
func (s *Storage) user(username string) (identityapi.User, bool) {
	if u, ok := s.users[username]; ok {
		return u, true
	}
	if s.synthetic == "" || !strings.HasPrefix(username, s.synthetic) || len(username) > 64 || len(username) == len(s.synthetic) {
		return identityapi.User{}, false
	}
	for _, r := range username {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_' && r != '.' {
			return identityapi.User{}, false
		}
	}
	return identityapi.User{Username: username, Name: username, Email: username + "@example.com", Roles: []string{identityapi.RoleCustomer}}, true
}

// authRequestForLogin returns a copy of a pending (not done, not expired)
// auth request.
func (s *Storage) authRequestForLogin(id string) (authRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.authRequests[id]
	if !ok || ar.done || s.now().After(ar.expires) {
		return authRequest{}, ErrSignInExpired
	}
	return *ar, nil
}

// CompleteLogin signs username in for the auth request id: ErrBadCredentials
// or ErrSignInExpired otherwise.
func (s *Storage) CompleteLogin(id, username, password string) error {
	if !s.CheckPassword(username, password) {
		if _, err := s.authRequestForLogin(id); err != nil {
			return err
		}
		return ErrBadCredentials
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.authRequests[id]
	now := s.now()
	if !ok || ar.done || now.After(ar.expires) {
		return ErrSignInExpired
	}
	ar.subject, ar.authTime, ar.done = username, now, true
	return nil
}

// CreateAuthRequest stores a validated authorization request. A public
// client must send a PKCE S256 code_challenge (RFC 9700 requires PKCE for
// public clients; the library alone checks it only at the token
// endpoint). prompt=none cannot succeed: there are no sessions.
func (s *Storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	c, ok := s.clients[req.ClientID]
	if !ok {
		return nil, oidc.ErrInvalidClient()
	}
	if c.public && (req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256) {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE is required for this client: send code_challenge with code_challenge_method=S256")
	}
	if slices.Contains(req.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired()
	}
	id, err := randomID()
	if err != nil {
		return nil, err
	}
	now := s.now()
	ar := &authRequest{
		id: id, expires: now.Add(AuthRequestTTL),
		clientID: req.ClientID, redirectURI: req.RedirectURI, state: req.State, nonce: req.Nonce,
		scopes: slices.Clone(req.Scopes), responseType: req.ResponseType, responseMode: req.ResponseMode,
		audience: slices.Clone(c.audiences),
	}
	if req.CodeChallenge != "" {
		ar.challenge = &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.authRequests) >= MaxPendingAuthRequests {
		return nil, oidc.ErrServerError().WithDescription("too many sign-ins in progress; try again in a few minutes")
	}
	s.authRequests[id] = ar
	cp := *ar
	return &cp, nil
}

// AuthRequestByID returns a copy of an unexpired auth request.
func (s *Storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.authRequests[id]
	if !ok || s.now().After(ar.expires) {
		return nil, ErrSignInExpired
	}
	cp := *ar
	return &cp, nil
}

// AuthRequestByCode returns the auth request of an unexpired code.
func (s *Storage) AuthRequestByCode(ctx context.Context, c string) (op.AuthRequest, error) {
	s.mu.Lock()
	v, ok := s.codes[c]
	s.mu.Unlock()
	if !ok || s.now().After(v.expires) {
		return nil, errors.New("unknown or expired code")
	}
	return s.AuthRequestByID(ctx, v.authRequestID)
}

// SaveAuthCode binds a code to a signed-in auth request for CodeTTL.
func (s *Storage) SaveAuthCode(_ context.Context, id, c string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.authRequests[id]
	if !ok || !ar.done {
		return ErrSignInExpired
	}
	exp := s.now().Add(CodeTTL)
	s.codes[c] = code{authRequestID: id, expires: exp}
	if exp.Before(ar.expires) {
		ar.expires = exp
	}
	return nil
}

// DeleteAuthRequest ends an auth request and its codes: a code is used
// once.
func (s *Storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authRequests, id)
	for c, v := range s.codes {
		if v.authRequestID == id {
			delete(s.codes, c)
		}
	}
	return nil
}

// CreateAccessToken returns the id and expiry of a new access token.
func (s *Storage) CreateAccessToken(context.Context, op.TokenRequest) (string, time.Time, error) {
	id, err := randomID()
	if err != nil {
		return "", time.Time{}, err
	}
	return id, s.now().Add(s.accessTTL), nil
}

// CreateAccessAndRefreshTokens is CreateAccessToken plus a refresh token:
// a new one after a code exchange, a replacement (the old one is used up)
// after a refresh.
func (s *Storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	id, exp, err := s.CreateAccessToken(ctx, req)
	if err != nil {
		return "", "", time.Time{}, err
	}
	token, err := randomID()
	if err != nil {
		return "", "", time.Time{}, err
	}
	now := s.now()
	rt := &refreshToken{token: token, subject: req.GetSubject(), audience: slices.Clone(req.GetAudience()),
		scopes: slices.Clone(req.GetScopes()), expires: now.Add(s.refreshTTL)}
	switch r := req.(type) {
	case *authRequest:
		rt.clientID, rt.authTime, rt.amr = r.clientID, r.authTime, r.GetAMR()
	case *refreshTokenRequest:
		rt.clientID, rt.authTime, rt.amr = r.clientID, r.authTime, r.amr
	default:
		return "", "", time.Time{}, fmt.Errorf("refresh tokens are not issued for %T", req)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if current != "" {
		old, ok := s.refresh[current]
		if !ok || now.After(old.expires) {
			return "", "", time.Time{}, op.ErrInvalidRefreshToken
		}
		delete(s.refresh, current)
	}
	s.refresh[token] = rt
	return id, token, exp, nil
}

// TokenRequestByRefreshToken returns the grant behind an unexpired refresh
// token.
func (s *Storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[token]
	if !ok || s.now().After(rt.expires) {
		return nil, oidc.ErrInvalidGrant().WithDescription("unknown or expired refresh token")
	}
	return &refreshTokenRequest{refreshToken: *rt, current: slices.Clone(rt.scopes)}, nil
}

// TerminateSession drops the user's refresh tokens for the client (there
// are no browser sessions to end).
func (s *Storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, rt := range s.refresh {
		if rt.subject == userID && rt.clientID == clientID {
			delete(s.refresh, t)
		}
	}
	return nil
}

// RevokeToken revokes a refresh token. Access tokens are JWTs that end at
// their "exp"; revoking one is accepted and does nothing (RFC 7009 allows
// that).
func (s *Storage) RevokeToken(_ context.Context, token, userID, clientID string) *oidc.Error {
	if userID != "" {
		return nil // an access token id
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[token]
	if !ok {
		return nil
	}
	if rt.clientID != clientID {
		return oidc.ErrInvalidClient().WithDescription("the token was not issued to this client")
	}
	delete(s.refresh, token)
	return nil
}

// GetRefreshTokenInfo names the user and id of a refresh token.
func (s *Storage) GetRefreshTokenInfo(_ context.Context, clientID, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[token]
	if !ok || rt.clientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.subject, rt.token, nil
}

// SigningKey is the KeyRing's signing key.
func (s *Storage) SigningKey(context.Context) (op.SigningKey, error) { return s.keys.Signing(), nil }

// SignatureAlgorithms is RS256 only.
func (s *Storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

// KeySet is the JWKS: the signing key and the retired keys still kept.
func (s *Storage) KeySet(context.Context) ([]op.Key, error) { return s.keys.Published(), nil }

// GetClientByClientID returns a registered client.
func (s *Storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("unknown client %q", id)
	}
	return c, nil
}

// AuthorizeClientIDSecret checks a confidential client's secret.
func (s *Storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || !c.checkSecret(secret) {
		return errors.New("unknown client or wrong secret")
	}
	return nil
}

// ClientCredentials authenticates a service client for the
// client_credentials grant.
func (s *Storage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	if err := s.AuthorizeClientIDSecret(ctx, id, secret); err != nil {
		return nil, err
	}
	return s.clients[id], nil
}

// ClientCredentialsTokenRequest is a service's token request: sub = the
// client, aud = the audience it asked for (RequestedAudience) when it may
// call it, else all it may call.
func (s *Storage) ClientCredentialsTokenRequest(ctx context.Context, id string, scopes []string) (op.TokenRequest, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, oidc.ErrInvalidClient()
	}
	aud := slices.Clone(c.audiences)
	if want := requestedAudience(ctx); want != "" {
		if !slices.Contains(c.audiences, want) {
			return nil, oidc.ErrInvalidTarget().WithDescription("client %s may not get tokens for %q (allowed: %s)",
				id, want, strings.Join(c.audiences, ", "))
		}
		aud = []string{want}
	}
	return &serviceRequest{clientID: id, audience: aud, scopes: scopes}, nil
}

// SetUserinfoFromScopes is deprecated by the library; SetUserinfoFromRequest
// does the work.
func (s *Storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's claims by scope: profile
// (name, preferred_username), email (email, email_verified), and the roles.
func (s *Storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	u, ok := s.user(req.GetSubject())
	if !ok {
		return fmt.Errorf("unknown user %q", req.GetSubject())
	}
	fillUserinfo(info, u, scopes)
	return nil
}

// SetUserinfoFromToken answers /userinfo for a person's access token.
func (s *Storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, _, subject, _ string) error {
	u, ok := s.user(subject)
	if !ok {
		return errors.New("no user info for this token")
	}
	fillUserinfo(info, u, []string{oidc.ScopeProfile, oidc.ScopeEmail})
	return nil
}

// SetIntrospectionFromToken answers introspection (the library has
// verified the token's signature and expiry).
func (s *Storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, _ string) error {
	resp.Subject, resp.JWTID = subject, tokenID
	if u, ok := s.user(subject); ok {
		info := new(oidc.UserInfo)
		fillUserinfo(info, u, []string{oidc.ScopeProfile, oidc.ScopeEmail})
		resp.SetUserInfo(info)
		resp.Username = u.Username
	}
	return nil
}

// GetPrivateClaimsFromScopes is the library's fallback; see
// GetPrivateClaimsFromRequest.
func (s *Storage) GetPrivateClaimsFromScopes(_ context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	if u, ok := s.user(userID); ok {
		return userClaims(u, scopes), nil
	}
	if userID == clientID {
		return serviceClaims(scopes), nil
	}
	return nil, fmt.Errorf("unknown subject %q", userID)
}

// GetPrivateClaimsFromRequest adds the access token's private claims:
// roles, scope, and a person's email and name.
func (s *Storage) GetPrivateClaimsFromRequest(_ context.Context, req op.TokenRequest, _ []string) (map[string]any, error) {
	if r, ok := req.(*serviceRequest); ok {
		return serviceClaims(r.scopes), nil
	}
	u, ok := s.user(req.GetSubject())
	if !ok {
		return nil, fmt.Errorf("unknown user %q", req.GetSubject())
	}
	return userClaims(u, req.GetScopes()), nil
}

// GetKeyByIDAndClientID: JWT client authentication is not offered.
func (s *Storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT profile client authentication is not supported")
}

// ValidateJWTProfileScopes: the JWT profile grant is not offered.
func (s *Storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("the JWT profile grant is not supported")
}

// Health is always nil: everything is in memory.
func (s *Storage) Health(context.Context) error { return nil }

func userClaims(u identityapi.User, scopes []string) map[string]any {
	c := map[string]any{
		identityapi.ClaimRoles: slices.Clone(u.Roles),
		identityapi.ClaimEmail: u.Email,
		identityapi.ClaimName:  u.Name,
	}
	if len(scopes) > 0 {
		c[identityapi.ClaimScope] = strings.Join(scopes, " ")
	}
	return c
}

func serviceClaims(scopes []string) map[string]any {
	c := map[string]any{identityapi.ClaimRoles: []string{identityapi.RoleService}}
	if len(scopes) > 0 {
		c[identityapi.ClaimScope] = strings.Join(scopes, " ")
	}
	return c
}

func fillUserinfo(info *oidc.UserInfo, u identityapi.User, scopes []string) {
	info.Subject = u.Username
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeProfile:
			info.Name, info.PreferredUsername = u.Name, u.Username
		case oidc.ScopeEmail:
			info.Email, info.EmailVerified = u.Email, true
		}
	}
	info.AppendClaims(identityapi.ClaimRoles, slices.Clone(u.Roles))
}

// randomID is 32 random bytes, base64url: auth request ids, token ids and
// refresh tokens.
func randomID() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// authRequest is an op.AuthRequest. Storage hands out copies, so the
// library never reads a record the login handler is changing.
type authRequest struct {
	id                    string
	expires               time.Time
	clientID, redirectURI string
	state, nonce          string
	scopes                []string
	responseType          oidc.ResponseType
	responseMode          oidc.ResponseMode
	challenge             *oidc.CodeChallenge
	audience              []string
	subject               string
	authTime              time.Time
	done                  bool
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAudience() []string                 { return a.audience }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

// GetAMR is "pwd" once the user signed in with a password (RFC 8176).
func (a *authRequest) GetAMR() []string {
	if a.done {
		return []string{"pwd"}
	}
	return nil
}

type refreshToken struct {
	token    string
	clientID string
	subject  string
	audience []string
	scopes   []string
	amr      []string
	authTime time.Time
	expires  time.Time
}

// refreshTokenRequest is an op.RefreshTokenRequest.
type refreshTokenRequest struct {
	refreshToken
	current []string
}

func (r *refreshTokenRequest) GetAMR() []string            { return r.amr }
func (r *refreshTokenRequest) GetAudience() []string       { return r.audience }
func (r *refreshTokenRequest) GetAuthTime() time.Time      { return r.authTime }
func (r *refreshTokenRequest) GetClientID() string         { return r.clientID }
func (r *refreshTokenRequest) GetScopes() []string         { return r.current }
func (r *refreshTokenRequest) GetSubject() string          { return r.subject }
func (r *refreshTokenRequest) SetCurrentScopes(s []string) { r.current = s }

// serviceRequest is a client_credentials op.TokenRequest.
type serviceRequest struct {
	clientID string
	audience []string
	scopes   []string
}

func (r *serviceRequest) GetSubject() string    { return r.clientID }
func (r *serviceRequest) GetAudience() []string { return r.audience }
func (r *serviceRequest) GetScopes() []string   { return r.scopes }

var (
	_ op.Storage                        = (*Storage)(nil)
	_ op.ClientCredentialsStorage       = (*Storage)(nil)
	_ op.CanGetPrivateClaimsFromRequest = (*Storage)(nil)
	_ op.CanSetUserinfoFromRequest      = (*Storage)(nil)
	_ op.AuthRequest                    = (*authRequest)(nil)
	_ op.RefreshTokenRequest            = (*refreshTokenRequest)(nil)
)
