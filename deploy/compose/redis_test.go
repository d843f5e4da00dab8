package compose_test

import (
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/cache"
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
