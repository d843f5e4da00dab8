package local_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/cache"
)

// TestRunGivesCatalogOnlyTheCacheACL: run.sh creates catalog's Redis user
// with exactly pkg/cache's rules for the "shopfloor" namespace, catalog's
// REDIS_URL logs in as that user, and no other process gets a REDIS_URL.
// (The user itself is exercised against a real Redis by pkg/cache's
// TestACLUserRunsTheCacheAndIsRefusedOutsideItsPrefix.)
func TestRunGivesCatalogOnlyTheCacheACL(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("run.sh")
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)
	m := regexp.MustCompile(`(?m)^redis_catalog_acl=\((.*)\)$`).FindStringSubmatch(script)
	if m == nil {
		t.Fatal("run.sh: no redis_catalog_acl=(...) line")
	}
	var rules []string
	for _, f := range strings.Fields(m[1]) {
		rules = append(rules, strings.Trim(f, `'"`))
	}
	if want := cache.ACLRules("shopfloor"); !slices.Equal(rules, want) {
		t.Errorf("run.sh gives catalog's Redis user\n%q\nwant pkg/cache's\n%q", rules, want)
	}
	if !strings.Contains(script, `ACL SETUSER "$REDIS_CATALOG_USER" reset on "${redis_catalog_acl[@]}"`) {
		t.Error("run.sh does not create the user with redis_catalog_acl")
	}
	urls := regexp.MustCompile(`REDIS_URL="[^"]*"`).FindAllString(script, -1)
	if len(urls) != 1 || urls[0] != `REDIS_URL="redis://$REDIS_CATALOG_USER:$REDIS_CATALOG_PASSWORD@127.0.0.1:$TOXI_REDIS/$REDIS_DB"` {
		t.Errorf("run.sh's REDIS_URLs %q: want one, catalog's, as its own user", urls)
	}
	if !regexp.MustCompile(`(?m)^catalog_env=\(.*REDIS_URL=`).MatchString(script) {
		t.Error("run.sh: REDIS_URL is not in catalog_env")
	}
}
