package audit_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

var schema = fstest.MapFS{"00001_audit.sql": {Data: []byte("-- +goose Up\n" + audit.Schema + "-- +goose Down\nDROP TABLE audit_log;\n")}}

// TestRecordRefusesIncompleteEntries: an entry without an actor, an action
// or a reason, or with a field over its limit, is refused before anything
// is written; the table refuses empty ones too.
func TestRecordRefusesIncompleteEntries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, schema)
	ok := audit.Entry{Actor: "oscar", Action: "refund.abandon", Target: "refund 1", Reason: "bank transfer"}
	for name, e := range map[string]audit.Entry{
		"no actor":    {Action: ok.Action, Reason: ok.Reason},
		"no action":   {Actor: ok.Actor, Reason: ok.Reason},
		"no reason":   {Actor: ok.Actor, Action: ok.Action},
		"blank":       {Actor: " ", Action: ok.Action, Reason: "\t"},
		"long reason": {Actor: ok.Actor, Action: ok.Action, Reason: strings.Repeat("é", audit.MaxReason+1)},
		"long target": {Actor: ok.Actor, Action: ok.Action, Reason: ok.Reason, Target: strings.Repeat("x", 201)},
	} {
		if err := audit.Record(ctx, db.Pool, e); !errors.Is(err, audit.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO audit_log (actor, action, target, reason) VALUES ('', 'x', '', 'y')`); err == nil {
		t.Error("the table took an entry without an actor")
	}
	if n, _ := audit.List(ctx, db.Pool, "", 10); len(n) != 0 {
		t.Fatalf("refused entries were written: %+v", n)
	}
	if _, err := audit.List(ctx, db.Pool, "", 0); !errors.Is(err, audit.ErrInvalid) {
		t.Errorf("limit 0: %v", err)
	}
}

// TestListIsNewestFirstAndFiltered: entries come back newest first, with
// their detail, filtered by action prefix; the CLI prints them.
func TestListIsNewestFirstAndFiltered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, schema)
	for _, e := range []audit.Entry{
		{Actor: "oscar", Action: "jobqueue.purge", Target: "emails-dlq", Reason: "test mails", Detail: map[string]any{"messages": 3}},
		{Actor: "ada", Action: "refund.abandon", Target: "refund 7", Reason: "refunded by hand"},
	} {
		if err := audit.Record(ctx, db.Pool, e); err != nil {
			t.Fatal(err)
		}
	}
	all, err := audit.List(ctx, db.Pool, "", 10)
	if err != nil || len(all) != 2 || all[0].Action != "refund.abandon" || all[1].Detail["messages"] != float64(3) || all[0].At.IsZero() {
		t.Fatalf("list: %+v %v", all, err)
	}
	if got, _ := audit.List(ctx, db.Pool, "jobqueue.", 10); len(got) != 1 || got[0].Target != "emails-dlq" {
		t.Fatalf("filtered: %+v", got)
	}
	var out bytes.Buffer
	if err := audit.Command(ctx, db.Pool, []string{"--action", "refund."}, &out); err != nil ||
		!strings.Contains(out.String(), "refunded by hand") || strings.Contains(out.String(), "test mails") {
		t.Fatalf("audit command:\n%s%v", out.String(), err)
	}
	if err := audit.Command(ctx, db.Pool, []string{"extra"}, &out); err == nil {
		t.Error("audit command took an unexpected argument")
	}
}
