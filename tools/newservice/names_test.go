package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckNameAcceptsLowerCaseWordsAndRefusesTheRest(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"inventory", "abc", strings.Repeat("a", 20)} {
		if err := checkName("NAME", ok); err != nil {
			t.Errorf("checkName(%q) = %v, want nil", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"ab": "3–20", strings.Repeat("a", 21): "3–20", "Inventory": "lower-case", "in_ventory": "lower-case",
		"inv3ntory": "lower-case", "": "3–20", "func": "Go keyword", "select": "Go keyword", "contracts": "reserved",
		"internal": "reserved",
	} {
		if err := checkName("NAME", bad); err == nil || !strings.Contains(err.Error(), want) && !strings.Contains(err.Error(), "3–20") {
			t.Errorf("checkName(%q) = %v, want an error about %s", bad, err, want)
		}
	}
}

func TestPluralOfCommonNouns(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"item": "items", "box": "boxes", "category": "categories", "day": "days",
		"batch": "batches", "address": "addresses"} {
		if got := plural(in); got != want {
			t.Errorf("plural(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestInsertAboveKeepsTheMarkerAndItsIndentation(t *testing.T) {
	t.Parallel()
	in := "a\n\t# new-service: things above this line\nb\n"
	out, err := insertAbove([]byte(in), "new-service: things", "x\ny\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "a\n\tx\n\ty\n\t# new-service: things above this line\nb\n"; string(out) != want {
		t.Fatalf("insertAbove = %q, want %q", out, want)
	}
	if _, err := insertAbove([]byte("a\n"), "new-service: things", "x"); err == nil || !strings.Contains(err.Error(), "no marker") {
		t.Fatalf("without the marker: %v", err)
	}
	if _, err := insertAbove([]byte(in+in), "new-service: things", "x"); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("with the marker twice: %v", err)
	}
}

// TestGenerateRefusesBeforeWritingAnything: a taken name, a bad name or a
// missing marker leaves the repository as it was.
func TestGenerateRefusesBeforeWritingAnything(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for f, data := range map[string]string{
		"go.mod":                 "module example.com/fork\n",
		"deploy/local/ports.sh":  "CATALOG_PORT=$((B + 81))\n",
		"services/orders/README": "x",
	} {
		p := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range []Options{{Name: "orders", Entity: "order"}, {Name: "x", Entity: "item"}, {Name: "stock", Entity: "stock"}} {
		o.Root = dir
		if _, err := Generate(o); err == nil {
			t.Errorf("Generate(%+v): no error", o)
		}
	}
	_, err := Generate(Options{Name: "stock", Entity: "item", Root: dir})
	if err == nil || !strings.Contains(err.Error(), "no marker") {
		t.Errorf("Generate without the wiring's markers: %v, want a missing-marker error", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "services", "stock")); err == nil {
		t.Error("a refused Generate wrote services/stock")
	}
}

func TestFreeOffsetSkipsTheTakenPorts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "deploy", "local"), 0o750); err != nil {
		t.Fatal(err)
	}
	ports := "SEARCH_PORT=$((B + 85))\nINVENTORY_PORT=$((B + 86))\nSTOCK_PORT=$((B + 87))\n"
	if err := os.WriteFile(filepath.Join(dir, "deploy", "local", "ports.sh"), []byte(ports), 0o600); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if o, err := freeOffset(root); err != nil || o != 88 {
		t.Fatalf("freeOffset = %d, %v; want 88", o, err)
	}
}

// TestAppendToArrayAddsOneElementOnItsOwnLine: the JSON wiring (Toxiproxy's
// proxies) appends in the last element's indentation and keeps the file
// valid; an empty array gets its first element; what is not an array, or
// not a value, is refused.
func TestAppendToArrayAddsOneElementOnItsOwnLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"[\n  {\"a\": 1},\n  {\"b\": 2}\n]\n", "[\n  {\"a\": 1},\n  {\"b\": 2},\n  {\"c\": 3}\n]\n"},
		{"[\n\t{\"a\": 1}]", "[\n\t{\"a\": 1},\n\t{\"c\": 3}]"},
		{"[]\n", "[\n  {\"c\": 3}\n]\n"},
	} {
		out, err := appendToArray([]byte(tc.in), []byte(`{"c": 3}`))
		if err != nil || string(out) != tc.want {
			t.Errorf("appendToArray(%q) = %q, %v; want %q", tc.in, out, err, tc.want)
		}
	}
	if _, err := appendToArray([]byte(`{"a": 1}`), []byte(`{"c": 3}`)); err == nil {
		t.Error("appended to an object")
	}
	if _, err := appendToArray([]byte(`[1]`), []byte(`{"c": `)); err == nil {
		t.Error("appended a broken value")
	}
}
