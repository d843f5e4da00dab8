package compose_test

import (
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shopfloor/shopfloor/pkg/natsauth"
	"github.com/shopfloor/shopfloor/services/identity/identityapi"
)

// secretVarRE finds the secrets in .env.example: the *_SECRET and
// *_PASSWORD variables it leaves empty (init-env.sh fills the same ones).
var secretVarRE = regexp.MustCompile(`(?m)^([A-Z0-9_]+_(?:SECRET|PASSWORD))=(.*)$`)

// TestSecretsHaveNoDefault: compose.yaml (and the chaos overlay) reads every secret with
// ${VAR:?message}, never with a default, so compose refuses to start
// without it and says where to set it; .env.example leaves every one empty
// (placeholders, never working values); and the test's secrets are exactly
// those.
func TestSecretsHaveNoDefault(t *testing.T) {
	t.Parallel()
	// The chaos overlay reads secrets the same way.
	var yaml []byte
	for _, f := range []string{"compose.yaml", overlay, clusterOverlay} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		yaml = append(yaml, b...)
	}
	example, err := os.ReadFile(".env.example")
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]bool{}
	for _, m := range secretVarRE.FindAllStringSubmatch(string(example), -1) {
		if m[2] != "" {
			t.Errorf(".env.example: %s has a value; secrets are left empty there (init-env.sh generates them)", m[1])
		}
		secrets[m[1]] = true
	}
	if !slices.Equal(slices.Sorted(maps.Keys(secrets)), slices.Sorted(maps.Keys(testSecrets))) {
		t.Fatalf(".env.example's secrets are %v; testSecrets has %v", slices.Sorted(maps.Keys(secrets)), slices.Sorted(maps.Keys(testSecrets)))
	}
	const hint = "set it in deploy/compose/.env (see .env.example)"
	required := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$\{([A-Z0-9_]+)([^}]*)\}`).FindAllStringSubmatch(string(yaml), -1) {
		name, rest := m[1], m[2]
		if strings.HasPrefix(rest, ":?") {
			required[name] = true
			if rest != ":?"+hint {
				t.Errorf("compose files: ${%s%s}: want the message %q", name, rest, hint)
			}
		}
		if secrets[name] && !strings.HasPrefix(rest, ":?") {
			t.Errorf("compose files: ${%s%s}: a secret must be read as ${%s:?%s} (no default, refuse to start without it)", name, rest, name, hint)
		}
	}
	if !maps.Equal(required, secrets) {
		t.Errorf("compose.yaml requires %v; .env.example's secrets are %v", slices.Sorted(maps.Keys(required)), slices.Sorted(maps.Keys(secrets)))
	}

	// Without any one of them (unset, or empty as in .env.example),
	// loading fails and the message names it and where to set it.
	for name := range testSecrets {
		for _, value := range []*string{nil, new(string)} {
			extra := maps.Clone(testSecrets)
			delete(extra, name)
			if value != nil {
				extra[name] = *value
			}
			_, err := loadProject(".env.example", extra)
			if err == nil {
				t.Errorf("compose.yaml loads with %s %s", name, map[bool]string{true: "unset", false: "empty"}[value == nil])
				continue
			}
			if !strings.Contains(err.Error(), "required variable "+name+" is missing a value: "+hint) {
				t.Errorf("without %s: %v", name, err)
			}
		}
	}
	// .env.example alone does not start anything.
	if _, err := loadProject(".env.example", nil); err == nil {
		t.Error("compose.yaml loads with .env.example alone")
	}
}

// TestNoAdminToken: admin routes take an operator's token (ADR 0022); the
// shared ADMIN_TOKEN is gone from compose and its variables.
func TestNoAdminToken(t *testing.T) {
	t.Parallel()
	p := load(t)
	for name, s := range p.Services {
		if _, ok := s.Environment["ADMIN_TOKEN"]; ok {
			t.Errorf("%s: sets ADMIN_TOKEN", name)
		}
	}
	for _, f := range []string{"compose.yaml", ".env.example"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "ADMIN_TOKEN") {
			t.Errorf("%s mentions ADMIN_TOKEN", f)
		}
	}
}

// clientSecrets parses IDENTITY_CLIENT_SECRETS as identity does
// (idp.ParseClientSecrets: comma-separated client=secret, spaces trimmed).
func clientSecrets(t *testing.T, s string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for part := range strings.SplitSeq(s, ",") {
		id, secret, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			t.Fatalf("IDENTITY_CLIENT_SECRETS %q: entry %q is not client=secret", s, part)
		}
		out[id] = secret
	}
	return out
}

func roles(s types.ServiceConfig) []string {
	if r := s.Environment["ROLES"]; r != nil {
		return strings.Split(*r, ",")
	}
	return nil
}

// TestAPIRolesVerifyIdentityTokens: identity issues tokens as
// http://localhost:IDENTITY_PORT (the URL browsers and host tools reach, on
// the host's loopback) and every process with the api role trusts exactly
// that issuer, reaches the provider at http://identity:<its HTTP_ADDR
// port> (AUTH_DISCOVERY_URL) and waits for it; orders' api has its client
// id and the secret identity knows it by. Roles that check no tokens get
// no token settings and do not wait for identity. identity knows every
// service client of identityapi, each by its own variable.
func TestAPIRolesVerifyIdentityTokens(t *testing.T) {
	t.Parallel()
	for _, port := range []string{"", "18090"} {
		extra := maps.Clone(testSecrets)
		wantPort := "8090"
		if port != "" {
			extra["IDENTITY_PORT"], wantPort = port, port
		}
		p, err := loadProject(".env.example", extra)
		if err != nil {
			t.Fatal(err)
		}
		id, ok := p.Services["identity"]
		if !ok || len(id.Command) < 2 || id.Command[0] != "identity" || id.Command[1] != "serve" {
			t.Fatalf("no identity service running `identity serve`: %+v", id.Command)
		}
		issuer := "http://localhost:" + wantPort
		if got := id.Environment["IDENTITY_ISSUER"]; got == nil || *got != issuer {
			t.Errorf("IDENTITY_PORT=%q: identity's IDENTITY_ISSUER is %v, want %s", port, got, issuer)
		}
		if len(id.Ports) != 1 || id.Ports[0].Published != wantPort || id.Ports[0].HostIP != "127.0.0.1" || id.Ports[0].Target != 8090 {
			t.Errorf("IDENTITY_PORT=%q: identity publishes %+v, want 127.0.0.1:%s:8090 (the issuer's port, loopback only)", port, id.Ports, wantPort)
		}
		if a := id.Environment["HTTP_ADDR"]; a == nil || *a != ":8090" {
			t.Fatalf("identity's HTTP_ADDR %v, want :8090", a)
		}
		discovery := "http://identity:8090"

		secrets := clientSecrets(t, *id.Environment["IDENTITY_CLIENT_SECRETS"])
		want := map[string]string{}
		for _, c := range identityapi.ServiceClients() {
			want[c.ID] = testSecrets[strings.ToUpper(c.ID)+"_CLIENT_SECRET"]
		}
		want[identityapi.ClientWeb] = testSecrets["WEB_CLIENT_SECRET"]
		if !maps.Equal(secrets, want) {
			t.Errorf("IDENTITY_CLIENT_SECRETS %v, want %v", secrets, want)
		}
		// The storefront's callback, as browsers reach it, is the web
		// client's only redirect URI; the storefront uses the same URL.
		web := p.Services["web"]
		if r, pu := id.Environment["IDENTITY_WEB_REDIRECT_URIS"], web.Environment["WEB_PUBLIC_URL"]; r == nil || pu == nil ||
			*r != *pu+"/auth/callback" || !strings.HasPrefix(*pu, "http://localhost:") {
			t.Errorf("IDENTITY_WEB_REDIRECT_URIS %v, web's WEB_PUBLIC_URL %v: want <public URL>/auth/callback", r, pu)
		}
		webAuth := map[string]string{}
		for k, v := range web.Environment {
			if strings.HasPrefix(k, "AUTH_") && v != nil {
				webAuth[k] = *v
			}
		}
		if want := map[string]string{"AUTH_ISSUER": issuer, "AUTH_DISCOVERY_URL": discovery, "AUTH_CLIENT_SECRET": secrets[identityapi.ClientWeb]}; !maps.Equal(webAuth, want) {
			t.Errorf("IDENTITY_PORT=%q: web: %v, want %v", port, webAuth, want)
		}
		if pw := id.Environment["IDENTITY_DEMO_PASSWORD"]; pw == nil || *pw != testSecrets["SHOPFLOOR_DEMO_PASSWORD"] {
			t.Errorf("IDENTITY_DEMO_PASSWORD %v, want SHOPFLOOR_DEMO_PASSWORD", pw)
		}

		apis := 0
		for name, s := range p.Services {
			if len(s.Command) < 2 || s.Command[1] != "serve" || binaries[s.Command[0]] == nil || name == "identity" || name == "web" {
				continue
			}
			auth := map[string]string{}
			for k, v := range s.Environment {
				if strings.HasPrefix(k, "AUTH_") && v != nil {
					auth[k] = *v
				}
			}
			_, waits := s.DependsOn["identity"]
			if name == "orders-consumer" || name == "orders-consumer-2" {
				// No tokens to check, but a client: it reads payments
				// (stuck-order repair) with a client-credentials token,
				// fetched when first needed.
				want := map[string]string{"AUTH_ISSUER": issuer, "AUTH_DISCOVERY_URL": discovery,
					"AUTH_CLIENT_ID": identityapi.ClientOrders, "AUTH_CLIENT_SECRET": secrets[identityapi.ClientOrders]}
				if !maps.Equal(auth, want) {
					t.Errorf("IDENTITY_PORT=%q: %s: %v, want %v", port, name, auth, want)
				}
				continue
			}
			if !slices.Contains(roles(s), "api") {
				if port == "" && (len(auth) > 0 || waits) {
					t.Errorf("%s (roles %v) checks no tokens but gets %v / waits for identity: %v", name, roles(s), slices.Sorted(maps.Keys(auth)), waits)
				}
				continue
			}
			apis++
			wantAuth := map[string]string{"AUTH_ISSUER": issuer, "AUTH_DISCOVERY_URL": discovery}
			if s.Command[0] == "orders" {
				wantAuth["AUTH_CLIENT_ID"] = identityapi.ClientOrders
				wantAuth["AUTH_CLIENT_SECRET"] = secrets[identityapi.ClientOrders]
			}
			if !maps.Equal(auth, wantAuth) {
				t.Errorf("IDENTITY_PORT=%q: %s: %v, want %v", port, name, auth, wantAuth)
			}
			if d, ok := s.DependsOn["identity"]; port == "" && (!ok || d.Condition != types.ServiceConditionHealthy) {
				t.Errorf("%s: its api role needs identity but does not wait for it to be healthy", name)
			}
		}
		if apis != len(apiServices) {
			t.Errorf("%d services with the api role, want %d (%s)", apis, len(apiServices), strings.Join(apiServices, ", "))
		}
	}
}

// TestSecretsReachOnlyWhoNeedsThem: each secret is in the environment of
// the services that use it and of no other (a worker role that calls no
// one has no client secret; only identity knows the demo password), with
// and without the cluster and Kafka overlays.
func TestSecretsReachOnlyWhoNeedsThem(t *testing.T) {
	t.Parallel()
	single, cluster, kafka := load(t), loadCluster(t), loadKafka(t)
	isNATS := func(s string) bool { return slices.Contains(natsNodes, s) }
	allowed := map[string]func(service, key string) bool{
		"SHOPFLOOR_DEMO_PASSWORD": func(s, _ string) bool { return s == "identity" },
		// orders' api calls catalog, its consumer payments (stuck-order repair).
		"ORDERS_CLIENT_SECRET": func(s, _ string) bool {
			return s == "identity" || s == "orders" || s == "orders-consumer" || s == "orders-consumer-2"
		},
		"PAYMENTS_CLIENT_SECRET":      func(s, _ string) bool { return s == "identity" },
		"NOTIFICATIONS_CLIENT_SECRET": func(s, _ string) bool { return s == "identity" },
		"SEARCH_CLIENT_SECRET":        func(s, _ string) bool { return s == "identity" },
		"WEB_CLIENT_SECRET":           func(s, _ string) bool { return s == "identity" || s == "web" },
		"WEB_SESSION_SECRET":          func(s, _ string) bool { return s == "web" },
		// No service runs as the superuser (ADR 0040).
		"POSTGRES_PASSWORD": func(s, k string) bool {
			return (s == "postgres" && k == "POSTGRES_PASSWORD") || (s == "postgres-roles" && k == "PGROLES_ADMIN_URL")
		},
		"REDIS_PASSWORD": func(s, k string) bool { return s == "redis" && k == "REDISCLI_AUTH" },
		"REDIS_CATALOG_PASSWORD": func(s, k string) bool {
			return (s == "redis" && k == "REDIS_CATALOG_PASSWORD") || (strings.HasPrefix(s, "catalog") && k == "REDIS_URL")
		},
		// Varnish compares it, catalog's invalidation consumers send it.
		"CDN_PURGE_SECRET": func(s, k string) bool {
			return k == "CDN_PURGE_SECRET" && (s == "varnish" || s == "catalog-worker" || s == "catalog-invalidation-2")
		},
		"GRAFANA_ADMIN_PASSWORD": func(s, k string) bool { return s == "otel-lgtm" && k == "GF_SECURITY_ADMIN_PASSWORD" },
		// The cluster's nodes, in their routes' URLs too (ADR 0041).
		"NATS_ROUTE_PASSWORD": func(s, k string) bool {
			return isNATS(s) && (k == "NATS_ROUTE_PASSWORD" || k == "NATS_ROUTES")
		},
	}
	// A service's NATS password: the broker (each node of the cluster) and
	// that service's processes; the operator's: the broker and the console
	// (ADR 0039).
	for _, u := range natsauth.Shopfloor.Users {
		v := natsauth.PasswordVar(u.Name)
		allowed[v] = func(s, k string) bool {
			svc, _, _ := strings.Cut(s, "-")
			return (isNATS(s) && k == v) || (svc == u.Name && k == "NATS_PASSWORD") ||
				(u.Operator && s == "web" && k == "WEB_CONSOLE_NATS_PASSWORD")
		}
	}
	// A database role's password: the roles job, and the service's
	// migrate job (owner) or its other processes (app).
	for v := range testSecrets {
		m := dbPasswordRE.FindStringSubmatch(v)
		if m == nil {
			continue
		}
		svc, role := strings.ReplaceAll(strings.ToLower(m[1]), "_", "-"), strings.ToLower(m[2])
		allowed[v] = func(s, k string) bool {
			owner, _, _ := strings.Cut(s, "-")
			migrate := s == svc+"-migrate"
			return (s == "postgres-roles" && k == v) ||
				(k == "DATABASE_URL" && owner == svc && migrate == (role == "owner"))
		}
	}
	seen := map[string]bool{}
	for name, s := range servicesOf(single, cluster, kafka) {
		for k, v := range s.Environment {
			for secret, value := range testSecrets {
				if v == nil || !strings.Contains(*v, value) {
					continue
				}
				seen[secret] = true
				if !allowed[secret](name, k) {
					t.Errorf("%s: %s holds %s", name, k, secret)
				}
			}
		}
		args := slices.Clone(s.Command)
		if s.HealthCheck != nil {
			args = append(args, s.HealthCheck.Test...)
		}
		for _, arg := range args {
			for secret, value := range testSecrets {
				if strings.Contains(arg, value) {
					t.Errorf("%s: %s in its command line or healthcheck (visible in ps and docker inspect)", name, secret)
				}
			}
		}
	}
	if len(seen) != len(testSecrets) {
		t.Errorf("secrets used: %v, want all of %v", slices.Sorted(maps.Keys(seen)), slices.Sorted(maps.Keys(testSecrets)))
	}
}

// TestInitEnvWritesWorkingSecrets: init-env.sh writes a .env (mode 0600)
// with which compose loads, each secret new, distinct and fit for where it
// goes (a URL, the client list; the lengths identity requires); run again
// it changes nothing; on an older .env it adds the missing secrets and
// keeps the values there.
func TestInitEnvWritesWorkingSecrets(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("init-env.sh needs bash: %v", err)
	}
	run := func(file string) string {
		t.Helper()
		out, err := exec.Command(bash, "init-env.sh", file).CombinedOutput()
		if err != nil {
			t.Fatalf("init-env.sh %s: %v\n%s", file, err, out)
		}
		return string(out)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, ".env")
	run(file)
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf(".env mode %v, want 0600", fi.Mode().Perm())
	}
	first, _ := os.ReadFile(file)
	p, err := loadProject(file, nil)
	if err != nil {
		t.Fatalf("compose does not load with init-env.sh's .env: %v", err)
	}
	if _, err := loadWith(clusterFiles, []string{"cluster"}, file, nil); err != nil {
		t.Errorf("compose with %s does not load with init-env.sh's .env: %v", clusterOverlay, err)
	}
	values := map[string]string{}
	for _, m := range secretVarRE.FindAllStringSubmatch(string(first), -1) {
		values[m[1]] = m[2]
	}
	hex := regexp.MustCompile(`^[0-9a-f]+$`)
	distinct := map[string]bool{}
	for name := range testSecrets {
		v := values[name]
		least := 16 // identity's minimum for a client secret
		if name == "SHOPFLOOR_DEMO_PASSWORD" {
			least = 12
		}
		if len(v) < least || !hex.MatchString(v) {
			t.Errorf("%s=%q: want at least %d hex digits", name, v, least)
		}
		distinct[v] = true
	}
	if len(distinct) != len(testSecrets) {
		t.Errorf("secrets are not distinct: %v", values)
	}
	u, err := url.Parse(*p.Services["orders"].Environment["DATABASE_URL"])
	if pw, _ := u.User.Password(); err != nil || pw != values["ORDERS_DB_APP_PASSWORD"] {
		t.Errorf("orders' DATABASE_URL does not carry ORDERS_DB_APP_PASSWORD: %v", err)
	}
	// Everything else is .env.example's.
	example, _ := os.ReadFile(".env.example")
	if got, want := secretVarRE.ReplaceAllString(string(first), "$1="), string(example); got != want {
		t.Errorf(".env differs from .env.example beyond the secrets:\n%s", got)
	}
	if run(file); !bytesEqual(t, file, first) {
		t.Error("a second run changed .env")
	}

	// An older .env: a value kept, one secret empty, the others missing.
	old := filepath.Join(dir, "old.env")
	if err := os.WriteFile(old, []byte("POSTGRES_PASSWORD=keepme\nORDERS_CLIENT_SECRET=\nCDN_PORT=9080\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(old)
	b, _ := os.ReadFile(old)
	if strings.Count(string(b), "ORDERS_CLIENT_SECRET=") != 1 || !strings.Contains(string(b), "POSTGRES_PASSWORD=keepme\n") || !strings.Contains(string(b), "CDN_PORT=9080\n") {
		t.Errorf("init-env.sh on an older .env:\n%s", b)
	}
	if fi, _ := os.Stat(old); runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("older .env mode %v after adding secrets, want 0600", fi.Mode().Perm())
	}
	if _, err := loadProject(old, nil); err != nil {
		t.Errorf("compose does not load with the completed older .env: %v", err)
	}
}

func bytesEqual(t *testing.T, file string, want []byte) bool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b) == string(want)
}
