package session_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/services/web/internal/session"
)

type value struct {
	Sub   string `json:"sub"`
	Token string `json:"token"`
}

const secret = "0123456789abcdef0123456789abcdef"

// roundTrip seals v as name with s and opens it as openName with o.
func roundTrip(t *testing.T, s, o *session.Sealer, name, openName string, v value, ttl time.Duration, mutate func(string) string) (value, error) {
	t.Helper()
	w := httptest.NewRecorder()
	if err := s.Set(w, name, v, ttl); err != nil {
		t.Fatal(err)
	}
	c := w.Result().Cookies()[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
		t.Fatalf("cookie attributes: %+v", c)
	}
	if strings.Contains(c.Value, v.Token) {
		t.Fatal("the cookie shows the value in clear")
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	val := c.Value
	if mutate != nil {
		val = mutate(val)
	}
	r.AddCookie(&http.Cookie{Name: openName, Value: val})
	var got value
	err := o.Open(r, openName, &got)
	return got, err
}

func TestSealedCookieOpensOnlyUnchangedUnexpiredUnderItsNameAndKey(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	s, err := session.New(secret, false, clock)
	if err != nil {
		t.Fatal(err)
	}
	v := value{Sub: "ada", Token: "eyJ-secret-token"}
	got, err := roundTrip(t, s, s, "sf_session", "sf_session", v, time.Hour, nil)
	if err != nil || got != v {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	other, _ := session.New(strings.Repeat("z", 32), false, clock)
	late, _ := session.New(secret, false, func() time.Time { return now.Add(2 * time.Hour) })
	flip := func(s string) string {
		b := []byte(s)
		if b[20] == 'A' {
			b[20] = 'B'
		} else {
			b[20] = 'A'
		}
		return string(b)
	}
	for name, tc := range map[string]struct {
		opener   *session.Sealer
		openName string
		mutate   func(string) string
	}{
		"tampered":       {s, "sf_session", flip},
		"another cookie": {s, "sf_signin", nil},
		"another secret": {other, "sf_session", nil},
		"expired":        {late, "sf_session", nil},
		"not base64":     {s, "sf_session", func(string) string { return "***" }},
		"too short":      {s, "sf_session", func(string) string { return "AAAA" }},
		"empty":          {s, "sf_session", func(string) string { return "" }},
	} {
		t.Run(name, func(t *testing.T) {
			if got, err := roundTrip(t, s, tc.opener, "sf_session", tc.openName, v, time.Hour, tc.mutate); !errors.Is(err, session.ErrNone) {
				t.Fatalf("opened as %+v (err %v), want ErrNone", got, err)
			}
		})
	}
}

func TestShortSecretIsRefused(t *testing.T) {
	if _, err := session.New("short", false, nil); err == nil {
		t.Fatal("a 5-character secret was accepted")
	}
}

func TestOversizedValueIsRefusedNotTruncated(t *testing.T) {
	s, _ := session.New(secret, true, nil)
	w := httptest.NewRecorder()
	if err := s.Set(w, "sf_session", value{Token: strings.Repeat("x", 4000)}, time.Hour); err == nil {
		t.Fatal("a 4000-byte value was sealed into a cookie")
	}
	if len(w.Result().Cookies()) != 0 {
		t.Fatal("a cookie was set anyway")
	}
}
