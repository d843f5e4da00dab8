//go:build !unix

package target

import "context"

// LockSystem is a no-op where flock does not exist; see lock_unix.go.
func LockSystem(context.Context) (unlock func(), err error) { return func() {}, nil }
