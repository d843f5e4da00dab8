package archtest

import (
	"fmt"
	"sort"
	"strings"
)

// BannedModules are the modules no binary of the repository may compile
// in, with the reason. A test module may still use them; a binary may not.
var BannedModules = map[string]string{
	"github.com/afex/hystrix-go": "abandoned since 2018; go-kit's circuitbreaker package pulls it in: use github.com/sony/gobreaker directly",
	"github.com/streadway/handy": "abandoned; go-kit's circuitbreaker package pulls it in: use github.com/sony/gobreaker directly",
}

// Binary is a main package and every package it compiles in.
type Binary struct {
	ImportPath string
	Name       string
	Deps       []string
}

// ListBinaries runs `go list -deps` on patterns in dir (through the Deps
// field of each package, one go list call) and returns the main packages
// among them.
func ListBinaries(dir string, patterns ...string) ([]Binary, error) {
	pkgs, err := goList[Binary](dir, "ImportPath,Name,Deps", patterns...)
	if err != nil {
		return nil, err
	}
	var bins []Binary
	for _, p := range pkgs {
		if p.Name == "main" {
			bins = append(bins, p)
		}
	}
	return bins, nil
}

// BannedDeps returns one line per binary and banned module it compiles in
// (a package of the module, or the module's root package), sorted.
func BannedDeps(bins []Binary, banned map[string]string) []string {
	var out []string
	for _, b := range bins {
		seen := map[string]bool{}
		for _, dep := range b.Deps {
			for mod, why := range banned {
				if (dep == mod || strings.HasPrefix(dep, mod+"/")) && !seen[mod] {
					seen[mod] = true
					out = append(out, fmt.Sprintf("%s compiles in %s (%s): %s", b.ImportPath, mod, dep, why))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}
