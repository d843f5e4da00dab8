// Command search runs the search service: `search help` lists its commands
// and roles. main.go is the command table, config.go the serve command's
// configuration, run.go the wiring of its roles.
package main

import (
	"context"
	"io"

	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/search/migrations"
)

// program is search's command table (pkg/service): serve with its roles,
// the standard operator commands, and the projections' rebuild and check.
var program = service.Program[Config]{
	Name: "search", Port: 8085,
	Roles: []service.Role{
		{Name: service.RoleAPI, NATS: true, Doc: "the search API: products, a customer's orders (reads the groups' lag for freshness)"},
		{Name: service.RoleConsumer, NATS: true, Doc: "CATALOG and ORDERS into the search projections (group search)"},
	},
	Migrations: migrations.FS, Streams: []string{catalogapi.Stream, ordersapi.Stream},
	Commands: []service.Command{
		{Name: "rebuild", Args: "--stream CATALOG|ORDERS [--allow-missing] [--timeout 1h]",
			Doc: "replay a stream into a new projection, compare, swap", Run: replay("rebuild")},
		{Name: "check", Args: "--stream CATALOG|ORDERS [--timeout 1h]",
			Doc: "replay a stream into a new projection and report differences, no swap", Run: replay("check")},
	},
	Wire: wire,
}

func main() { program.Main() }

// run is main without the process (arguments, environment and output
// passed in): the tests call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return program.Run(ctx, args, getenv, stdout)
}
