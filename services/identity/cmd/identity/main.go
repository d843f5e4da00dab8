// Command identity runs the identity service: `identity help` lists its commands
// and roles. main.go is the command table, config.go the serve command's
// configuration, run.go the wiring of its roles.
package main

import (
	"context"
	"io"

	"github.com/shopfloor/shopfloor/pkg/service"
)

// program is identity's command table (pkg/service): serve (no roles,
// no database) and token.
var program = service.Program[Config]{
	Name: "identity", Port: 8090,
	Commands: []service.Command{{Name: "token", Args: "[-issuer URL] [-client ID] [-audience AUD] [USER]",
		Doc: "print an access token (a person's with the cli client, or a service's)", Run: func(ctx context.Context, inv *service.Invocation) error {
			return tokenCommand(ctx, inv.Args, inv.Getenv, inv.Stdout)
		}}},
	Edge: edge,
}

func main() { program.Main() }

// run is main without the process (arguments, environment and output
// passed in): the tests call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return program.Run(ctx, args, getenv, stdout)
}
