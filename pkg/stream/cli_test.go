package stream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestDLQCommandListsInspectsRedrivesAndDiscards drives the operator CLI: list, inspect, a dry-run and a
// real redrive, discard, and every argument mistake.
func TestDLQCommandListsInspectsRedrivesAndDiscards(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newDLQSetup(t, 2)
	var (
		mu      sync.Mutex
		failing = true
		handled []string
	)
	g := newGroup(t, s.nt.JS, testGroup(s.name, "mailer"), func(_ context.Context, d stream.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		if failing && strings.HasPrefix(d.ID, "bad") {
			return stream.Permanent(errors.New("template missing"))
		}
		handled = append(handled, d.ID)
		return nil
	})
	publishOne(t, s.pub, "bad-1", "k1", nil)
	publishOne(t, s.pub, "bad-2", "k2", nil)
	r := start(t, g)
	testinfra.Eventually(t, 15*time.Second, func() error {
		dls, err := s.dlq.List(ctx, "mailer", 10)
		if err != nil || len(dls) != 2 {
			return fmt.Errorf("%d dead letters: %w", len(dls), err)
		}
		return nil
	})
	r.stop()

	var recorded []audit.Entry
	q := s.dlq.WithAudit(func(_ context.Context, e audit.Entry) error { recorded = append(recorded, e); return nil })
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := stream.DLQCommand(ctx, q, args, &out)
		return out.String(), err
	}
	out, err := run("list", "--group", "mailer")
	if err != nil || !strings.Contains(out, "bad-1") || !strings.Contains(out, "bad-2") || !strings.Contains(out, "permanent") {
		t.Fatalf("list:\n%s%v", out, err)
	}
	dls, err := s.dlq.List(ctx, "mailer", 10)
	if err != nil {
		t.Fatal(err)
	}
	seqOf := map[string]string{}
	for _, d := range dls {
		seqOf[d.EventID] = fmt.Sprint(d.Seq)
	}
	first, second := seqOf["bad-1"], seqOf["bad-2"]
	if out, err := run("inspect", first); err != nil || !strings.Contains(out, `"error": "permanent: template missing"`) || !strings.Contains(out, `"not_json": true`) || strings.Contains(out, "payload of bad-") {
		t.Fatalf("inspect:\n%s%v", out, err)
	}
	if out, err := run("redrive", "--group", "mailer", "--dry-run"); err != nil || !strings.Contains(out, "2 would be redriven") {
		t.Fatalf("dry run: %s %v", out, err)
	}
	if out, err := run("discard", second, "--reason", "customer deleted", "--by", "oscar"); err != nil || !strings.Contains(out, "discarded") ||
		len(recorded) != 1 || recorded[0].Actor != "oscar" || recorded[0].Reason != "customer deleted" {
		t.Fatalf("discard: %s %v; audit %+v", out, err, recorded)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	if out, err := run("redrive", "--group", "mailer", "--seq", first, "--rate", "10"); err != nil || !strings.Contains(out, "1 matched, 1 redriven") {
		t.Fatalf("redrive: %s %v", out, err)
	}
	start(t, g)
	testinfra.Eventually(t, 15*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(handled) != 1 || handled[0] != "bad-1" {
			return fmt.Errorf("handled %v after the redrive", handled)
		}
		return nil
	})

	for _, args := range [][]string{
		nil, {"fly"}, {"inspect"}, {"inspect", "x"}, {"redrive"}, {"redrive", "--group", "g", "--seq", "a,b"},
		{"discard", "1"}, {"discard", "1", "--reason", "r"}, {"discard", "1", "--by", "oscar"}, {"list", "--limit", "many"},
	} {
		if _, err := run(args...); !errors.Is(err, stream.ErrInvalid) {
			t.Errorf("%v: err = %v, want ErrInvalid with usage", args, err)
		}
	}
}

// TestInspectRedactsPersonalData: an order event's e-mail and shipping
// address never reach the operator's terminal; ids, amounts and the
// rest of the shape do.
func TestInspectRedactsPersonalData(t *testing.T) {
	t.Parallel()
	doc := []byte(`{"id":"e1","type":"order.placed","data":{"order_id":"o1","customer_id":"c1","customer_email":"ada@example.com",
		"total_minor":1200,"items":[{"sku":"MUG","name":"Red mug"}],
		"shipping_address":{"name":"Ada Lovelace","line1":"1 Main St","city":"Berlin"}}}`)
	out := string(stream.RedactPersonal(doc))
	for _, gone := range []string{"ada@example.com", "Ada Lovelace", "1 Main St", "Berlin"} {
		if strings.Contains(out, gone) {
			t.Errorf("%q still in %s", gone, out)
		}
	}
	for _, kept := range []string{`"order_id":"o1"`, `"customer_id":"c1"`, `"total_minor":1200`, `"name":"Red mug"`, `"customer_email":"[redacted]"`} {
		if !strings.Contains(out, kept) {
			t.Errorf("%s missing from %s", kept, out)
		}
	}
}
