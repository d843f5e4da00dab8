//go:build unix

package target

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// LockSystem takes a machine-wide lock (flock on a file in the temporary
// directory) that tests starting a whole local topology hold while it
// runs, so that two of them (the end-to-end test, the chaos drills) never
// compete for the machine's cores (each runs its own PostgreSQL cluster
// when the server binaries are installed; on a shared server one topology
// holds about 60 of the default 100 connections). It waits
// until the lock is free or ctx ends; release it with the returned func.
func LockSystem(ctx context.Context) (unlock func(), err error) {
	path := filepath.Join(os.TempDir(), "shopfloor-system-test.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600) //nolint:gosec // G304: a fixed name in the temporary directory
	if err != nil {
		return nil, fmt.Errorf("system lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("system lock %s: %w", path, err)
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = f.Close()
			return nil, fmt.Errorf("system lock %s: %w", path, ctx.Err())
		case <-t.C:
		}
	}
}
