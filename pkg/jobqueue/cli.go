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
//
// It parses the arguments (parseQueueArgs), then runs the command.
func DLQCommand(ctx context.Context, c *Client, args []string, out io.Writer) error {
	a, err := parseQueueArgs(args)
	if err != nil {
		return err
	}
	switch a.cmd {
	case "stats":
		return queueStats(ctx, c, out)
	case "dlq list":
		return a.listDeadLetters(ctx, c, out)
	case "dlq inspect":
		return a.inspectDeadLetter(ctx, c, out)
	case "dlq redrive":
		return a.redrive(ctx, c, out)
	case "purge":
		return a.purge(ctx, c, out)
	case "pause":
		return a.pause(ctx, c, out)
	case "resume":
		return a.resume(ctx, c, out)
	default:
		return badQueueUsage(fmt.Errorf("unknown command %q", a.cmd))
	}
}

// badQueueUsage is the error for arguments DLQCommand cannot run.
func badQueueUsage(err error) error {
	return fmt.Errorf("%w: %w; usage:\n%s", ErrInvalid, err, DLQUsage)
}

// queueArgs are DLQCommand's parsed arguments: the command ("dlq list"
// for the two-word ones), its positional arguments and its flags.
type queueArgs struct {
	cmd    string
	pos    []string
	limit  int
	ids    string
	dry    bool
	rate   int
	reason string
	by     string
}

// parseQueueArgs reads the command and then flags and positional
// arguments in any order.
func parseQueueArgs(args []string) (queueArgs, error) {
	if len(args) == 0 {
		return queueArgs{}, badQueueUsage(fmt.Errorf("no command"))
	}
	a := queueArgs{}
	cmd, rest := args[0], args[1:]
	if cmd == "dlq" {
		if len(rest) == 0 {
			return queueArgs{}, badQueueUsage(fmt.Errorf("dlq needs list, inspect or redrive"))
		}
		cmd, rest = "dlq "+rest[0], rest[1:]
	}
	a.cmd = cmd
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&a.limit, "limit", 50, "most messages to list")
	fs.StringVar(&a.ids, "ids", "", "comma-separated message ids")
	fs.BoolVar(&a.dry, "dry-run", false, "report, change nothing")
	fs.IntVar(&a.rate, "rate", 0, "messages per second (0: no bound)")
	fs.StringVar(&a.reason, "reason", "", "why (recorded)")
	fs.StringVar(&a.by, "by", "", "who decides (recorded; required for purge, \"cli\" for pause and resume when not given)")
	for {
		if err := fs.Parse(rest); err != nil {
			return queueArgs{}, badQueueUsage(err)
		}
		if fs.NArg() == 0 {
			return a, nil
		}
		a.pos, rest = append(a.pos, fs.Arg(0)), fs.Args()[1:]
	}
}

// one returns the one positional argument, named what in the error.
func (a queueArgs) one(what string) (string, error) {
	if len(a.pos) != 1 {
		return "", badQueueUsage(fmt.Errorf("want one %s, got %d arguments", what, len(a.pos)))
	}
	return a.pos[0], nil
}

// idList parses --ids; none given is an empty list.
func (a queueArgs) idList() ([]int64, error) {
	var out []int64
	if a.ids == "" {
		return out, nil
	}
	for _, s := range strings.Split(a.ids, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, badQueueUsage(fmt.Errorf("--ids %q is not a list of numbers", a.ids))
		}
		out = append(out, n)
	}
	return out, nil
}

// queueStats prints every queue's depth, oldest message and pause.
func queueStats(ctx context.Context, c *Client, out io.Writer) error {
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
}

// listDeadLetters prints up to --limit messages of the DLQ.
func (a queueArgs) listDeadLetters(ctx context.Context, c *Client, out io.Writer) error {
	dlq, err := a.one("DLQ")
	if err != nil {
		return err
	}
	msgs, err := c.ListDeadLetters(ctx, dlq, a.limit)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSENT\tSOURCE\tREASON")
	for _, m := range msgs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", m.ID, m.SentAt.UTC().Format(time.RFC3339), m.SourceQueue, m.DeadLetterReason)
	}
	return tw.Flush()
}

// inspectDeadLetter prints one message as JSON, its body redacted.
func (a queueArgs) inspectDeadLetter(ctx context.Context, c *Client, out io.Writer) error {
	s, err := a.one("ID")
	if err != nil {
		return err
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return badQueueUsage(fmt.Errorf("ID %q is not a number", s))
	}
	m, err := c.Inspect(ctx, id)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(view(m))
}

// redrive sends the DLQ's messages (all, or --ids) back to their queues.
func (a queueArgs) redrive(ctx context.Context, c *Client, out io.Writer) error {
	dlq, err := a.one("DLQ")
	if err != nil {
		return err
	}
	list, err := a.idList()
	if err != nil {
		return err
	}
	n, err := c.Redrive(ctx, RedriveInput{DLQ: dlq, IDs: list, DryRun: a.dry, RatePerSecond: a.rate})
	if a.dry {
		fmt.Fprintf(out, "%d would be redriven (dry run)\n", n)
	} else {
		fmt.Fprintf(out, "%d redriven\n", n)
	}
	return err
}

// purge deletes the queue's messages (all, or --ids), recorded with
// --reason and --by.
func (a queueArgs) purge(ctx context.Context, c *Client, out io.Writer) error {
	queue, err := a.one("QUEUE")
	if err != nil {
		return err
	}
	list, err := a.idList()
	if err != nil {
		return err
	}
	if a.reason == "" || a.by == "" {
		return badQueueUsage(fmt.Errorf("--reason and --by are required (both go to the audit log)"))
	}
	n, err := c.Purge(ctx, queue, list, a.by, a.reason)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%d purged (recorded in the audit log)\n", n)
	return nil
}

// pause switches the queue's receivers off, with --reason.
func (a queueArgs) pause(ctx context.Context, c *Client, out io.Writer) error {
	queue, err := a.one("QUEUE")
	if err != nil {
		return err
	}
	if a.reason == "" {
		return badQueueUsage(fmt.Errorf("--reason is required"))
	}
	st, err := c.Pause(ctx, queue, cmp.Or(a.by, "cli"), a.reason)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s paused since %s by %s: %s (jobs are kept; resume with: queue resume %s)\n",
		queue, st.PausedAt.UTC().Format(time.RFC3339), st.PausedBy, st.Reason, queue)
	return nil
}

// resume switches the queue's receivers on again.
func (a queueArgs) resume(ctx context.Context, c *Client, out io.Writer) error {
	queue, err := a.one("QUEUE")
	if err != nil {
		return err
	}
	was, err := c.Resume(ctx, queue, cmp.Or(a.by, "cli"))
	if err != nil {
		return err
	}
	if was {
		fmt.Fprintf(out, "%s resumed\n", queue)
	} else {
		fmt.Fprintf(out, "%s was not paused\n", queue)
	}
	return nil
}
