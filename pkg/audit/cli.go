package audit

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Command is `<service> audit [--action PREFIX] [--limit N] [--json]`: the
// newest entries of the service's audit log.
func Command(ctx context.Context, db Querier, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(out)
	action := fs.String("action", "", "only actions starting with this, e.g. refund. or jobqueue.purge")
	limit := fs.Int("limit", 50, "newest entries to show (1..1000)")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("audit: unexpected argument %q (usage: audit [--action PREFIX] [--limit N] [--json])", fs.Arg(0))
	}
	entries, err := List(ctx, db, *action, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	if len(entries) == 0 {
		_, err := fmt.Fprintln(out, "no audit entries")
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAT\tACTOR\tACTION\tTARGET\tREASON")
	for _, e := range entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.At.Format(time.RFC3339), e.Actor, e.Action, e.Target, e.Reason)
	}
	return tw.Flush()
}
