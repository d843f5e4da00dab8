package main

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"go/format"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/pkg/inbox"
	"github.com/shopfloor/shopfloor/pkg/natsauth"
	"github.com/shopfloor/shopfloor/pkg/outbox"
)

// templates are the files of a new service: paths under templates/ with
// __name__ and __entity__ for the names, contents in text/template with
// the delimiters {% and %} (Go code has {{ in composite literals), and a
// .tmpl suffix so that the Go tool does not compile them here.
//
//go:embed all:templates
var templates embed.FS

// Options are the generator's inputs.
type Options struct {
	// Name is the service (services/<Name>), Entity its aggregate.
	Name, Entity string
	// Root is the repository's root directory.
	Root string
}

// Names are what the templates substitute.
type Names struct {
	Module string // the Go module path, from go.mod
	Name   string // inventory
	Title  string // Inventory
	// Whose is the possessive for prose: inventory's, sales'.
	Whose  string
	Stream string // INVENTORY
	Entity string // item
	// EntityTitle is the exported Go name of the aggregate (Item).
	EntityTitle string
	Entities    string // items: the table and the route
	// Offset is the service's place in the port plan: its public port is
	// 8000+Offset at the default base (deploy/local/ports.sh).
	Offset int
	Port   int // 8000 + Offset: Program.Port (HTTP_ADDR's default)
	// AdminPort is Port + 1000 (ADR 0023).
	AdminPort int
	// RelayOffset, ConsumerOffset and ToxiPGOffset place the relay's and
	// the consumer's processes and the PostgreSQL link in deploy/local.
	RelayOffset, ConsumerOffset, ToxiPGOffset int
	// ChaosPGPort is the port of the PostgreSQL link in the chaos
	// overlay's Toxiproxy (deploy/compose/toxiproxy/toxiproxy.json):
	// 15352+Offset, in line with catalog's 15433 (offset 81).
	ChaosPGPort int
	// Schemas of the building blocks, copied into the migration.
	OutboxSchema, PositionSchema, ParkSchema, IdempotencySchema, InboxSchema, AuditSchema string
}

// Result says what Generate wrote.
type Result struct {
	Names   Names
	Created []string // files under services/<name>/
	Edited  []string // files wired
}

// Summary is the report printed after a run.
func (r Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "new-service: created services/%s (%d files; port %d, admin %d at the default base)\n",
		r.Names.Name, len(r.Created), r.Names.Port, r.Names.Port+1000)
	for _, f := range r.Edited {
		fmt.Fprintf(&b, "  wired into %s\n", f)
	}
	fmt.Fprintf(&b, "next: go test ./services/%s/... && make run\n", r.Names.Name)
	return b.String()
}

var nameRE = regexp.MustCompile(`^[a-z]{3,20}$`)

// reserved are names a service or entity cannot take: they would clash with
// the repository's folders or with the packages a service has.
var reserved = map[string]bool{"contracts": true, "internal": true, "migrations": true, "service": true, "testdata": true, "main": true}

// imported are the package names the generated code imports: an entity
// of the same name would shadow one of them.
var imported = map[string]bool{"auth": true, "authtest": true, "bytes": true, "context": true, "embed": true, "endpoint": true,
	"errors": true, "events": true, "fmt": true, "http": true, "httpcache": true, "httpkit": true, "httptest": true,
	"idempotency": true, "inbox": true, "io": true, "json": true, "kithttp": true, "openapitest": true, "outbox": true,
	"pgdb": true, "pgx": true, "pgxpool": true, "slog": true, "stream": true, "strconv": true, "strings": true, "sync": true,
	"testing": true, "testinfra": true, "time": true, "unicode": true, "uuid": true}

// checkName reports why s cannot name a service or an entity (what).
func checkName(what, s string) error {
	switch {
	case !nameRE.MatchString(s):
		return fmt.Errorf("%s %q: must be 3–20 lower-case letters a–z (e.g. inventory)", what, s)
	case token.IsKeyword(s):
		return fmt.Errorf("%s %q: is a Go keyword; package names cannot be keywords", what, s)
	case reserved[s]:
		return fmt.Errorf("%s %q: is reserved (a folder every service or the repository already has)", what, s)
	}
	return nil
}

// plural is the English plural of a lower-case noun, for the table and
// the route: item → items, box → boxes, category → categories.
func plural(s string) string {
	switch {
	case strings.HasSuffix(s, "y") && !strings.ContainsAny(s[len(s)-2:len(s)-1], "aeiou"):
		return s[:len(s)-1] + "ies"
	case strings.HasSuffix(s, "s"), strings.HasSuffix(s, "x"), strings.HasSuffix(s, "z"),
		strings.HasSuffix(s, "ch"), strings.HasSuffix(s, "sh"):
		return s + "es"
	}
	return s + "s"
}

// Generate checks o, writes services/<name>/ and wires the service in. It
// writes nothing when a check fails.
func Generate(o Options) (Result, error) {
	if o.Root == "" {
		o.Root = "."
	}
	root, err := os.OpenRoot(o.Root)
	if err != nil {
		return Result{}, err
	}
	defer root.Close()
	n, err := resolve(root, o)
	if err != nil {
		return Result{}, err
	}
	files, err := render(n)
	if err != nil {
		return Result{}, err
	}
	edits, err := wiring(root, n)
	if err != nil {
		return Result{}, err
	}
	edits = append(edits, natsAuthConf(n))
	res := Result{Names: n}
	for _, f := range files {
		p := filepath.FromSlash(f.path)
		if err := root.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			return res, err
		}
		if err := root.WriteFile(p, f.data, f.mode); err != nil {
			return res, err
		}
		res.Created = append(res.Created, f.path)
	}
	for _, e := range edits {
		if err := root.WriteFile(filepath.FromSlash(e.path), e.data, e.mode); err != nil {
			return res, err
		}
		res.Edited = append(res.Edited, e.path)
	}
	return res, nil
}

// resolve validates o against the repository and derives the names.
func resolve(root *os.Root, o Options) (Names, error) {
	if err := errors.Join(checkName("NAME", o.Name), checkName("ENTITY", o.Entity)); err != nil {
		return Names{}, err
	}
	if imported[o.Entity] {
		return Names{}, fmt.Errorf("ENTITY %q: the generated code imports a package of that name; choose another", o.Entity)
	}
	if o.Name == o.Entity {
		return Names{}, fmt.Errorf("NAME and ENTITY are both %q: name the service and its aggregate differently (e.g. NAME=inventory ENTITY=item)", o.Name)
	}
	if _, err := root.Stat(filepath.Join("services", o.Name)); err == nil {
		return Names{}, fmt.Errorf("services/%s exists: a service of that name is already there; choose another NAME (nothing was changed)", o.Name)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Names{}, err
	}
	mod, err := modulePath(root)
	if err != nil {
		return Names{}, err
	}
	off, err := freeOffset(root)
	if err != nil {
		return Names{}, err
	}
	title := func(s string) string { return strings.ToUpper(s[:1]) + s[1:] }
	whose := o.Name + "'s"
	if strings.HasSuffix(o.Name, "s") {
		whose = o.Name + "'"
	}
	return Names{Module: mod, Name: o.Name, Title: title(o.Name), Whose: whose, Stream: strings.ToUpper(o.Name),
		Entity: o.Entity, EntityTitle: title(o.Entity), Entities: plural(o.Entity), Offset: off, Port: 8000 + off,
		AdminPort: 9000 + off, RelayOffset: off + 100, ConsumerOffset: off + 200, ToxiPGOffset: 7432 + off - 80,
		ChaosPGPort:  15352 + off,
		OutboxSchema: strings.TrimSpace(outbox.Schema), PositionSchema: strings.TrimSpace(outbox.PositionSchema),
		ParkSchema: strings.TrimSpace(outbox.ParkSchema), IdempotencySchema: strings.TrimSpace(idempotency.Schema),
		InboxSchema: strings.TrimSpace(inbox.Schema), AuditSchema: strings.TrimSpace(audit.Schema)}, nil
}

// modulePath reads the module line of root/go.mod.
func modulePath(root *os.Root) (string, error) {
	b, err := root.ReadFile("go.mod")
	if err != nil {
		return "", fmt.Errorf("run from the repository's root (no go.mod): %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if m, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.TrimSpace(m), nil
		}
	}
	return "", errors.New("go.mod has no module line")
}

type file struct {
	path string
	data []byte
	mode os.FileMode
}

// render executes every template for n; Go files are gofmt'ed.
func render(n Names) ([]file, error) {
	var out []file
	err := fs.WalkDir(templates, "templates", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := fs.ReadFile(templates, p)
		if err != nil {
			return err
		}
		data, err := execute(p, string(src), n)
		if err != nil {
			return err
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".tmpl")
		rel = strings.NewReplacer("__name__", n.Name, "__entity__", n.Entity).Replace(rel)
		if path.Ext(rel) == ".go" {
			if data, err = format.Source(data); err != nil {
				return fmt.Errorf("template %s: gofmt: %w", p, err)
			}
		}
		out = append(out, file{path: "services/" + n.Name + "/" + rel, data: data, mode: 0o600})
		return nil
	})
	return out, err
}

func execute(name, src string, n Names) ([]byte, error) {
	t, err := template.New(name).Delims("{%", "%}").Option("missingkey=error").Parse(src)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, n); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// natsAuthConf is the broker's authorization (deploy/compose/nats/auth.conf,
// ADR 0039) with n's NATS user: the Conf of natsauth.Shopfloor with the
// stream and the user the insertions add to pkg/natsauth/shopfloor.go, in
// the same places (the user above the operator).
func natsAuthConf(n Names) file {
	m := natsauth.Shopfloor
	m.Streams = append(slices.Clone(m.Streams), natsauth.Stream{Name: n.Stream, Partitions: 8})
	at := slices.IndexFunc(m.Users, func(u natsauth.User) bool { return u.Operator })
	if at < 0 {
		at = len(m.Users)
	}
	m.Users = slices.Insert(slices.Clone(m.Users), at, natsauth.User{Name: n.Name, Owns: []string{n.Stream},
		Consumes: []natsauth.Group{{Stream: n.Stream, Name: n.Name + "-counter"}}})
	return file{path: "deploy/compose/nats/auth.conf", data: []byte(m.Conf()), mode: 0o644}
}
