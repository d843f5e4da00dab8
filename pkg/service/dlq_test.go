package service_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestDLQDiscardIsAudited: `<svc> dlq discard` records who, why and what in
// the service's audit_log (real PostgreSQL) before it deletes the dead
// letter (real JetStream); without a database to record in it deletes
// nothing.
func TestDLQDiscardIsAudited(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, fstest.MapFS{"00001_audit.sql": {Data: []byte("-- +goose Up\n" + audit.Schema + "-- +goose Down\nDROP TABLE audit_log;\n")}})
	nt := testinfra.NATS(t)
	name := nt.Prefix + "_AUDITED"
	if err := stream.EnsureStream(ctx, nt.JS, stream.StreamConfig{Name: name, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	pub, err := stream.NewPublisher(nt.JS, name, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, stream.Message{ID: "bad-1", Key: "k", Payload: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	g, err := stream.NewGroup(nt.JS, stream.GroupConfig{Stream: name, Name: "mailer", Partitions: 1},
		func(context.Context, stream.Delivery) error { return stream.Permanent(errors.New("template missing")) }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	gctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	q, err := stream.NewDLQ(nt.JS, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	var seq uint64
	testinfra.Eventually(t, 15*time.Second, func() error {
		dls, err := q.List(ctx, "mailer", 1)
		if err != nil || len(dls) != 1 {
			return fmt.Errorf("%d dead letters (%w)", len(dls), err)
		}
		seq = dls[0].Seq
		return nil
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	run := func(env map[string]string, args ...string) (string, error) {
		var out bytes.Buffer
		err := service.DLQCommand(ctx, "svctest", name, args, func(k string) string { return env[k] }, &out)
		return out.String(), err
	}
	discard := []string{"discard", fmt.Sprint(seq), "--reason", "template fixed by hand, customer mailed", "--by", "oscar"}
	if _, err := run(map[string]string{"NATS_URL": nt.URL}, discard...); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("discard without a database: %v, want an error naming DATABASE_URL", err)
	}
	if _, err := q.Inspect(ctx, seq); err != nil {
		t.Fatalf("dead letter gone after a discard that could not be recorded: %v", err)
	}
	if out, err := run(map[string]string{"NATS_URL": nt.URL, "DATABASE_URL": db.URL}, discard...); err != nil || !strings.Contains(out, "discarded") {
		t.Fatalf("discard: %s %v", out, err)
	}
	entries, err := audit.List(ctx, db.Pool, "stream_dlq.", 10)
	if err != nil || len(entries) != 1 || entries[0].Actor != "oscar" || entries[0].Reason != "template fixed by hand, customer mailed" ||
		entries[0].Target != fmt.Sprintf("%s/%d", stream.DLQStream(name), seq) || entries[0].Detail["event_id"] != "bad-1" {
		t.Fatalf("audit log: %+v (%v)", entries, err)
	}
	if _, err := q.Inspect(ctx, seq); !errors.Is(err, stream.ErrNotFound) {
		t.Fatalf("dead letter still there after the discard: %v", err)
	}
}
