package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/identity/identityapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

const secrets = "orders=orders-secret-0123456789,payments=payments-secret-0123456789," +
	"notifications=notifications-secret-0123456789,search=search-secret-0123456789"

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	base := map[string]string{"IDENTITY_ISSUER": "http://127.0.0.1:8090", "IDENTITY_DEMO_PASSWORD": "demo-password-1",
		"IDENTITY_CLIENT_SECRETS": secrets}
	for _, tc := range []struct {
		name string
		set  map[string]string
		want []string
	}{
		{"no demo password", map[string]string{"IDENTITY_DEMO_PASSWORD": ""}, []string{"IDENTITY_DEMO_PASSWORD: required, not set"}},
		{"no issuer", map[string]string{"IDENTITY_ISSUER": ""}, []string{"IDENTITY_ISSUER: required, not set"}},
		{"no client secrets", map[string]string{"IDENTITY_CLIENT_SECRETS": ""}, []string{"IDENTITY_CLIENT_SECRETS: required, not set"}},
		{"a client secret missing", map[string]string{"IDENTITY_CLIENT_SECRETS": "orders=orders-secret-0123456789,search=search-secret-0123456789"},
			[]string{`IDENTITY_CLIENT_SECRETS: no secret for client "payments"; no secret for client "notifications"`}},
		{"a short secret and an unknown client", map[string]string{"IDENTITY_CLIENT_SECRETS": secrets + ",billing=billing-secret-0123456789", "IDENTITY_DEMO_PASSWORD": "short"},
			[]string{`IDENTITY_CLIENT_SECRETS: unknown clients "billing"`, "IDENTITY_DEMO_PASSWORD: must be at least 12 characters"}},
		{"short secret", map[string]string{"IDENTITY_CLIENT_SECRETS": strings.Replace(secrets, "search-secret-0123456789", "tiny", 1)},
			[]string{`the secret of client "search" is shorter than 16 characters`}},
		{"malformed secrets", map[string]string{"IDENTITY_CLIENT_SECRETS": "orders"}, []string{"IDENTITY_CLIENT_SECRETS: entry 1 is not client=secret"}},
		{"public http issuer", map[string]string{"IDENTITY_ISSUER": "http://id.example.com"}, []string{"IDENTITY_ISSUER: http is allowed only"}},
		{"durations", map[string]string{"IDENTITY_KEY_ROTATION": "1s", "IDENTITY_ACCESS_TOKEN_TTL": "48h"},
			[]string{"IDENTITY_KEY_ROTATION: must be at least 1m", "IDENTITY_ACCESS_TOKEN_TTL: must be 1m..24h"}},
	} {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range tc.set {
			env[k] = v
		}
		err := run(context.Background(), []string{"identity"}, func(k string) string { return env[k] }, &testinfra.Buffer{})
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error lacks %q:\n%v", tc.name, want, err)
			}
		}
		if err != nil && (strings.Contains(err.Error(), "0123456789") || strings.Contains(err.Error(), "demo-password-1")) {
			t.Errorf("%s: error shows a secret: %v", tc.name, err)
		}
	}
	if err := run(context.Background(), []string{"identity", "dance"}, func(string) string { return "" }, &testinfra.Buffer{}); err == nil ||
		!strings.Contains(err.Error(), "usage") {
		t.Errorf("unknown command: %v", err)
	}
}

// TestEndpointsAreLimitedPerAddress: every public endpoint of the
// provider (discovery here; the sign-in form and token endpoint alike) is
// behind the per-address limit, answering 429 with Retry-After past it;
// the probes are not (ADR 0038).
func TestEndpointsAreLimitedPerAddress(t *testing.T) {
	t.Parallel()
	addr := testinfra.FreeAddr(t)
	issuer := "http://" + addr
	env := map[string]string{"IDENTITY_ISSUER": issuer, "IDENTITY_DEMO_PASSWORD": "demo-password-1", "HTTP_ADDR": addr,
		"IDENTITY_CLIENT_SECRETS": secrets, "LOG_LEVEL": "WARN", "RATE_LIMIT_ANONYMOUS": "0.01", "RATE_LIMIT_ANONYMOUS_BURST": "3"}
	testinfra.StartService(t, run, "identity", env)
	testinfra.WaitReady(t, issuer+"/readyz", 10*time.Second)
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := hc.Get(issuer + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	for i := range 3 {
		if code, _ := get("/.well-known/openid-configuration"); code != http.StatusOK {
			t.Fatalf("discovery %d: %d", i+1, code)
		}
	}
	if code, retry := get("/login?authRequestID=x"); code != http.StatusTooManyRequests || retry == "" {
		t.Errorf("the fourth request: %d, Retry-After %q; want 429 with Retry-After", code, retry)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("readyz past the limit: %d, want 200", code)
	}
}

// TestServeAndTokenCommand runs the serve command's wiring on two
// listeners and gets tokens with the token command: a person's, a
// service's for its audience; the admin listener rotates the key, and the
// public one does not have the admin route.
func TestServeAndTokenCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	addr := testinfra.FreeAddr(t)
	issuer := "http://" + addr
	env := map[string]string{"IDENTITY_ISSUER": issuer, "IDENTITY_DEMO_PASSWORD": "demo-password-1", "HTTP_ADDR": addr,
		"IDENTITY_CLIENT_SECRETS": secrets, "IDENTITY_KEY_DIR": t.TempDir(), "LOG_LEVEL": "WARN"}
	getenv := func(k string) string { return env[k] }
	svc := testinfra.StartService(t, run, "identity", env)
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	testinfra.WaitReady(t, issuer+"/readyz", 10*time.Second)

	token := func(args ...string) map[string]any {
		t.Helper()
		var out bytes.Buffer
		if err := run(ctx, append([]string{"identity", "token"}, args...), getenv, &out); err != nil {
			t.Fatalf("token %v: %v", args, err)
		}
		parts := strings.Split(strings.TrimSpace(out.String()), ".")
		if len(parts) != 3 {
			t.Fatalf("token %v printed %q", args, out.String())
		}
		b, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := token(identityapi.UserAda); c["sub"] != identityapi.UserAda || c["iss"] != issuer {
		t.Errorf("user token claims: %v", c)
	}
	if c := token("-client", identityapi.ClientOrders, "-audience", identityapi.AudienceCatalog); c["sub"] != identityapi.ClientOrders ||
		len(c["aud"].([]any)) != 1 || c["aud"].([]any)[0] != identityapi.AudienceCatalog {
		t.Errorf("service token claims: %v", c)
	}

	oscar, err := identityapi.UserToken(context.Background(), hc, issuer, identityapi.ClientCLI, identityapi.UserOscar, "demo-password-1")
	if err != nil {
		t.Fatal(err)
	}
	rotate := func(base, token string) int {
		req, err := http.NewRequest(http.MethodPost, base+httpkit.AdminPrefix+"rotate-keys", nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := rotate(issuer, oscar.AccessToken); code != http.StatusNotFound {
		t.Errorf("rotate-keys on the public listener: %d, want 404", code)
	}
	admin := svc.Admin
	if code := rotate(admin, ""); code != http.StatusUnauthorized {
		t.Errorf("rotate-keys on the admin listener without a token: %d, want 401", code)
	}
	if code := rotate(admin, oscar.AccessToken); code != http.StatusOK {
		t.Errorf("rotate-keys on the admin listener as the operator: %d", code)
	}
}

func TestHelpListsTheCommandsAndRolesInTheSharedShape(t *testing.T) {
	t.Parallel()
	testinfra.CheckHelp(t, run, "identity")
}
