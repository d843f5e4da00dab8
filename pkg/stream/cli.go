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
func DLQCommand(ctx context.Context, q *DLQ, args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: usage:\n%s", ErrInvalid, DLQUsage)
	}
	fs := flag.NewFlagSet("dlq "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	group := fs.String("group", "", "consumer group")
	limit := fs.Int("limit", 50, "most dead letters to list")
	seqs := fs.String("seq", "", "comma-separated dead-letter sequences")
	dry := fs.Bool("dry-run", false, "report, change nothing")
	rate := fs.Int("rate", 0, "messages per second (0: no bound)")
	reason := fs.String("reason", "", "why (recorded in the audit log)")
	by := fs.String("by", "", "who decides (recorded in the audit log)")
	bad := func(err error) error { return fmt.Errorf("%w: %w; usage:\n%s", ErrInvalid, err, DLQUsage) }
	// Flags may follow positional arguments: parse what is left until done.
	rest, pos := args[1:], []string(nil)
	for {
		if err := fs.Parse(rest); err != nil {
			return bad(err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	seqArg := func() (uint64, error) {
		if len(pos) != 1 {
			return 0, bad(fmt.Errorf("want one SEQ, got %d arguments", len(pos)))
		}
		n, err := strconv.ParseUint(pos[0], 10, 64)
		if err != nil {
			return 0, bad(fmt.Errorf("SEQ %q is not a number", pos[0]))
		}
		return n, nil
	}
	switch args[0] {
	case "list":
		dls, err := q.List(ctx, *group, *limit)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tDEAD AT\tGROUP\tEVENT\tKEY\tCLASS\tATTEMPTS\tERROR")
		for _, d := range dls {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", d.Seq, d.DeadAt.UTC().Format(time.RFC3339), d.Group, d.EventID, d.Key, d.ErrorClass, d.Attempts, oneLine(d.Error, 80))
		}
		return tw.Flush()
	case "inspect":
		seq, err := seqArg()
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
	case "redrive":
		if *group == "" {
			return bad(fmt.Errorf("--group is required"))
		}
		opts := RedriveOptions{Group: *group, DryRun: *dry, RatePerSecond: *rate}
		if *seqs != "" {
			for _, s := range strings.Split(*seqs, ",") {
				n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
				if err != nil {
					return bad(fmt.Errorf("--seq %q is not a list of numbers", *seqs))
				}
				opts.Seqs = append(opts.Seqs, n)
			}
		}
		rep, err := q.Redrive(ctx, opts)
		if *dry {
			fmt.Fprintf(out, "%d would be redriven (dry run)\n", rep.Matched)
		} else {
			fmt.Fprintf(out, "%d matched, %d redriven\n", rep.Matched, rep.Redriven)
		}
		return err
	case "discard":
		seq, err := seqArg()
		if err != nil {
			return err
		}
		if *reason == "" || *by == "" {
			return bad(fmt.Errorf("--reason and --by are required (both go to the audit log)"))
		}
		if err := q.Discard(ctx, seq, *by, *reason); err != nil {
			return err
		}
		fmt.Fprintf(out, "discarded %d (recorded in the audit log)\n", seq)
		return nil
	default:
		return bad(fmt.Errorf("unknown command %q", args[0]))
	}
}
