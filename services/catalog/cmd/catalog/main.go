// Command catalog runs the catalog service: `catalog help` lists its commands
// and roles. main.go is the command table, config.go the serve command's
// configuration, run.go the wiring of its roles.
package main

import (
	"context"
	"io"

	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/migrations"
)

// program is catalog's command table (pkg/service): serve with its
// roles, the standard operator commands, and seed.
var program = service.Program[Config]{
	Name: "catalog", Port: 8081,
	Roles: []service.Role{
		{Name: service.RoleAPI, Doc: "the catalog API: public reads (cache-aside, HTTP caching), batch reads, /v1/admin writes"},
		{Name: service.RoleRelay, NATS: true, Doc: "the CATALOG outbox relay (one leader at a time)"},
		{Name: service.RoleConsumer, NATS: true, Doc: "CATALOG into cache invalidation, warming and CDN purges"},
	},
	Migrations: migrations.FS, Outbox: true, Streams: []string{catalogapi.Stream},
	Commands: []service.Command{{Name: "seed", Args: "--products N", Doc: "insert N demo products (1..1000000, default 1000)", Run: seed}},
	Wire:     wire,
}

func main() { program.Main() }

// run is main without the process (arguments, environment and output
// passed in): the tests call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return program.Run(ctx, args, getenv, stdout)
}
