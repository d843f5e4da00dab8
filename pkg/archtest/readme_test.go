package archtest_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmePatternIndexResolves: every row of README's pattern index
// points at things that exist. A linked path is a file of the repository;
// a link whose text is `Type.Method`, `Func` or `TestName` names a
// function that file declares; a drill (a code span in the drill column)
// is one of chaos/README.md's drills. A rename that would leave the index
// pointing at nothing fails here.
func TestReadmePatternIndexResolves(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	chaos, err := os.ReadFile(filepath.Join(root, "chaos", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := patternRows(string(readme))
	if len(rows) < 12 {
		t.Fatalf("README's pattern index has %d rows, want at least 12 (is the heading %q still there?)", len(rows), patternHeading)
	}
	for _, row := range rows {
		for _, err := range checkPatternRow(root, string(chaos), row) {
			t.Errorf("pattern %q: %v", row[0], err)
		}
	}
}

// TestPatternRowCheckFindsBrokenPointers proves the checker fails on each
// kind of broken pointer.
func TestPatternRowCheckFindsBrokenPointers(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	chaos := "| `replay` | … |"
	ok := []string{"p", "[`pkg/stream`](pkg/stream/doc.go)", "[`Partition`](pkg/stream/partition.go)", "[`Group.Run`](pkg/stream/group.go)",
		"[0005](docs/adr/0005-partitioned-streams.md)", "[`TestPerKeyOrderAcrossInstances`](pkg/stream/group_test.go)", "`replay`", "003 \"x\""}
	if errs := checkPatternRow(root, chaos, ok); len(errs) != 0 {
		t.Fatalf("a good row: %v", errs)
	}
	for name, bad := range map[string][2]string{
		"missing file":   {"[0005](docs/adr/0005-no-such-decision.md)", "no such file"},
		"missing func":   {"[`Partitio`](pkg/stream/partition.go)", "declares no func Partitio"},
		"missing method": {"[`Group.Walk`](pkg/stream/group.go)", "declares no method Group.Walk"},
		"missing test":   {"[`TestNoSuchThing`](pkg/stream/group_test.go)", "declares no func TestNoSuchThing"},
		"missing drill":  {"`no-such-drill`", "not a drill of chaos/README.md"},
	} {
		row := append([]string{}, ok...)
		row[6] = "`replay`"
		if name == "missing drill" {
			row[6] = bad[0]
		} else {
			row[2] = bad[0]
		}
		errs := checkPatternRow(root, chaos, row)
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), bad[1]) {
			t.Errorf("%s: %v, want one error containing %q", name, errs, bad[1])
		}
	}
}

const patternHeading = "## Patterns: where each one lives"

// patternRows returns the cells of each body row of the table under
// patternHeading.
func patternRows(readme string) [][]string {
	_, after, found := strings.Cut(readme, patternHeading)
	if !found {
		return nil
	}
	var rows [][]string
	inTable := false
	for line := range strings.SplitSeq(after, "\n") {
		switch {
		case strings.HasPrefix(line, "|---"):
			inTable = true
		case inTable && strings.HasPrefix(line, "|"):
			cells := strings.Split(strings.Trim(line, "|"), " | ")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			rows = append(rows, cells)
		case inTable:
			return rows
		}
	}
	return rows
}

var (
	mdLink   = regexp.MustCompile("\\[(`?)([^\\]`]+)`?\\]\\(([^)#]+)(#[^)]*)?\\)")
	codeSpan = regexp.MustCompile("`([a-z0-9-]+)`")
	funcName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	method   = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)$`)
)

// checkPatternRow checks one row (8 cells; the drill is the 7th).
func checkPatternRow(root, chaosReadme string, row []string) []error {
	if len(row) != 8 {
		return []error{fmt.Errorf("%d cells, want 8", len(row))}
	}
	var errs []error
	for _, cell := range row {
		for _, m := range mdLink.FindAllStringSubmatch(cell, -1) {
			code, text, path := m[1] != "", m[2], m[3]
			if strings.Contains(path, "://") {
				continue
			}
			src, err := os.ReadFile(filepath.Join(root, path))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: no such file (%w)", path, errors.Unwrap(err)))
				continue
			}
			if !code || strings.Contains(text, "/") {
				continue
			}
			if mm := method.FindStringSubmatch(text); mm != nil {
				re := regexp.MustCompile(`(?m)^func \((\w+ )?\*?` + mm[1] + `(\[[^\]]*\])?\) ` + mm[2] + `[(\[]`)
				if !re.Match(src) {
					errs = append(errs, fmt.Errorf("%s declares no method %s.%s", path, mm[1], mm[2]))
				}
				continue
			}
			if funcName.MatchString(text) {
				re := regexp.MustCompile(`(?m)^func ` + text + `[(\[]`)
				if !re.Match(src) {
					errs = append(errs, fmt.Errorf("%s declares no func %s", path, text))
				}
			}
		}
	}
	for _, m := range codeSpan.FindAllStringSubmatch(row[6], -1) {
		if !strings.Contains(chaosReadme, "| `"+m[1]+"` |") {
			errs = append(errs, fmt.Errorf("%s is not a drill of chaos/README.md", m[1]))
		}
	}
	return errs
}
