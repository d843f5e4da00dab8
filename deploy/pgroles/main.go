// Command pgroles makes each service's PostgreSQL database and its two
// login roles (pkg/pgroles, ADR 0040): <db>_owner, which the migrate job
// and schema-changing operator commands use, and <db>_app, which the
// running service uses. make run (deploy/local/run.sh) and compose's
// postgres-roles job run it before the migrations, at every start: it is
// idempotent, and a rotated password takes effect.
//
//	PGROLES_ADMIN_URL=postgres://postgres:...@host:5432/postgres \
//	CATALOG_DB_OWNER_PASSWORD=... CATALOG_DB_APP_PASSWORD=... \
//	  pgroles [-prefix shopfloor_] catalog [orders ...]
//
// The administrator's URL and the passwords come from the environment
// (<SERVICE>_DB_OWNER_PASSWORD and <SERVICE>_DB_APP_PASSWORD, at least 16
// characters each), never the command line, where ps and docker inspect
// show them. It prints one line per service, without secrets.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/shopfloor/shopfloor/pkg/pgroles"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pgroles:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	fs := flag.NewFlagSet("pgroles", flag.ContinueOnError)
	fs.SetOutput(out)
	prefix := fs.String("prefix", "", "database and role name prefix (make run: shopfloor_)")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long (PostgreSQL not up yet is retried)")
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: PGROLES_ADMIN_URL=... <SVC>_DB_OWNER_PASSWORD=... <SVC>_DB_APP_PASSWORD=... pgroles [-prefix P] SERVICE...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("name at least one service")
	}
	admin := getenv("PGROLES_ADMIN_URL")
	if admin == "" {
		return errors.New("PGROLES_ADMIN_URL is not set (a superuser's URL, e.g. postgres://postgres:<password>@127.0.0.1:5432/postgres)")
	}
	var dbs []pgroles.Database
	var errs []error
	for _, svc := range fs.Args() {
		ov, av := pgroles.PasswordVars(svc)
		d := pgroles.For(*prefix, svc, getenv(ov), getenv(av))
		if err := d.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s, %s): %w", svc, ov, av, err))
		}
		dbs = append(dbs, d)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	for _, d := range dbs {
		if err := provision(ctx, admin, d); err != nil {
			return fmt.Errorf("%s: %w", d.Name, err)
		}
		fmt.Fprintf(out, "pgroles: database %s: %s owns it (migrate), %s uses it (serve)\n", d.Name, d.Owner.Name, d.App.Name)
	}
	return nil
}

// provision retries while the server refuses connections (compose starts
// the job when PostgreSQL is healthy, but make run's cluster may be
// restarting); any other error ends it.
func provision(ctx context.Context, admin string, d pgroles.Database) error {
	for {
		err := pgroles.Provision(ctx, admin, d)
		if !errors.Is(err, pgroles.ErrUnreachable) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}
