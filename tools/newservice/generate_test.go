package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGeneratedServiceBuildsAndPassesItsTestsInACopyOfTheRepository is
// the generator's CI test: it copies the repository's files into a
// temporary directory, generates "inventory" there, and runs in the copy
// the build of everything, vet of the new service, and the tests of the
// new service, the arch test, compose's tests and the event contracts
// (with this process's SHOPFLOOR_TEST_* environment: the same PostgreSQL
// and NATS). Any failure fails this test with the command's output.
func TestGeneratedServiceBuildsAndPassesItsTestsInACopyOfTheRepository(t *testing.T) {
	if testing.Short() {
		t.Skip("generates and tests a whole service (about 2 minutes); skipped with -short")
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	copyRepository(t, repo, dir)
	res, err := Generate(Options{Name: "inventory", Entity: "item", Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", res.Summary())
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	goCmd(ctx, t, dir, "build", "./...")
	goCmd(ctx, t, dir, "vet", "./services/inventory/...")
	goCmd(ctx, t, dir, "test", "-count=1", "./services/inventory/...", "./pkg/archtest/", "./deploy/compose/", "./services/contracts/",
		"./chaos/target/", "./pkg/natsauth/")
	// make run's script still parses, and its banner names the service.
	if out, err := exec.CommandContext(ctx, "bash", "-n", filepath.Join(dir, "deploy", "local", "run.sh")).CombinedOutput(); err != nil {
		t.Fatalf("bash -n run.sh: %v\n%s", err, out)
	}
	banner := bannerOf(ctx, t, dir)
	if !strings.Contains(banner, "inventory        http://localhost:8086/v1/items/{id}") {
		t.Errorf("run.sh's banner lines for generated services:\n%s", banner)
	}
	// A second run refuses and changes nothing.
	before := snapshot(t, dir)
	if _, err := Generate(Options{Name: "inventory", Entity: "item", Root: dir}); err == nil || !strings.Contains(err.Error(), "services/inventory exists") {
		t.Fatalf("second Generate: %v, want a refusal naming services/inventory", err)
	}
	if after := snapshot(t, dir); after != before {
		t.Fatal("the refused second run changed files")
	}
}

// bannerOf runs the part of dir's deploy/local/run.sh that builds the
// generated services' banner lines (from "generated=" to its marker), with
// the port plan of deploy/local/ports.sh at the default base, and returns
// what it sets.
func bannerOf(ctx context.Context, t *testing.T, dir string) string {
	t.Helper()
	script, err := os.ReadFile(filepath.Join(dir, "deploy", "local", "run.sh"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(script)
	start, end := strings.Index(s, "\ngenerated=\"\"\n"), strings.Index(s, Marker+" banner above this line")
	if start < 0 || end < start {
		t.Fatal("run.sh: no generated=\"\" … banner marker block")
	}
	cmd := exec.CommandContext(ctx, "bash", "-c", `export SHOPFLOOR_PORT_BASE=8000; . deploy/local/ports.sh; `+s[start:end]+`
printf '%s' "$generated"`)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run.sh's banner block: %v\n%s", err, out)
	}
	return string(out)
}

// goCmd runs the go command in dir: -trimpath, so that the build cache
// (GOCACHE, shared with the outer test) serves the copy as it serves the
// repository.
func goCmd(ctx context.Context, t *testing.T, dir string, args ...string) {
	t.Helper()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-trimpath", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s in the copy: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("go %s: ok (%s)", strings.Join(args, " "), time.Since(start).Round(time.Second))
}

// copyRepository copies the files git knows in repo (tracked, and new ones
// not ignored) to dir; without git, every file but .git/, bin/ and .run/.
func copyRepository(t *testing.T, repo, dir string) {
	t.Helper()
	var files []string
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = repo
	if out, err := cmd.Output(); err == nil {
		for f := range strings.SplitSeq(strings.TrimSuffix(string(out), "\x00"), "\x00") {
			files = append(files, f)
		}
	} else {
		err := filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(repo, p)
			if d.IsDir() && (rel == ".git" || rel == "bin" || rel == ".run" || rel == "test-artifacts") {
				return filepath.SkipDir
			}
			if d.Type().IsRegular() {
				files = append(files, filepath.ToSlash(rel))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		src := filepath.Join(repo, filepath.FromSlash(f))
		st, err := os.Lstat(src)
		if errors.Is(err, fs.ErrNotExist) || (err == nil && !st.Mode().IsRegular()) {
			continue // deleted in the work tree, or a link
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, st.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	if len(files) < 100 {
		t.Fatalf("copied %d files; the test is not looking at the repository", len(files))
	}
}

// snapshot is every file under dir with its content, in one string.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b bytes.Buffer
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		b.WriteString(p + "\x00" + string(data) + "\x00")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
