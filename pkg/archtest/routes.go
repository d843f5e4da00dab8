package archtest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// RoutesSignature is the one way a service's HTTP transport
// (internal/<noun>http) mounts its routes (docs/STYLE.md, "Layout"):
// the public routes and the /v1/admin/ routes together, the use cases
// behind an interface the transport declares, everything else in a
// config struct that carries the token verifier.
const RoutesSignature = "func Routes(mux *http.ServeMux, svc Service, cfg Config)"

// RoutesViolations checks the HTTP transport of every service that owns
// data (has migrations/) under services/ in fsys (the repository root)
// and returns one line per departure from RoutesSignature, sorted: no
// Routes, another signature, Service not an interface, Config not a
// struct with an Authz field, or a separate exported AdminRoutes.
func RoutesViolations(fsys fs.FS) ([]string, error) {
	entries, err := fs.ReadDir(fsys, "services")
	if err != nil {
		return nil, fmt.Errorf("archtest: read services/: %w", err)
	}
	var out []string
	for _, e := range entries {
		dir := "services/" + e.Name()
		if _, err := fs.Stat(fsys, dir+"/migrations"); !e.IsDir() || NotServices[e.Name()] != "" || err != nil {
			continue
		}
		noun := domainNoun(fsys, dir+"/internal")
		if noun == "" {
			continue // ShapeViolations reports it
		}
		pkg := dir + "/internal/" + noun + "http"
		decls, err := transportDecls(fsys, pkg)
		if err != nil {
			return nil, err
		}
		for _, v := range decls.violations() {
			out = append(out, pkg+": "+v)
		}
	}
	sort.Strings(out)
	return out, nil
}

// transport is what RoutesViolations reads of one transport package.
type transport struct {
	routes      *ast.FuncDecl
	service     ast.Expr // the type of Service, nil when not declared
	config      ast.Expr
	adminRoutes bool
}

// transportDecls parses the non-test .go files of dir.
func transportDecls(fsys fs.FS, dir string) (transport, error) {
	var t transport
	files, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return t, fmt.Errorf("archtest: %w", err)
	}
	for _, f := range files {
		name := f.Name()
		if f.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return t, fmt.Errorf("archtest: %w", err)
		}
		file, err := parser.ParseFile(token.NewFileSet(), name, src, parser.SkipObjectResolution)
		if err != nil {
			return t, fmt.Errorf("archtest: %s: %w", dir, err)
		}
		t.add(file)
	}
	return t, nil
}

func (t *transport) add(file *ast.File) {
	for _, d := range file.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			switch {
			case d.Recv == nil && d.Name.Name == "Routes":
				t.routes = d
			case d.Recv == nil && d.Name.Name == "AdminRoutes":
				t.adminRoutes = true
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				if ts, ok := s.(*ast.TypeSpec); ok && ts.Name.Name == "Service" {
					t.service = ts.Type
				} else if ok && ts.Name.Name == "Config" {
					t.config = ts.Type
				}
			}
		}
	}
}

func (t transport) violations() []string {
	var out []string
	if t.routes == nil {
		out = append(out, "no Routes: want "+RoutesSignature)
	} else if got := signature(t.routes); got != RoutesSignature {
		out = append(out, "Routes is "+got+": want "+RoutesSignature)
	}
	if _, ok := t.service.(*ast.InterfaceType); !ok {
		out = append(out, "Service is not an interface declared here (the use cases Routes calls)")
	}
	if st, ok := t.config.(*ast.StructType); !ok || !hasField(st, "Authz") {
		out = append(out, "Config is not a struct with an Authz field (who may call each route)")
	}
	if t.adminRoutes {
		out = append(out, "AdminRoutes: Routes mounts the /v1/admin/ routes too")
	}
	return out
}

// signature prints fd's parameters and results the way they are written.
func signature(fd *ast.FuncDecl) string {
	var params []string
	for _, f := range fd.Type.Params.List {
		typ := exprString(f.Type)
		for _, n := range f.Names {
			params = append(params, n.Name+" "+typ)
		}
	}
	s := "func " + fd.Name.Name + "(" + strings.Join(params, ", ") + ")"
	if fd.Type.Results != nil {
		s += " (results)"
	}
	return s
}

func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.StarExpr:
		return "*" + exprString(e.X)
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	case *ast.Ellipsis:
		return "..." + exprString(e.Elt)
	default:
		return fmt.Sprintf("%T", e)
	}
}

func hasField(st *ast.StructType, name string) bool {
	for _, f := range st.Fields.List {
		for _, n := range f.Names {
			if n.Name == name {
				return true
			}
		}
	}
	return false
}
