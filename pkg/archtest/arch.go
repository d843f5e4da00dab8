package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
)

// Module is the module path the rules apply to.
const Module = "github.com/shopfloor/shopfloor"

// Package is one package and everything it imports directly, tests included.
type Package struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// List runs `go list -json` on patterns in dir.
func List(dir string, patterns ...string) ([]Package, error) {
	return goList[Package](dir, "ImportPath,Imports,TestImports,XTestImports", patterns...)
}

// goList runs `go list -e -json=fields` on patterns in dir and decodes
// each package into a T.
func goList[T any](dir, fields string, patterns ...string) ([]T, error) {
	args := append([]string{"list", "-e", "-json=" + fields}, patterns...)
	cmd := exec.Command("go", args...) //nolint:gosec // G204: fixed program, arguments from the test itself
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w: %s", err, stderr.String())
	}
	var pkgs []T
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p T
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// Violations returns one line per import that breaks a rule, sorted.
func Violations(pkgs []Package) []string {
	var out []string
	for _, p := range pkgs {
		from, ok := strings.CutPrefix(p.ImportPath, Module+"/")
		if !ok {
			continue
		}
		seen := map[string]bool{}
		for _, imps := range [][]string{p.Imports, p.TestImports, p.XTestImports} {
			for _, imp := range imps {
				to, ok := strings.CutPrefix(imp, Module+"/")
				if !ok || seen[to] {
					continue
				}
				seen[to] = true
				if why := check(from, to); why != "" {
					out = append(out, fmt.Sprintf("%s imports %s: %s", from, to, why))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func check(from, to string) string {
	fromTop, fromSvc := area(from)
	toTop, toSvc := area(to)
	switch {
	case fromTop == "pkg" && toTop == "services":
		return "building blocks in pkg/ never import services/"
	case fromTop == "services" && toTop == "services" && fromSvc != toSvc:
		api := "services/" + toSvc + "/" + toSvc + "api"
		if to != api && !strings.HasPrefix(to, api+"/") {
			return fmt.Sprintf("a service imports another only through its api package (%s)", api)
		}
	}
	return ""
}

// area splits "services/orders/internal/x" into ("services", "orders").
func area(path string) (top, svc string) {
	parts := strings.SplitN(path, "/", 3)
	top = parts[0]
	if top == "services" && len(parts) > 1 {
		svc = parts[1]
	}
	return top, svc
}
