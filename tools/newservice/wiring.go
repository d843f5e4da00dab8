package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Marker is the text of the comments that say where the generator inserts
// a new service's lines in a shared file: "new-service: <what> above this
// line". The lines go right above the marker, in the marker's indentation.
const Marker = "new-service:"

// insertion is one piece of wiring: text (a template) inserted above the
// line of file that holds the marker comment Marker+" "+what.
type insertion struct {
	file, what, text string
}

// offsets are the places of the port plan a generated service may take
// (deploy/local/ports.sh: the public port is base+offset, its relay's
// +100, its consumer's +200, its PostgreSQL link 7432+offset-80); 90 is
// identity's, 99 the payment simulator's.
var offsets = []int{86, 87, 88, 89, 91, 92, 93, 94, 95, 96, 97, 98}

var portRE = regexp.MustCompile(`^[A-Z0-9_]+_PORT=\$\(\(B \+ ([0-9]+)\)\)`)

// freeOffset is the first offset no *_PORT of deploy/local/ports.sh uses.
func freeOffset(root *os.Root) (int, error) {
	b, err := root.ReadFile(filepath.Join("deploy", "local", "ports.sh"))
	if err != nil {
		return 0, err
	}
	var used []int
	for line := range strings.Lines(string(b)) {
		if m := portRE.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			used = append(used, n)
		}
	}
	for _, o := range offsets {
		if !slices.Contains(used, o) {
			return o, nil
		}
	}
	return 0, fmt.Errorf("deploy/local/ports.sh: every port offset a generated service may take (%v) is used", offsets)
}

// wiring applies the insertions for n to the repository's files in
// memory and returns the changed files; a missing marker is an error.
func wiring(root *os.Root, n Names) ([]file, error) {
	changed := map[string][]byte{}
	var order []string
	for _, ins := range insertions {
		data, ok := changed[ins.file]
		if !ok {
			var err error
			if data, err = root.ReadFile(filepath.FromSlash(ins.file)); err != nil {
				return nil, fmt.Errorf("wiring: %w", err)
			}
			order = append(order, ins.file)
		}
		text, err := execute(ins.file+": "+ins.what, ins.text, n)
		if err != nil {
			return nil, err
		}
		var out []byte
		if filepath.Ext(ins.file) == ".json" {
			out, err = appendToArray(data, text)
		} else {
			out, err = insertAbove(data, Marker+" "+ins.what, string(text))
		}
		if err != nil {
			return nil, fmt.Errorf("wiring %s: %w", ins.file, err)
		}
		changed[ins.file] = out
	}
	files := make([]file, 0, len(order))
	for _, f := range order {
		st, err := root.Stat(filepath.FromSlash(f))
		if err != nil {
			return nil, err
		}
		data := changed[f]
		if filepath.Ext(f) == ".go" {
			if data, err = format.Source(data); err != nil {
				return nil, fmt.Errorf("wiring %s: gofmt: %w", f, err)
			}
		}
		files = append(files, file{path: f, data: data, mode: st.Mode().Perm()})
	}
	return files, nil
}

// insertAbove inserts text's lines above the one line of data that
// contains marker, each indented like the marker line.
func insertAbove(data []byte, marker, text string) ([]byte, error) {
	lines := strings.SplitAfter(string(data), "\n")
	at := -1
	for i, l := range lines {
		if strings.Contains(l, marker) {
			if at >= 0 {
				return nil, fmt.Errorf("the marker %q is there twice", marker)
			}
			at = i
		}
	}
	if at < 0 {
		return nil, fmt.Errorf("no marker comment %q: put it back where new services' lines go (see tools/newservice)", marker)
	}
	indent := lines[at][:len(lines[at])-len(strings.TrimLeft(lines[at], " \t"))]
	var b strings.Builder
	for l := range strings.Lines(strings.TrimRight(text, "\n") + "\n") {
		if strings.TrimSpace(l) != "" {
			b.WriteString(indent)
		}
		b.WriteString(l)
	}
	out := slices.Concat(lines[:at], []string{b.String()}, lines[at:])
	return []byte(strings.Join(out, "")), nil
}

// appendToArray appends value, one JSON value, to data's top-level JSON
// array, on a line of its own in the indentation of the array's last
// element (a JSON file has no comment for a marker).
func appendToArray(data, value []byte) ([]byte, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(data, &elems); err != nil {
		return nil, fmt.Errorf("not a JSON array: %w", err)
	}
	if !json.Valid(value) {
		return nil, fmt.Errorf("%s is not a JSON value", value)
	}
	value = bytes.TrimSpace(value)
	end := bytes.LastIndexByte(data, ']')
	body := bytes.TrimRight(data[:end], " \t\r\n") // up to the last element, or "["
	if len(elems) == 0 {
		return slices.Concat(body, []byte("\n  "), value, []byte("\n"), data[end:]), nil
	}
	line := body[bytes.LastIndexByte(body, '\n')+1:]
	indent := line[:len(line)-len(bytes.TrimLeft(line, " \t"))]
	return slices.Concat(body, []byte(",\n"), indent, value, data[len(body):]), nil
}
