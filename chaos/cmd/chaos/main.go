// Command chaos runs chaos drills against a running shopfloor and prints
// which invariants held: see run.go for the commands and flags, and
// chaos/README.md for the drills.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args, os.Getenv, os.Stdout)
	if err == nil {
		return
	}
	code := 3
	switch {
	case errors.Is(err, errViolated):
		code = 1
	case errors.Is(err, errUsage):
		code = 2
	}
	fmt.Fprintln(os.Stderr, "chaos:", err)
	stop()
	os.Exit(code)
}
