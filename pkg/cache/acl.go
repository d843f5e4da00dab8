package cache

import (
	"net/url"
	"regexp"
)

// ACLCommands are the only Redis commands a Cache sends: the three Lua
// scripts (EVALSHA, and EVAL when Redis does not know a script yet) and
// what they call (GET, SET, EXISTS, DEL, PUBLISH), the negative marker
// (SET), the near layer's subscription (SUBSCRIBE, UNSUBSCRIBE, PING), and
// what go-redis sends on connecting with ClientOptions (HELLO, AUTH, and
// SELECT for a database other than 0). Redis checks the commands a script calls
// against the calling user too.
var ACLCommands = []string{
	"evalsha", "eval", "get", "set", "exists", "del", "publish",
	"subscribe", "unsubscribe", "ping",
	"hello", "auth", "select",
}

// ACLRules are the rules of a Redis ACL user for caches with namespace
// (Config.Namespace; "shopfloor" when empty), for ACL SETUSER or a
// `user` line after "on >password": its keys and channels only
// (~ns:* &ns:*), no command but ACLCommands. Such a user cannot read or
// write another namespace, flush, scan, change the configuration or run
// anything else.
func ACLRules(namespace string) []string {
	if namespace == "" {
		namespace = defaultNamespace
	}
	rules := []string{"resetkeys", "resetchannels", "~" + namespace + ":*", "&" + namespace + ":*", "-@all"}
	for _, c := range ACLCommands {
		rules = append(rules, "+"+c)
	}
	return rules
}

// userinfo finds "//user:password@" in a URL that does not parse.
var userinfo = regexp.MustCompile(`//([^/@:]*):[^/@]*@`)

// RedactURL returns a redis:// URL fit for logs and error messages: the
// password, if any, is replaced by "xxxxx" (the user name stays). It
// works on URLs that do not parse too.
func RedactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		return u.Redacted()
	}
	return userinfo.ReplaceAllString(raw, "//${1}:xxxxx@")
}
