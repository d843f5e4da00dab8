package natsauth

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// Stream is a partitioned stream (pkg/stream) as the matrix knows it.
type Stream struct {
	// Name of the stream, e.g. "ORDERS".
	Name string
	// Partitions is the partition count the permissions are written for:
	// a group may use the durable consumers "<group>-p0" to
	// "<group>-p<Partitions-1>" and no other. NATS wildcards match whole
	// subject tokens only, so the consumers are listed one by one; a
	// deployment with more partitions renders the matrix again
	// (Matrix.WithPartitions).
	Partitions int
}

// Group is a consumer group on a stream (stream.GroupConfig's Stream and
// Name).
type Group struct {
	Stream, Name string
}

// User is one NATS user: a service, or the operator.
type User struct {
	// Name is the user name (NATS_USER): lower-case letters, digits and
	// '-'. It also names the user's reply inbox, "_INBOX.<Name>"
	// (InboxPrefix), the only replies it may read.
	Name string
	// Owns are the streams this user creates and updates (with their
	// dead-letter streams) and publishes to: its outbox relay's. Exactly
	// one user owns a stream.
	Owns []string
	// Consumes are the groups this user runs: it may create, read, pull
	// from and acknowledge their durable consumers, publish their dead
	// letters (<STREAM>_DLQ.<group>) and read their tombstones.
	Consumes []Group
	// Watches are groups whose lag this user reads (consumer info only),
	// such as orders' load shedder reading payments' lag.
	Watches []Group
	// Operator users have no restriction: the operator's tools (dlq
	// redrive and discard, search rebuild, chaos drills, the console)
	// republish into any stream and delete messages and consumers.
	Operator bool
}

// Matrix is who may do what on the broker: every stream and every user.
type Matrix struct {
	Streams []Stream
	Users   []User
}

var userRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// Validate reports every problem at once: a bad user name, a stream or
// group that is not declared, a stream owned twice or never, a group run by
// two users.
func (m Matrix) Validate() error {
	var problems []string
	owner := map[string]string{}
	runner := map[Group]string{}
	streams := map[string]bool{}
	for _, s := range m.Streams {
		if s.Partitions < 1 || s.Partitions > stream.MaxPartitions {
			problems = append(problems, fmt.Sprintf("stream %s: partitions %d outside 1..%d", s.Name, s.Partitions, stream.MaxPartitions))
		}
		streams[s.Name] = true
	}
	seen := map[string]bool{}
	for _, u := range m.Users {
		if !userRE.MatchString(u.Name) || seen[u.Name] {
			problems = append(problems, fmt.Sprintf("user %q: a unique name of lower-case letters, digits and '-' is needed", u.Name))
		}
		seen[u.Name] = true
		for _, s := range u.Owns {
			switch {
			case !streams[s]:
				problems = append(problems, fmt.Sprintf("user %s owns undeclared stream %s", u.Name, s))
			case owner[s] != "":
				problems = append(problems, fmt.Sprintf("stream %s owned by both %s and %s", s, owner[s], u.Name))
			}
			owner[s] = u.Name
		}
		for _, g := range slices.Concat(u.Consumes, u.Watches) {
			if !streams[g.Stream] {
				problems = append(problems, fmt.Sprintf("user %s: group %s on undeclared stream %s", u.Name, g.Name, g.Stream))
			}
		}
		for _, g := range u.Consumes {
			if runner[g] != "" {
				problems = append(problems, fmt.Sprintf("group %s on %s run by both %s and %s", g.Name, g.Stream, runner[g], u.Name))
			}
			runner[g] = u.Name
		}
	}
	for s := range streams {
		if owner[s] == "" {
			problems = append(problems, "stream "+s+" has no owner")
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return fmt.Errorf("natsauth: %s", strings.Join(problems, "; "))
	}
	return nil
}

// User returns the user named name.
func (m Matrix) User(name string) (User, bool) {
	i := slices.IndexFunc(m.Users, func(u User) bool { return u.Name == name })
	if i < 0 {
		return User{}, false
	}
	return m.Users[i], true
}

// WithPartitions returns the matrix with other partition counts for the
// named streams (the <STREAM>_PARTITIONS of a deployment).
func (m Matrix) WithPartitions(counts map[string]int) Matrix {
	out := Matrix{Users: m.Users, Streams: slices.Clone(m.Streams)}
	for i, s := range out.Streams {
		if n, ok := counts[s.Name]; ok {
			out.Streams[i].Partitions = n
		}
	}
	return out
}

func (m Matrix) partitions(name string) int {
	for _, s := range m.Streams {
		if s.Name == name {
			return s.Partitions
		}
	}
	return 0
}

// Permissions are the subjects a user may publish to and subscribe to;
// everything else is refused by the server. Nil lists (an operator) mean
// no restriction.
type Permissions struct {
	Publish, Subscribe []string
}

// api is the JetStream API prefix (no JetStream domain).
const api = "$JS.API."

// Permissions returns u's permissions: what its roles need and nothing
// more (the table in ADR 0039).
//
//   - Every user reads its own replies only: subscribe "_INBOX.<user>.>"
//     (connect with InboxPrefix, which Config.Options sets).
//   - Owner of S: publish "S.events.*"; create, update and look up the
//     streams S and S_DLQ.
//   - Group g on S (partitions 0..n-1): look up S, S_DLQ and the
//     tombstone bucket's stream KV_S_DLQ_DISCARDED; create, look up, pull
//     from ("CONSUMER.MSG.NEXT"), unpin and acknowledge ("$JS.ACK") only
//     the consumers "g-p0".."g-p<n-1>"; publish dead letters to
//     "S_DLQ.g"; read tombstones under "g." in the bucket; read a
//     message of S by sequence ("DIRECT.GET.S": its lag sampler's oldest
//     unfinished message).
//   - Watcher of g on S: look up S and the consumers "g-p<i>".
func (m Matrix) Permissions(u User) Permissions {
	if u.Operator {
		return Permissions{}
	}
	var pub []string
	streamInfo := func(names ...string) {
		for _, n := range names {
			pub = append(pub, api+"STREAM.INFO."+n)
		}
	}
	for _, s := range u.Owns {
		pub = append(pub, s+".events.*")
		for _, n := range []string{s, stream.DLQStream(s)} {
			pub = append(pub, api+"STREAM.CREATE."+n, api+"STREAM.UPDATE."+n)
		}
		streamInfo(s, stream.DLQStream(s))
	}
	for _, g := range u.Consumes {
		dlq, kv := stream.DLQStream(g.Stream), stream.DiscardedBucket(g.Stream)
		pub = append(pub, dlq+"."+g.Name)
		streamInfo(g.Stream, dlq, "KV_"+kv)
		pub = append(pub, api+"DIRECT.GET.KV_"+kv+".$KV."+kv+"."+g.Name+".*")
		// The lag sampler reads the oldest unfinished message of each
		// partition (stream.GroupLag, a direct get by sequence and
		// subject): a message the group consumes anyway.
		pub = append(pub, api+"DIRECT.GET."+g.Stream)
		for p := range m.partitions(g.Stream) {
			c := g.Stream + "." + stream.ConsumerName(g.Name, p)
			pub = append(pub,
				api+"CONSUMER.CREATE."+c+"."+stream.Subject(g.Stream, p),
				api+"CONSUMER.INFO."+c,
				api+"CONSUMER.MSG.NEXT."+c,
				api+"CONSUMER.UNPIN."+c,
				"$JS.ACK."+c+".>")
		}
	}
	for _, g := range u.Watches {
		streamInfo(g.Stream)
		for p := range m.partitions(g.Stream) {
			pub = append(pub, api+"CONSUMER.INFO."+g.Stream+"."+stream.ConsumerName(g.Name, p))
		}
	}
	slices.Sort(pub)
	return Permissions{Publish: slices.Compact(pub), Subscribe: []string{InboxPrefix(u.Name) + ".>"}}
}

// InboxPrefix is the prefix of user's reply subjects, "_INBOX.<user>":
// a user may subscribe to its own replies only, so no service reads
// another's JetStream answers (or the messages it pulls).
func InboxPrefix(user string) string { return "_INBOX." + user }

// PasswordVar is the variable that holds user's password in the rendered
// server configuration and in the deployment's environment:
// NATS_<USER>_PASSWORD ("-" becomes "_"), e.g. NATS_ORDERS_PASSWORD.
func PasswordVar(user string) string {
	return "NATS_" + strings.ToUpper(strings.ReplaceAll(user, "-", "_")) + "_PASSWORD"
}

// Conf renders the nats-server authorization block of the matrix: one
// user per entry, each password a reference to PasswordVar (nats-server
// reads it from its environment, and refuses to start without it: no
// password is written in a file, and none works by default).
func (m Matrix) Conf() string {
	var b strings.Builder
	b.WriteString("# Generated from natsauth.Shopfloor (pkg/natsauth, ADR 0039): do not edit.\n" +
		"# Regenerate: go test ./pkg/natsauth -run TestComposeAuthorizationIsTheMatrix -update\n" +
		"# Each password comes from nats-server's environment (NATS_<USER>_PASSWORD).\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range m.Users {
		fmt.Fprintf(&b, "    {\n      user: %s\n      password: $%s\n", strconv.Quote(u.Name), PasswordVar(u.Name))
		if !u.Operator {
			p := m.Permissions(u)
			b.WriteString("      permissions: {\n")
			writeList(&b, "publish", p.Publish)
			writeList(&b, "subscribe", p.Subscribe)
			b.WriteString("      }\n")
		}
		b.WriteString("    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

func writeList(b *strings.Builder, what string, subjects []string) {
	fmt.Fprintf(b, "        %s: { allow: [\n", what)
	for _, s := range subjects {
		fmt.Fprintf(b, "          %s\n", strconv.Quote(s))
	}
	b.WriteString("        ] }\n")
}
