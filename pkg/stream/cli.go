package stream

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// DLQUsage describes DLQCommand's arguments.
const DLQUsage = `dlq list [--group G] [--limit N]
dlq inspect SEQ                 (personal fields of the payload redacted)
dlq redrive --group G [--seq 1,2,3] [--dry-run] [--rate N]
dlq discard SEQ --reason "why" --by NAME`

// PersonalFields are the JSON object keys whose values RedactPersonal
// replaces, at any depth: what identifies or reaches a person (e-mail
// addresses, postal addresses, names of people, phone numbers). A fork
// whose events carry other personal data adds its keys here.
var PersonalFields = []string{"customer_email", "email", "recipient", "to", "shipping_address", "billing_address", "address", "phone", "customer_name"}

// RedactPersonal returns a JSON document with the value of every
// PersonalFields key replaced by "[redacted]", for operator tools that
// show dead letters: an operator needs the shape, the ids and the error,
// and reads the person's data, when needed, from the owning service's
// API, where reading it is authorized. A document that is not valid JSON
// is replaced whole.
func RedactPersonal(doc []byte) json.RawMessage {
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return json.RawMessage(`"[not JSON, not shown]"`)
	}
	b, err := json.Marshal(redact(v))
	if err != nil {
		return json.RawMessage(`"[not shown]"`)
	}
	return b
}

func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if slices.Contains(PersonalFields, strings.ToLower(k)) {
				x[k] = "[redacted]"
				continue
			}
			x[k] = redact(e)
		}
	case []any:
		for i, e := range x {
			x[i] = redact(e)
		}
	}
	return v
}

// DLQCommand is the operator CLI over a stream's dead letters, for a
// service's `<svc> dlq ...` role: args are what follows "dlq". It prints
// tables and JSON to out and returns an error for bad arguments.
//
// It parses the arguments (parseDLQArgs), then runs the command.
func DLQCommand(ctx context.Context, q DeadLetters, args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: usage:\n%s", ErrInvalid, DLQUsage)
	}
	a, err := parseDLQArgs(args)
	if err != nil {
		return err
	}
	switch args[0] {
	case "list":
		return a.list(ctx, q, out)
	case "inspect":
		return a.inspect(ctx, q, out)
	case "redrive":
		return a.redrive(ctx, q, out)
	case "discard":
		return a.discard(ctx, q, out)
	default:
		return badDLQUsage(fmt.Errorf("unknown command %q", args[0]))
	}
}

// badDLQUsage is the error for arguments DLQCommand cannot run.
func badDLQUsage(err error) error {
	return fmt.Errorf("%w: %w; usage:\n%s", ErrInvalid, err, DLQUsage)
}

// dlqArgs are DLQCommand's parsed flags and positional arguments.
type dlqArgs struct {
	pos    []string
	group  string
	limit  int
	seqs   string
	dry    bool
	rate   int
	reason string
	by     string
}

// parseDLQArgs reads the flags and positional arguments after the
// command (args[0]), in any order.
func parseDLQArgs(args []string) (dlqArgs, error) {
	var a dlqArgs
	fs := flag.NewFlagSet("dlq "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&a.group, "group", "", "consumer group")
	fs.IntVar(&a.limit, "limit", 50, "most dead letters to list")
	fs.StringVar(&a.seqs, "seq", "", "comma-separated dead-letter sequences")
	fs.BoolVar(&a.dry, "dry-run", false, "report, change nothing")
	fs.IntVar(&a.rate, "rate", 0, "messages per second (0: no bound)")
	fs.StringVar(&a.reason, "reason", "", "why (recorded in the audit log)")
	fs.StringVar(&a.by, "by", "", "who decides (recorded in the audit log)")
	// Flags may follow positional arguments: parse what is left until done.
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			return dlqArgs{}, badDLQUsage(err)
		}
		if fs.NArg() == 0 {
			return a, nil
		}
		a.pos, rest = append(a.pos, fs.Arg(0)), fs.Args()[1:]
	}
}

// seq returns the one positional argument, a dead letter's sequence.
func (a dlqArgs) seq() (uint64, error) {
	if len(a.pos) != 1 {
		return 0, badDLQUsage(fmt.Errorf("want one SEQ, got %d arguments", len(a.pos)))
	}
	n, err := strconv.ParseUint(a.pos[0], 10, 64)
	if err != nil {
		return 0, badDLQUsage(fmt.Errorf("SEQ %q is not a number", a.pos[0]))
	}
	return n, nil
}

// list prints up to --limit dead letters (of --group, if given).
func (a dlqArgs) list(ctx context.Context, q DeadLetters, out io.Writer) error {
	dls, err := q.List(ctx, a.group, a.limit)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD AT\tGROUP\tEVENT\tKEY\tCLASS\tATTEMPTS\tERROR")
	for _, d := range dls {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", d.Seq, d.DeadAt.UTC().Format(time.RFC3339), d.Group, d.EventID, d.Key, d.ErrorClass, d.Attempts, HeaderValue(d.Error, 80))
	}
	return tw.Flush()
}

// inspect prints one dead letter as JSON, personal fields redacted.
func (a dlqArgs) inspect(ctx context.Context, q DeadLetters, out io.Writer) error {
	seq, err := a.seq()
	if err != nil {
		return err
	}
	d, err := q.Inspect(ctx, seq)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	// Personal data stays out of a terminal and its scrollback: JSON
	// with PersonalFields redacted, anything else by its size only
	// (the error says why it did not parse).
	payload := any(map[string]any{"not_json": true, "bytes": len(d.Payload)})
	if json.Valid(d.Payload) {
		payload = RedactPersonal(d.Payload)
	}
	return enc.Encode(map[string]any{"seq": d.Seq, "dead_at": d.DeadAt, "group": d.Group, "event_id": d.EventID,
		"key": d.Key, "error_class": d.ErrorClass, "error": d.Error, "attempts": d.Attempts,
		"first_failure": d.FirstFailure, "original_subject": d.OriginalSubject, "original_seq": d.OriginalSeq,
		"headers": d.Headers, "payload": payload})
}

// redrive delivers --group's dead letters (all, or --seq) again.
func (a dlqArgs) redrive(ctx context.Context, q DeadLetters, out io.Writer) error {
	if a.group == "" {
		return badDLQUsage(fmt.Errorf("--group is required"))
	}
	opts := RedriveOptions{Group: a.group, DryRun: a.dry, RatePerSecond: a.rate}
	if a.seqs != "" {
		for _, s := range strings.Split(a.seqs, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return badDLQUsage(fmt.Errorf("--seq %q is not a list of numbers", a.seqs))
			}
			opts.Seqs = append(opts.Seqs, n)
		}
	}
	rep, err := q.Redrive(ctx, opts)
	if a.dry {
		fmt.Fprintf(out, "%d would be redriven (dry run)\n", rep.Matched)
	} else {
		fmt.Fprintf(out, "%d matched, %d redriven\n", rep.Matched, rep.Redriven)
	}
	return err
}

// discard drops one dead letter, recorded with --reason and --by.
func (a dlqArgs) discard(ctx context.Context, q DeadLetters, out io.Writer) error {
	seq, err := a.seq()
	if err != nil {
		return err
	}
	if a.reason == "" || a.by == "" {
		return badDLQUsage(fmt.Errorf("--reason and --by are required (both go to the audit log)"))
	}
	if err := q.Discard(ctx, seq, a.by, a.reason); err != nil {
		return err
	}
	fmt.Fprintf(out, "discarded %d (recorded in the audit log)\n", seq)
	return nil
}
