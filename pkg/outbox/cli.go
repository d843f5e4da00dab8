package outbox

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Usage describes Command's arguments.
const Usage = `outbox parked [--limit N]          list parked rows (id, key, type, parked at, error; never the payload)
outbox unpark ID | --all            let the relay publish parked rows again
outbox republish --since TIME       publish again every row published since TIME (RFC 3339, or a duration ago: 2h)`

// ErrUsage is Command's answer to arguments it does not understand.
var ErrUsage = errors.New("outbox: bad arguments")

// DB is what Command needs: a pool.
type DB interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Command is the operator CLI of a service's outbox, for its `<svc>
// outbox ...` command: args are what follows "outbox". It prints what it
// did to out.
func Command(ctx context.Context, db DB, args []string, out io.Writer) error {
	if len(args) == 0 {
		return badUsage("no command")
	}
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	limit := fs.Int("limit", 100, "most rows to list")
	all := fs.Bool("all", false, "every parked row")
	since := fs.String("since", "", "RFC 3339 time or duration ago")
	if err := fs.Parse(args[1:]); err != nil {
		return badUsage("%s: %v", cmd, err)
	}
	pos := fs.Args()
	switch cmd {
	case "parked":
		return listParked(ctx, db, pos, *limit, out)
	case "unpark":
		return unpark(ctx, db, pos, *all, out)
	case "republish":
		return republish(ctx, db, pos, *since, out)
	}
	return badUsage("unknown command %q", cmd)
}

// badUsage is Command's error for arguments it cannot run.
func badUsage(format string, a ...any) error {
	return fmt.Errorf("%w: %s; usage:\n%s", ErrUsage, fmt.Sprintf(format, a...), Usage)
}

// listParked prints up to limit parked rows as a table.
func listParked(ctx context.Context, db DB, pos []string, limit int, out io.Writer) error {
	if len(pos) > 0 || limit < 1 {
		return badUsage("parked takes only --limit N (N ≥ 1)")
	}
	rows, err := Parked(ctx, db, limit)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(out, "no parked rows")
		return err
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKEY\tTYPE\tSTREAM\tPARKED AT\tATTEMPTS\tHELD\tERROR")
	for _, p := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", p.ID, p.Key, p.Type, p.Stream,
			p.ParkedAt.UTC().Format(time.RFC3339), p.Attempts, p.Held, oneLine(p.LastError))
	}
	return tw.Flush()
}

// unpark unparks the row pos names, or every parked row with all.
func unpark(ctx context.Context, db DB, pos []string, all bool, out io.Writer) error {
	var id int64
	switch {
	case all && len(pos) == 0:
	case !all && len(pos) == 1:
		var err error
		if id, err = strconv.ParseInt(pos[0], 10, 64); err != nil || id < 1 {
			return badUsage("unpark: ID %q is not a row id (see outbox parked)", pos[0])
		}
	default:
		return badUsage("unpark takes one row ID or --all")
	}
	ids, err := Unpark(ctx, db, id, all)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		_, err := fmt.Fprintln(out, "no parked rows")
		return err
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	_, err = fmt.Fprintf(out, "unparked %d row(s): %s; the relay publishes them next, then the rows of their keys held behind them\n",
		len(ids), strings.Join(s, ", "))
	return err
}

// republish queues again every row published since (Republish).
func republish(ctx context.Context, db DB, pos []string, since string, out io.Writer) error {
	if len(pos) > 0 || since == "" {
		return badUsage("republish needs --since TIME and nothing else")
	}
	t, err := parseSince(since, time.Now())
	if err != nil {
		return badUsage("republish: %v", err)
	}
	n, err := Republish(ctx, db, t)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%d row(s) published since %s queued to publish again\n", n, t.UTC().Format(time.RFC3339))
	return err
}

// parseSince reads an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q is neither an RFC 3339 time nor a positive duration", s)
}

// oneLine keeps a table row on one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
