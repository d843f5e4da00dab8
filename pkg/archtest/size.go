package archtest

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path"
	"strings"
)

// MaxFuncLines is the most lines a production function may span, from its
// func line to its closing brace: a longer one is split into named steps,
// so that it reads as the phases of what it does.
const MaxFuncLines = 80

// MaxTestFileLines is the most lines a test file may have: a longer one is
// split by topic into files of the same package.
const MaxTestFileLines = 800

// FuncSizeExempt are the folders whose functions may be longer than
// MaxFuncLines: the chaos drills are scripts, read top to bottom as the
// story of one failure.
var FuncSizeExempt = []string{"chaos"}

// LongFuncs returns one line per function or method, declared in a .go
// file of fsys (the repository root) that is not a test, that spans more
// than limit lines, in the order of the files and of their
// declarations. Folders in FuncSizeExempt, testdata/ and
// folders whose name starts with "." or "_" are left out.
func LongFuncs(fsys fs.FS, limit int) ([]string, error) {
	var out []string
	err := walkGo(fsys, func(p string, src []byte) error {
		if strings.HasSuffix(p, "_test.go") || underAny(p, FuncSizeExempt) {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, src, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("archtest: %w", err)
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			start, end := fset.Position(fd.Pos()).Line, fset.Position(fd.End()).Line
			if n := end - start + 1; n > limit {
				out = append(out, fmt.Sprintf("%s:%d: %s is %d lines, more than %d: split it into named steps", p, start, funcLabel(fd), n, limit))
			}
		}
		return nil
	})
	return out, err
}

// LongTestFiles returns one line per _test.go file of fsys with more than
// limit lines, in path order. testdata/ and folders whose name starts with "."
// or "_" are left out.
func LongTestFiles(fsys fs.FS, limit int) ([]string, error) {
	var out []string
	err := walkGo(fsys, func(p string, src []byte) error {
		if !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		if n := bytes.Count(src, []byte("\n")); n > limit {
			out = append(out, fmt.Sprintf("%s: %d lines, more than %d: split it by topic into another file of the package", p, n, limit))
		}
		return nil
	})
	return out, err
}

// walkGo calls fn with the path and contents of every .go file of fsys.
func walkGo(fsys fs.FS, fn func(p string, src []byte) error) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); p != "." && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return fs.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		src, err := fs.ReadFile(fsys, p)
		if err != nil {
			return fmt.Errorf("archtest: %w", err)
		}
		return fn(p, src)
	})
}

// underAny reports whether p is inside one of the folders dirs.
func underAny(p string, dirs []string) bool {
	for _, d := range dirs {
		if strings.HasPrefix(p, path.Clean(d)+"/") {
			return true
		}
	}
	return false
}

// funcLabel is "Name" for a function, "Type.Name" for a method.
func funcLabel(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	t := fd.Recv.List[0].Type
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
			continue
		case *ast.IndexExpr:
			t = x.X
			continue
		case *ast.IndexListExpr:
			t = x.X
			continue
		case *ast.Ident:
			return x.Name + "." + fd.Name.Name
		}
		return fd.Name.Name
	}
}
