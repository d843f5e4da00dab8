// Command notifications runs the notifications service: `notifications help` lists its commands
// and roles. main.go is the command table, config.go the serve command's
// configuration, run.go the wiring of its roles.
package main

import (
	"context"
	"io"

	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/notifications/migrations"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// program is notifications' command table (pkg/service): serve with its
// roles, the standard operator commands and the SMTP sink.
var program = service.Program[Config]{
	Name: "notifications", Port: 8084,
	Roles: []service.Role{
		{Name: service.RoleAPI, Doc: "the notifications API: a customer's e-mails, /v1/admin queues"},
		{Name: service.RoleConsumer, NATS: true, Doc: "ORDERS into e-mails to send (one per order and kind)"},
		{Name: service.RoleWorker, Doc: "the e-mail worker on the job queue, behind the SMTP breaker"},
	},
	Migrations: migrations.FS, Queues: redaction, Streams: []string{ordersapi.Stream},
	Commands: []service.Command{
		{Name: "smtp-sink", Doc: "the SMTP sink of tests and drills (SMTP_SINK_*), with its HTTP API", Run: smtpSink},
	},
	Wire: wire,
}

func main() { program.Main() }

// run is main without the process (arguments, environment and output
// passed in): the tests call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return program.Run(ctx, args, getenv, stdout)
}
