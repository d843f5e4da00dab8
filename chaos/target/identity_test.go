package target_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/chaos/load"
	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/identity/identityapi"
)

// TestTokenFromTheSandboxProvider signs in, through System.Token, at the
// real sandbox provider (the identity binary, built and started here with
// the "load-" synthetic customers that make run enables): the operator and
// a load customer get tokens whose subject and roles are theirs, the
// second call is answered from the cache, and an unknown user or a wrong
// password is identityapi.ErrSignInRefused.
func TestTokenFromTheSandboxProvider(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and starts the identity provider")
	}
	issuer, password := startIdentity(t)
	hc := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	sys := &target.System{HTTP: hc, Identity: target.Identity{Issuer: issuer, DemoPassword: password}}
	customer, _ := load.Customer("t0ken", 3)

	for _, tt := range []struct{ user, role string }{{target.Operator, identityapi.RoleOperator}, {customer, identityapi.RoleCustomer}} {
		tok, err := sys.Token(t.Context(), tt.user)
		if err != nil {
			t.Fatalf("%s: %v", tt.user, err)
		}
		c := claims(t, tok)
		if c.Sub != tt.user || !slices.Contains(c.Roles, tt.role) || c.Iss != issuer {
			t.Errorf("%s's token: sub %q, roles %v, iss %q; want sub %q with role %s from %s", tt.user, c.Sub, c.Roles, c.Iss, tt.user, tt.role, issuer)
		}
		if time.Until(time.Unix(c.Exp, 0)) < 30*time.Minute {
			t.Errorf("%s's token expires at %s: the sandbox's tokens live 1h", tt.user, time.Unix(c.Exp, 0))
		}
		again, err := sys.Token(t.Context(), tt.user)
		if err != nil || again != tok {
			t.Errorf("%s: second call answered another token (%v): want the cached one", tt.user, err)
		}
	}

	for _, user := range []string{"mallory", "load-with space"} {
		if _, err := sys.Token(t.Context(), user); !errors.Is(err, identityapi.ErrSignInRefused) {
			t.Errorf("%s: err %v, want ErrSignInRefused", user, err)
		}
	}
	wrong := &target.System{HTTP: hc, Identity: target.Identity{Issuer: issuer, DemoPassword: password + "x"}}
	if _, err := wrong.Token(t.Context(), target.Operator); !errors.Is(err, identityapi.ErrSignInRefused) {
		t.Errorf("wrong password: err %v, want ErrSignInRefused", err)
	}
}

type tokenClaims struct {
	Iss   string   `json:"iss"`
	Sub   string   `json:"sub"`
	Exp   int64    `json:"exp"`
	Roles []string `json:"roles"`
}

// claims reads a JWT's payload without verifying it (the services verify;
// here only what the provider put in matters).
func claims(t *testing.T, jwt string) tokenClaims {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c tokenClaims
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// startIdentity builds services/identity and serves it on free loopback
// ports until the test ends; it returns the issuer and the demo password.
func startIdentity(t *testing.T) (issuer, password string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "identity")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./services/identity/cmd/identity")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build identity: %v\n%s", err, out)
	}
	pub, admin := freePort(t), freePort(t)
	issuer, password = "http://127.0.0.1:"+strconv.Itoa(pub), "chaos-test-demo-password"
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve")
	cmd.Env = append(os.Environ(), "LOG_LEVEL=WARN",
		"HTTP_ADDR=127.0.0.1:"+strconv.Itoa(pub), "ADMIN_ADDR=127.0.0.1:"+strconv.Itoa(admin),
		"IDENTITY_ISSUER="+issuer, "IDENTITY_DEMO_PASSWORD="+password, "IDENTITY_SYNTHETIC_CUSTOMER_PREFIX="+load.CustomerPrefix,
		"IDENTITY_CLIENT_SECRETS=orders=orders-secret-0123456789,payments=payments-secret-0123456789,"+
			"notifications=notifications-secret-0123456789,search=search-secret-0123456789")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("identity's log:\n%s", logs.String())
		}
	})
	testinfra.WaitReady(t, issuer+"/.well-known/openid-configuration", 30*time.Second)
	return issuer, password
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
