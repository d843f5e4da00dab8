package idp_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/shopfloor/shopfloor/pkg/ratelimit"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/identity/identityapi"
	"github.com/shopfloor/shopfloor/services/identity/internal/idp"
)

// signIn posts the sign-in form of a new authorization request as user
// and returns the status, Retry-After and page.
func signIn(t *testing.T, o *op, user, pw string) (int, string, string) {
	t.Helper()
	loc := authorize(t, o, url.Values{"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
		"code_challenge_method": {"S256"}})
	u, err := url.Parse(loc)
	if err != nil || u.Path != "/login" {
		t.Fatalf("authorize redirected to %q, want the sign-in form", loc)
	}
	nc := *o.hc
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := nc.PostForm(o.issuer+"/login", url.Values{"authRequestID": {u.Query().Get("authRequestID")}, "username": {user}, "password": {pw}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

// TestWrongPasswordsThrottleTheUserName: a user name may take Burst wrong
// passwords; the failure that finds its bucket empty makes its next
// sign-ins, right password or not, answer 429 with Retry-After and say
// why, until the bucket refills. Right passwords take nothing, and other
// user names are not affected.
func TestWrongPasswordsThrottleTheUserName(t *testing.T) {
	t.Parallel()
	clock := testinfra.NewClock(time.Now())
	o := startWith(t, func(c *idp.Config) {
		c.Now = clock.Now
		c.SignInFailures = ratelimit.Limit{Rate: 1.0 / 12, Burst: 3}
	})
	for range 5 {
		if code, _, _ := signIn(t, o, identityapi.UserAda, password); code != http.StatusSeeOther {
			t.Fatalf("right password: %d, want 303 (successes take nothing)", code)
		}
	}
	for i := range 4 { // three allowed failures, and the fourth finds the bucket empty
		if code, _, page := signIn(t, o, identityapi.UserAda, "guess"); code != http.StatusOK || !strings.Contains(page, "unknown user or wrong password") {
			t.Fatalf("wrong password %d: %d %q", i+1, code, page)
		}
	}
	code, retry, page := signIn(t, o, "ADA", password) // names are compared case-insensitively
	if code != http.StatusTooManyRequests || retry != "12" || !strings.Contains(page, "too many wrong passwords for this user name: try again in 12 seconds") {
		t.Fatalf("after the fourth wrong password: %d Retry-After %q\n%s", code, retry, page)
	}
	if code, _, _ := signIn(t, o, identityapi.UserGrace, password); code != http.StatusSeeOther {
		t.Errorf("grace: %d, want 303 (another name)", code)
	}
	clock.Advance(12 * time.Second)
	if code, _, _ := signIn(t, o, identityapi.UserAda, password); code != http.StatusSeeOther {
		t.Errorf("after Retry-After: %d, want 303", code)
	}
	if _, err := identityapi.UserToken(context.Background(), o.hc, o.issuer, identityapi.ClientCLI, identityapi.UserAda, password); err != nil {
		t.Errorf("a token after the wait: %v", err)
	}
}
