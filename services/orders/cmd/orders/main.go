// Command orders runs the orders service: `orders help` lists its commands
// and roles. main.go is the command table, config.go the serve command's
// configuration, run.go the wiring of its roles.
package main

import (
	"context"
	"io"

	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/orders/migrations"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// program is orders' command table (pkg/service): serve with its roles,
// the standard operator commands, nothing of its own.
var program = service.Program[Config]{
	Name: "orders", Port: 8082,
	Roles: []service.Role{
		{Name: service.RoleAPI, Doc: "the orders API: checkout (priced by catalog), orders, cancel"},
		{Name: service.RoleRelay, NATS: true, Doc: "the ORDERS outbox relay (one leader at a time)"},
		{Name: service.RoleConsumer, NATS: true, Doc: "PAYMENTS into order states, and the stuck-order repair"},
	},
	Migrations: migrations.FS, Outbox: true, Streams: []string{paymentsapi.Stream},
	Wire: wire,
}

func main() { program.Main() }

// run is main without the process (arguments, environment and output
// passed in): the tests call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return program.Run(ctx, args, getenv, stdout)
}
