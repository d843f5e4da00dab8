package jobqueue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
)

func TestQueueCommandListsInspectsRedactedPurgesAndRedrives(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobqueue.Options{Redact: map[string]func([]byte) []byte{"pay": func([]byte) []byte { return []byte(`{"card":"[redacted]"}`) }}},
		jobqueue.Queue{Name: "pay-dlq"},
		jobqueue.Queue{Name: "pay", MaxReceiveCount: 1, DeadLetterQueue: "pay-dlq", VisibilityTimeout: time.Hour})
	var ids []string
	for range 2 {
		ids = append(ids, strconv.FormatInt(b.send(t, "pay", jobqueue.SendInput{Body: []byte(`{"card":"4242424242424242"}`)}).ID, 10))
	}
	for _, m := range b.receive(t, "pay", jobqueue.ReceiveInput{MaxMessages: 2}) {
		if err := b.c.ChangeMessageVisibility(ctx, m.ReceiptHandle, 0); err != nil {
			t.Fatal(err)
		}
	}
	if msgs := b.receive(t, "pay", jobqueue.ReceiveInput{MaxMessages: 2}); len(msgs) != 0 {
		t.Fatalf("over the receive limit, got %d messages", len(msgs))
	}
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := jobqueue.DLQCommand(ctx, b.c, args, &out)
		return out.String(), err
	}
	if out, err := run("stats"); err != nil || !strings.Contains(out, "pay-dlq") {
		t.Fatalf("stats:\n%s%v", out, err)
	}
	if out, err := run("dlq", "list", "pay-dlq"); err != nil || !strings.Contains(out, ids[0]) || !strings.Contains(out, "maxReceiveCount 1 exceeded") {
		t.Fatalf("list:\n%s%v", out, err)
	}
	if out, err := run("dlq", "inspect", ids[0]); err != nil || strings.Contains(out, "4242") || !strings.Contains(out, "[redacted]") {
		t.Fatalf("inspect must redact:\n%s%v", out, err)
	}
	if out, err := run("dlq", "redrive", "pay-dlq", "--dry-run"); err != nil || !strings.Contains(out, "2 would be redriven") {
		t.Fatalf("dry run: %s %v", out, err)
	}
	if out, err := run("purge", "pay-dlq", "--ids", ids[1], "--reason", "card expired", "--by", "oscar"); err != nil || !strings.Contains(out, "1 purged") {
		t.Fatalf("purge: %s %v", out, err)
	}
	// The purge is in the audit log, with who, why, what and which ids.
	entries, err := audit.List(ctx, b.db.Pool, "jobqueue.", 10)
	if err != nil || len(entries) != 1 || entries[0].Actor != "oscar" || entries[0].Target != "pay-dlq" || entries[0].Reason != "card expired" ||
		entries[0].Detail["messages"] != float64(1) || fmt.Sprint(entries[0].Detail["ids"]) != "["+ids[1]+"]" {
		t.Fatalf("audit log after the purge: %+v (%v)", entries, err)
	}
	if out, err := run("dlq", "redrive", "pay-dlq", "--ids", ids[0], "--rate", "5"); err != nil || !strings.Contains(out, "1 redriven") {
		t.Fatalf("redrive: %s %v", out, err)
	}
	if msgs := b.receive(t, "pay", jobqueue.ReceiveInput{}); len(msgs) != 1 || strconv.FormatInt(msgs[0].ID, 10) != ids[0] {
		t.Fatalf("after redrive: %+v", msgs)
	}
	for _, args := range [][]string{nil, {"fly"}, {"dlq"}, {"dlq", "list"}, {"dlq", "inspect", "x"}, {"dlq", "redrive", "d", "--ids", "a"}, {"purge", "q"}, {"purge", "q", "--reason", "r"}} {
		if _, err := run(args...); !errors.Is(err, jobqueue.ErrInvalid) {
			t.Errorf("%v: err = %v, want ErrInvalid with usage", args, err)
		}
	}
}
