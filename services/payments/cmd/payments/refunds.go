package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentpg"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentsvc"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

const refundUsage = `usage: payments refund list | payments refund abandon <refund id> --reason "why" --by <operator>`

// refundCommand is `payments refund ...`: the open refunds (retrying, or
// refused and waiting for a person), and abandoning one for good with a
// reason, recorded in the audit log (also on the admin API:
// POST /v1/admin/refunds/{id}/abandon).
func refundCommand(ctx context.Context, inv *service.Invocation) error {
	args, out := inv.Args, inv.Stdout
	if len(args) == 0 {
		return errors.New(refundUsage)
	}
	rt, err := inv.Runtime(ctx)
	if err != nil {
		return err
	}
	pool, err := rt.OpenPG(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	switch args[0] {
	case "list":
		if len(args) > 1 {
			return errors.New(refundUsage)
		}
		return listRefunds(ctx, pool, out)
	case "abandon":
		fs := flag.NewFlagSet("refund abandon", flag.ContinueOnError)
		fs.SetOutput(out)
		reason := fs.String("reason", "", "why the refund is given up (required; recorded in the audit log)")
		by := fs.String("by", "", "who decides (required; recorded in the audit log)")
		if len(args) < 2 {
			return errors.New(refundUsage)
		}
		if err := fs.Parse(args[2:]); err != nil {
			return err
		}
		svc, err := offlineService(pool, rt.Log)
		if err != nil {
			return err
		}
		r, err := svc.AbandonRefund(ctx, args[1], *by, *reason)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "refund %s of payment %s (order %s, %d minor units) abandoned by %s: %s\n",
			r.ID, r.PaymentID, r.OrderID, r.AmountMinor, *by, *reason)
		return err
	}
	return fmt.Errorf("unknown refund command %q (%s)", args[0], refundUsage)
}

func listRefunds(ctx context.Context, pool *pgxpool.Pool, out io.Writer) error {
	open, err := paymentpg.OpenRefunds(ctx, pool, 200)
	if err != nil {
		return err
	}
	if len(open) == 0 {
		_, err := fmt.Fprintln(out, "no open refunds")
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REFUND\tPAYMENT\tORDER\tAMOUNT\tSTATUS\tATTEMPTS\tAGE\tLAST ERROR")
	for _, r := range open {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", r.ID, r.PaymentID, r.OrderID, r.AmountMinor, r.Status, r.Attempts,
			time.Since(r.CreatedAt).Round(time.Second), r.FailureReason)
	}
	return tw.Flush()
}

// offlineService is the service without a provider, for operator commands.
func offlineService(pool *pgxpool.Pool, log *slog.Logger) (*paymentsvc.Service, error) {
	jobs, err := jobqueue.New(pool, jobqueue.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	return paymentsvc.New(pool, jobs, outbox.New(paymentsapi.Stream), nil, paymentsvc.Config{}, log, time.Now)
}
