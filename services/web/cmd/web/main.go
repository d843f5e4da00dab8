// Command web runs the web service: `web help` lists its commands
// and roles. main.go is the command table, config.go the serve command's
// configuration, run.go the wiring of its roles.
package main

import (
	"context"
	"io"

	"github.com/shopfloor/shopfloor/pkg/service"
)

// program is web's command table (pkg/service): serve, with one role
// and no database.
var program = service.Program[Config]{
	Name: "web", Port: 8000,
	Roles: []service.Role{{Name: service.RoleAPI, Doc: "the storefront and the plumbing console: pages over the public APIs, for browsers"}},
	Edge:  edge,
}

func main() { program.Main() }

// run is main without the process (arguments, environment and output
// passed in): the tests call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return program.Run(ctx, args, getenv, stdout)
}
