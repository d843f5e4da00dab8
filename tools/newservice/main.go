// Command newservice creates a service of the standard shape (docs/STYLE.md,
// "Layout") and wires it into the local topology, compose, the dashboards
// and the cross-service tests: `make new-service NAME=inventory
// [ENTITY=item]`.
//
// The service it writes is small but complete: one aggregate (ENTITY) with
// an idempotent create endpoint and a read, its PostgreSQL store and
// migrations (the building blocks' schemas copied from pkg/ at generation
// time, so they are verbatim), the <entity>.created event through the
// outbox with its golden file, a consumer of its own stream that counts
// created entities through the inbox, the command table with the roles
// api, relay and consumer, and tests for every package against real
// PostgreSQL and NATS.
//
// It refuses a name that is taken, and changes nothing when it refuses:
// every check runs before the first file is written.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	var o Options
	flag.StringVar(&o.Name, "name", "", "the service's name: lower-case letters, 3–20 (e.g. inventory)")
	flag.StringVar(&o.Entity, "entity", "item", "the aggregate's name: lower-case letters, 3–20 (e.g. item)")
	flag.StringVar(&o.Root, "root", ".", "the repository's root")
	flag.Parse()
	res, err := Generate(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "new-service:", err)
		os.Exit(1)
	}
	fmt.Print(res.Summary())
}
