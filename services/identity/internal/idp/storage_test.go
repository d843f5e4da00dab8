package idp

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/identity/identityapi"
)

// TestStoragePrunesExpiredRecords: auth requests, codes and refresh
// tokens are deleted once expired, and an expired one is refused before
// Prune runs.
func TestStoragePrunesExpiredRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := testinfra.NewClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	keys, err := OpenKeyRing("", time.Hour, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{}
	for _, sc := range identityapi.ServiceClients() {
		secrets[sc.ID] = "0123456789abcdef"
	}
	clients, err := newClients(secrets, nil, func(string) string { return "" }, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := newStorage(keys, clients, "demo-password-1", "", time.Hour, 24*time.Hour, c.Now)
	req := &oidc.AuthRequest{ClientID: identityapi.ClientCLI, RedirectURI: identityapi.CLIRedirectURI, ResponseType: oidc.ResponseTypeCode,
		Scopes: []string{"openid", "offline_access"}, CodeChallenge: "x", CodeChallengeMethod: oidc.CodeChallengeMethodS256}
	pending, err := s.CreateAuthRequest(ctx, req, "")
	if err != nil {
		t.Fatal(err)
	}
	signedIn, err := s.CreateAuthRequest(ctx, req, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteLogin(signedIn.GetID(), identityapi.UserAda, "demo-password-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveAuthCode(ctx, signedIn.GetID(), "code-1"); err != nil {
		t.Fatal(err)
	}
	ar, err := s.AuthRequestByCode(ctx, "code-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.CreateAccessAndRefreshTokens(ctx, ar, ""); err != nil {
		t.Fatal(err)
	}
	if a, cd, r := s.Pending(); a != 2 || cd != 1 || r != 1 {
		t.Fatalf("pending %d %d %d", a, cd, r)
	}

	c.Advance(CodeTTL + time.Second)
	if _, err := s.AuthRequestByCode(ctx, "code-1"); err == nil {
		t.Error("an expired code was accepted")
	}
	if n := s.Prune(); n != 2 { // the code and its auth request
		t.Errorf("pruned %d after the code expired, want 2", n)
	}
	c.Advance(AuthRequestTTL)
	if err := s.CompleteLogin(pending.GetID(), identityapi.UserAda, "demo-password-1"); !errors.Is(err, ErrSignInExpired) {
		t.Errorf("sign-in on an expired auth request: %v", err)
	}
	c.Advance(24 * time.Hour)
	if n := s.Prune(); n != 2 { // the pending auth request and the refresh token
		t.Errorf("pruned %d, want 2", n)
	}
	if a, cd, r := s.Pending(); a+cd+r != 0 {
		t.Fatalf("left %d %d %d", a, cd, r)
	}
}
