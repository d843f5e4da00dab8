package compose_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestRedisHasACLUsersAndCannotEvictVersionPointers: Redis starts with an
// ACL file of two users, the default one with REDIS_PASSWORD and catalog's
// with exactly pkg/cache's rules for the "shopfloor" namespace; its
// eviction policy is volatile-*, which never evicts the version pointers
// (they have no TTL, ADR 0008); only catalog's processes get a REDIS_URL,
// and it logs in as catalog.
func TestRedisHasACLUsersAndCannotEvictVersionPointers(t *testing.T) {
	t.Parallel()
	p := load(t)
	r, ok := p.Services["redis"]
	if !ok {
		t.Fatal("no redis service")
	}
	script := strings.Join(r.Command, " ")
	for _, want := range []string{
		`user default on >%s ~* &* +@all\nuser catalog on >%s %s\n' "$REDISCLI_AUTH" "$REDIS_CATALOG_PASSWORD" "$REDIS_CATALOG_ACL" >/data/users.acl`,
		"exec docker-entrypoint.sh redis-server ",
		" --aclfile /data/users.acl",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("redis's command %q: lacks %q", script, want)
		}
	}
	if strings.Contains(script, "requirepass") {
		t.Error("redis: requirepass beside an ACL file (the file's default user has the password)")
	}
	if m := regexp.MustCompile(`--maxmemory-policy (\S+)`).FindStringSubmatch(script); m == nil || !strings.HasPrefix(m[1], "volatile-") {
		t.Errorf("redis's eviction policy %v: want volatile-lru or volatile-ttl (only keys with a TTL are evicted, never the pointers)", m)
	}
	envIs := func(key, want string) {
		t.Helper()
		if v := r.Environment[key]; v == nil || *v != want {
			t.Errorf("redis: %s = %s, want %q", key, deref(v), want)
		}
	}
	envIs("REDISCLI_AUTH", testSecrets["REDIS_PASSWORD"])
	envIs("REDIS_CATALOG_PASSWORD", testSecrets["REDIS_CATALOG_PASSWORD"])
	envIs("REDIS_CATALOG_ACL", strings.Join(cache.ACLRules("shopfloor"), " "))

	users := 0
	for name, s := range p.Services {
		v := s.Environment["REDIS_URL"]
		if v == nil {
			continue
		}
		users++
		if !strings.HasPrefix(name, "catalog") {
			t.Errorf("%s has a REDIS_URL: only catalog uses Redis", name)
		}
		u, err := url.Parse(*v)
		if err != nil {
			t.Errorf("%s: REDIS_URL: %v", name, err)
			continue
		}
		if pw, _ := u.User.Password(); u.User.Username() != "catalog" || pw != testSecrets["REDIS_CATALOG_PASSWORD"] {
			t.Errorf("%s: REDIS_URL logs in as %q: want catalog with REDIS_CATALOG_PASSWORD", name, u.User.Username())
		}
	}
	if users == 0 {
		t.Error("no process has a REDIS_URL")
	}
}

func deref(v *string) string {
	if v == nil {
		return "<unset>"
	}
	return *v
}

// TestRedisStartScriptLetsCatalogInAndNobodyElse runs the redis service's
// start script as compose would, with the machine's redis-server in place
// of the image's entrypoint and a Unix socket in place of the port: the
// ACL file it writes is private, the default user needs REDIS_PASSWORD,
// catalog (with its REDIS_URL's credentials) may use the cache's keys and
// nothing else, and the eviction policy is in force.
func TestRedisStartScriptLetsCatalogInAndNobodyElse(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if testing.Short() {
			t.Skip("redis-server not found")
		}
		t.Fatal("redis-server not found: apt-get install redis-server")
	}
	p := load(t)
	r := p.Services["redis"]
	if len(r.Entrypoint) != 2 || r.Entrypoint[0] != "sh" || r.Entrypoint[1] != "-c" || len(r.Command) != 1 {
		t.Fatalf("redis: entrypoint %q command %q, want sh -c SCRIPT", r.Entrypoint, r.Command)
	}
	dir := t.TempDir()
	sock, acl := filepath.Join(dir, "redis.sock"), filepath.Join(dir, "users.acl")
	script := strings.ReplaceAll(r.Command[0], "/data/users.acl", acl)
	script = strings.Replace(script, "exec docker-entrypoint.sh redis-server", "exec "+bin+" --port 0 --unixsocket "+sock+" --dir "+dir, 1)
	cmd := exec.Command("sh", "-c", script)
	for k, v := range r.Environment {
		if v != nil {
			cmd.Env = append(cmd.Env, k+"="+*v)
		}
	}
	cmd.Env = append(cmd.Env, "PATH="+os.Getenv("PATH"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	u, err := url.Parse(*p.Services["catalog"].Environment["REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	catalogPassword, _ := u.User.Password()
	client := func(user, password string) *redis.Client {
		c := redis.NewClient(&redis.Options{Network: "unix", Addr: sock, Username: user, Password: password, DisableIdentity: true})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	ctx := context.Background()
	admin := client("", testSecrets["REDIS_PASSWORD"])
	testinfra.Eventually(t, 10*time.Second, func() error { return admin.Ping(ctx).Err() })
	if fi, err := os.Stat(acl); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("the ACL file has mode %v, want 0600 (it holds the passwords)", fi.Mode().Perm())
	}
	if policy, err := admin.ConfigGet(ctx, "maxmemory-policy").Result(); err != nil || policy["maxmemory-policy"] != "volatile-lru" {
		t.Errorf("maxmemory-policy %v %v", policy, err)
	}
	if err := client("", "").Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Errorf("PING without a password: %v, want NOAUTH", err)
	}
	catalog := client(u.User.Username(), catalogPassword)
	if err := catalog.Set(ctx, "shopfloor:product:s1:ptr:p", "1", 0).Err(); err != nil {
		t.Errorf("catalog SET in its namespace: %v", err)
	}
	for _, cmd := range [][]any{{"SET", "other:key", "x"}, {"FLUSHDB"}, {"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"}} {
		var rerr redis.Error
		if err := catalog.Do(ctx, cmd...).Err(); !errors.As(err, &rerr) || !strings.HasPrefix(err.Error(), "NOPERM") {
			t.Errorf("%v as catalog: %v, want NOPERM", cmd, err)
		}
	}
}
