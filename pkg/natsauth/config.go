package natsauth

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/nats-io/nats.go"
)

// Config is how a process reaches NATS: the server and the user it
// connects as. Credentials come from NATS_USER and NATS_PASSWORD (or, for
// a quick try, from the URL's user information); they are never logged:
// Redacted is the URL to print.
type Config struct {
	// URL of the server(s), comma separated: NATS_URL.
	URL string `env:"NATS_URL"`
	// User is the NATS user (NATS_USER), one per service (Shopfloor).
	// Empty: the URL's user, else none (a server without authorization,
	// as in tests).
	User string `env:"NATS_USER"`
	// Password of User (NATS_PASSWORD). Required with User.
	Password string `env:"NATS_PASSWORD"`
	// StreamReplicas is how many servers keep each message of the streams
	// the process creates (STREAM_REPLICAS, 1..5): 1 on a single server,
	// 3 in a JetStream cluster of three or more (ADR 0041). Their
	// consumers inherit it. Zero: 1.
	StreamReplicas int `env:"STREAM_REPLICAS" envDefault:"1"`
}

// Validate reports every problem of a configuration that has a URL, in
// the variables' words; a Config without URL is valid (the caller decides
// whether NATS is required).
func (c Config) Validate() []error {
	if c.StreamReplicas < 0 || c.StreamReplicas > 5 {
		return []error{fmt.Errorf("STREAM_REPLICAS: %d outside 1..5 (3 in a cluster of three servers)", c.StreamReplicas)}
	}
	if c.URL == "" {
		if c.User != "" || c.Password != "" {
			return []error{errors.New("NATS_USER, NATS_PASSWORD: set without NATS_URL")}
		}
		return nil
	}
	var errs []error
	for s := range strings.SplitSeq(c.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Host == "" {
			errs = append(errs, fmt.Errorf("NATS_URL: %q is not a server URL such as nats://host:4222", redact(s)))
			continue
		}
		if u.User != nil && c.User != "" {
			errs = append(errs, errors.New("NATS_URL: carries a user while NATS_USER is set; use one of them"))
		}
	}
	switch {
	case c.User != "" && !userRE.MatchString(c.User):
		errs = append(errs, fmt.Errorf("NATS_USER: %q must be lower-case letters, digits and '-'", c.User))
	case c.User != "" && c.Password == "":
		errs = append(errs, errors.New("NATS_PASSWORD: required with NATS_USER"))
	case c.User == "" && c.Password != "":
		errs = append(errs, errors.New("NATS_USER: required with NATS_PASSWORD"))
	}
	return errs
}

// Redacted is the URL with any password replaced by "xxxxx": what logs
// and errors may show.
func (c Config) Redacted() string { return redact(c.URL) }

func redact(raw string) string {
	parts := strings.Split(raw, ",")
	for i, s := range parts {
		// Something that is not a server URL may still hold a password
		// before an "@".
		if u, err := url.Parse(strings.TrimSpace(s)); err == nil && u.Host != "" {
			parts[i] = u.Redacted()
		} else if at := strings.LastIndex(s, "@"); at >= 0 {
			parts[i] = "xxxxx" + s[at:]
		}
	}
	return strings.Join(parts, ",")
}

// user is the user the connection authenticates as: User, else the
// URL's.
func (c Config) user() string {
	if c.User != "" {
		return c.User
	}
	for s := range strings.SplitSeq(c.URL, ",") {
		if u, err := url.Parse(strings.TrimSpace(s)); err == nil && u.User != nil {
			return u.User.Username()
		}
	}
	return ""
}

// Options are the connection options of the configuration: the client
// name, the user's credentials and its own reply inbox (InboxPrefix), the
// only one its permissions let it read.
func (c Config) Options(name string) []nats.Option {
	opts := []nats.Option{nats.Name(name)}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if u := c.user(); u != "" {
		opts = append(opts, nats.CustomInboxPrefix(InboxPrefix(u)))
	}
	return opts
}

// Connect dials the server as the configured user, with Options(name)
// and then opts. Its error names the redacted URL.
func (c Config) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(c.URL, append(c.Options(name), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s as %q: %w", c.Redacted(), c.user(), err)
	}
	return nc, nil
}
