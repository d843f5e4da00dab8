package archtest

import (
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// NotServices are the folders under services/ that are not services: the
// cross-service contract test (ADR 0032).
var NotServices = map[string]string{"contracts": "the event contract test of every stream"}

// layerSuffixes are the internal packages of a service that owns data
// (one with migrations/), after its domain noun: the domain types
// (<noun>), the HTTP transport, the PostgreSQL store, the stream
// consumers and the use cases (docs/STYLE.md, "Layout").
var layerSuffixes = []string{"", "http", "pg", "stream", "svc"}

// ShapeViolations checks the folder shape of every service under
// services/ in fsys (the repository root) and returns one line per missing
// part, sorted. Every service has README.md, cmd/<svc>/ and an
// <svc>api/ package (its public contract) or, for an edge service without
// one, an internal/ folder. A service with migrations/ owns data and also
// has internal/<noun>, <noun>http, <noun>pg, <noun>stream and <noun>svc,
// for one domain noun.
func ShapeViolations(fsys fs.FS) ([]string, error) {
	entries, err := fs.ReadDir(fsys, "services")
	if err != nil {
		return nil, fmt.Errorf("archtest: read services/: %w", err)
	}
	var out []string
	for _, e := range entries {
		svc := e.Name()
		if !e.IsDir() || NotServices[svc] != "" {
			continue
		}
		dir := "services/" + svc
		has := func(p string) bool { _, err := fs.Stat(fsys, dir+"/"+p); return err == nil }
		missing := func(what string) { out = append(out, fmt.Sprintf("%s: no %s", dir, what)) }
		// cmd/<svc>: the command table, the serve command's config, the
		// wiring of its roles (docs/STYLE.md, "Layout").
		for _, p := range []string{"README.md", "cmd/" + svc + "/main.go", "cmd/" + svc + "/config.go", "cmd/" + svc + "/run.go",
			"cmd/" + svc + "/testdata/help.txt"} {
			if !has(p) {
				missing(p)
			}
		}
		if !has(svc+"api") && !has("internal") {
			missing(svc + "api/ (the public contract) nor internal/")
		}
		if !has("migrations") {
			continue
		}
		if !has(svc + "api") {
			missing(svc + "api/ (a service that owns data publishes its contract)")
		}
		noun := domainNoun(fsys, dir+"/internal")
		if noun == "" {
			missing("internal/<noun>svc (the use cases)")
			continue
		}
		for _, s := range layerSuffixes {
			if !has("internal/" + noun + s) {
				missing("internal/" + noun + s)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// domainNoun is the <noun> of the internal/<noun>svc package in dir, or "".
func domainNoun(fsys fs.FS, dir string) string {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if noun, ok := strings.CutSuffix(e.Name(), "svc"); ok && e.IsDir() && noun != "" {
			return noun
		}
	}
	return ""
}
