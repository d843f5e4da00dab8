// Command exampleservice runs the example service. See package
// exampleservice for the roles and the configuration.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/shopfloor/shopfloor/pkg/exampleservice"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := exampleservice.Run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "exampleservice:", err)
		stop()
		os.Exit(1)
	}
}
