// Command payments runs the payments service: `payments help` lists its commands
// and roles. main.go is the command table, config.go the serve command's
// configuration, run.go the wiring of its roles.
package main

import (
	"context"
	"io"

	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/migrations"
)

// program is payments' command table (pkg/service): serve with its
// roles, the standard operator commands, refund and the provider
// simulator.
var program = service.Program[Config]{
	Name: "payments", Port: 8083,
	Roles: []service.Role{
		{Name: service.RoleAPI, Doc: "the payments API: idempotent payments, refunds, /v1/admin queues"},
		{Name: service.RoleWorker, Doc: "the charge and refund workers on the job queue, and the reconciler"},
		{Name: service.RoleRelay, NATS: true, Doc: "the PAYMENTS outbox relay (one leader at a time)"},
		{Name: service.RoleConsumer, NATS: true, Doc: "ORDERS into payments (charge on order.placed, refund on cancel)"},
	},
	Migrations: migrations.FS, Outbox: true, Queues: redaction, Streams: []string{ordersapi.Stream},
	Defaults: map[string]string{"WORKER_CONCURRENCY": "8"},
	Commands: []service.Command{
		{Name: "refund", Args: "list | abandon ID --reason R --by OP", Doc: "open refunds; abandon one for good (audited)", Run: refundCommand},
		{Name: "psp-sim", Doc: "the payment-provider simulator (PSP_SIM_*), an external party in the topology", Run: pspSim},
	},
	Wire: wire,
}

func main() { program.Main() }

// run is main without the process (arguments, environment and output
// passed in): the tests call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return program.Run(ctx, args, getenv, stdout)
}
