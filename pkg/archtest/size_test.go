package archtest_test

import (
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/shopfloor/shopfloor/pkg/archtest"
)

// TestNoProductionFunctionIsLongerThan80Lines checks the real repository.
func TestNoProductionFunctionIsLongerThan80Lines(t *testing.T) {
	t.Parallel()
	got, err := archtest.LongFuncs(os.DirFS("../.."), archtest.MaxFuncLines)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range got {
		t.Error(v)
	}
}

// TestNoTestFileIsLongerThan800Lines checks the real repository.
func TestNoTestFileIsLongerThan800Lines(t *testing.T) {
	t.Parallel()
	got, err := archtest.LongTestFiles(os.DirFS("../.."), archtest.MaxTestFileLines)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range got {
		t.Error(v)
	}
}

// TestSizeRulesCatchLongFunctionsAndTestFiles proves both rules fail on
// what is too long and pass what is at the limit, and that test files
// and chaos/ are left out of the function rule.
func TestSizeRulesCatchLongFunctionsAndTestFiles(t *testing.T) {
	t.Parallel()
	body := func(lines int) string { return strings.Repeat("\t_ = 0\n", lines-2) }
	fn := func(name string, lines int) string { return "func " + name + "() {\n" + body(lines) + "}\n" }
	src := func(decls ...string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte("package x\n\ntype T struct{}\n\n" + strings.Join(decls, "\n"))}
	}
	fsys := fstest.MapFS{
		"pkg/x/x.go":               src(fn("Short", 80), fn("Long", 81), "func (t *T) Method() {\n"+body(90)+"}\n"),
		"pkg/x/x_test.go":          src(fn("TestLong", 200)),
		"pkg/x/big_test.go":        {Data: []byte(strings.Repeat("\n", 801))},
		"pkg/x/ok_test.go":         {Data: []byte(strings.Repeat("\n", 800))},
		"chaos/drill/drill.go":     src(fn("Drill", 300)),
		"pkg/x/testdata/bad.go":    {Data: []byte("not go")},
		"services/y/internal/y.go": src(fn("Generic", 81)),
	}
	funcs, err := archtest.LongFuncs(fsys, archtest.MaxFuncLines)
	if err != nil {
		t.Fatal(err)
	}
	wantFuncs := []string{
		"pkg/x/x.go:86: Long is 81 lines, more than 80: split it into named steps",
		"pkg/x/x.go:168: T.Method is 90 lines, more than 80: split it into named steps",
		"services/y/internal/y.go:5: Generic is 81 lines, more than 80: split it into named steps",
	}
	files, err := archtest.LongTestFiles(fsys, archtest.MaxTestFileLines)
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"pkg/x/big_test.go: 801 lines, more than 800: split it by topic into another file of the package"}
	if !slices.Equal(funcs, wantFuncs) || !slices.Equal(files, wantFiles) {
		t.Errorf("long functions:\n%q\nwant:\n%q\nlong test files:\n%q\nwant:\n%q", funcs, wantFuncs, files, wantFiles)
	}
}
