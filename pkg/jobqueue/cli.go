package jobqueue

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// DLQUsage describes DLQCommand's arguments.
const DLQUsage = `queue stats
queue dlq list DLQ [--limit N]
queue dlq inspect ID
queue dlq redrive DLQ [--ids 1,2,3] [--dry-run] [--rate N]
queue purge QUEUE [--ids 1,2,3] --reason "why" --by NAME
queue pause QUEUE --reason "why" [--by NAME]
queue resume QUEUE [--by NAME]`

// DLQCommand is the operator CLI of a service's job queues, for its
// `<svc> queue ...` role: args are what follows "queue". Bodies shown by
// inspect and list pass through the queue's redaction function. pause and
// resume switch a queue's receivers off and on (Client.Pause); --by names
// who did it (default "cli").
func DLQCommand(ctx context.Context, c *Client, args []string, out io.Writer) error {
	bad := func(err error) error { return fmt.Errorf("%w: %w; usage:\n%s", ErrInvalid, err, DLQUsage) }
	if len(args) == 0 {
		return bad(fmt.Errorf("no command"))
	}
	cmd, rest := args[0], args[1:]
	if cmd == "dlq" {
		if len(rest) == 0 {
			return bad(fmt.Errorf("dlq needs list, inspect or redrive"))
		}
		cmd, rest = "dlq "+rest[0], rest[1:]
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	limit := fs.Int("limit", 50, "most messages to list")
	ids := fs.String("ids", "", "comma-separated message ids")
	dry := fs.Bool("dry-run", false, "report, change nothing")
	rate := fs.Int("rate", 0, "messages per second (0: no bound)")
	reason := fs.String("reason", "", "why (recorded)")
	by := fs.String("by", "", "who decides (recorded; required for purge, \"cli\" for pause and resume when not given)")
	var pos []string
	for {
		if err := fs.Parse(rest); err != nil {
			return bad(err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	one := func(what string) (string, error) {
		if len(pos) != 1 {
			return "", bad(fmt.Errorf("want one %s, got %d arguments", what, len(pos)))
		}
		return pos[0], nil
	}
	idList := func() ([]int64, error) {
		var out []int64
		if *ids == "" {
			return out, nil
		}
		for _, s := range strings.Split(*ids, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return nil, bad(fmt.Errorf("--ids %q is not a list of numbers", *ids))
			}
			out = append(out, n)
		}
		return out, nil
	}
	switch cmd {
	case "stats":
		stats, err := c.Stats(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "QUEUE\tVISIBLE\tIN FLIGHT\tDELAYED\tOLDEST\tPAUSED")
		for _, s := range stats {
			paused := "-"
			if p := s.Pause; p.Paused {
				paused = fmt.Sprintf("since %s by %s: %s", p.PausedAt.UTC().Format(time.RFC3339), p.PausedBy, p.Reason)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", s.Queue, s.Visible, s.InFlight, s.Delayed, s.OldestAge.Round(time.Second), paused)
		}
		return tw.Flush()
	case "dlq list":
		dlq, err := one("DLQ")
		if err != nil {
			return err
		}
		msgs, err := c.ListDeadLetters(ctx, dlq, *limit)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSENT\tSOURCE\tREASON")
		for _, m := range msgs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", m.ID, m.SentAt.UTC().Format(time.RFC3339), m.SourceQueue, m.DeadLetterReason)
		}
		return tw.Flush()
	case "dlq inspect":
		s, err := one("ID")
		if err != nil {
			return err
		}
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return bad(fmt.Errorf("ID %q is not a number", s))
		}
		m, err := c.Inspect(ctx, id)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(view(m))
	case "dlq redrive":
		dlq, err := one("DLQ")
		if err != nil {
			return err
		}
		list, err := idList()
		if err != nil {
			return err
		}
		n, err := c.Redrive(ctx, RedriveInput{DLQ: dlq, IDs: list, DryRun: *dry, RatePerSecond: *rate})
		if *dry {
			fmt.Fprintf(out, "%d would be redriven (dry run)\n", n)
		} else {
			fmt.Fprintf(out, "%d redriven\n", n)
		}
		return err
	case "purge":
		queue, err := one("QUEUE")
		if err != nil {
			return err
		}
		list, err := idList()
		if err != nil {
			return err
		}
		if *reason == "" || *by == "" {
			return bad(fmt.Errorf("--reason and --by are required (both go to the audit log)"))
		}
		n, err := c.Purge(ctx, queue, list, *by, *reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%d purged (recorded in the audit log)\n", n)
		return nil
	case "pause":
		queue, err := one("QUEUE")
		if err != nil {
			return err
		}
		if *reason == "" {
			return bad(fmt.Errorf("--reason is required"))
		}
		st, err := c.Pause(ctx, queue, cmp.Or(*by, "cli"), *reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s paused since %s by %s: %s (jobs are kept; resume with: queue resume %s)\n",
			queue, st.PausedAt.UTC().Format(time.RFC3339), st.PausedBy, st.Reason, queue)
		return nil
	case "resume":
		queue, err := one("QUEUE")
		if err != nil {
			return err
		}
		was, err := c.Resume(ctx, queue, cmp.Or(*by, "cli"))
		if err != nil {
			return err
		}
		if was {
			fmt.Fprintf(out, "%s resumed\n", queue)
		} else {
			fmt.Fprintf(out, "%s was not paused\n", queue)
		}
		return nil
	default:
		return bad(fmt.Errorf("unknown command %q", cmd))
	}
}
