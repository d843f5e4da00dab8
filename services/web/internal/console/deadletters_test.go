package console

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

var migrations = fstest.MapFS{
	"00001_jobqueue.sql": {Data: []byte("-- +goose Up\n" + jobqueue.Schema + jobqueue.DeadLetterSchema + jobqueue.PauseSchema + audit.Schema + "\n-- +goose Down\nDROP TABLE audit_log, jobqueue_state, jobqueue_dedup, jobqueue_messages, jobqueue_queues;\n")},
}

// TestDeadLettersThroughTheAdminAPI: the console lists, inspects and
// redrives a real job queue's dead letters through pkg/jobqueue's admin
// API (on a real PostgreSQL), with the operator's token: the body it shows
// is the service's redacted one, a redrive puts the job back in its
// queue, and a wrong service, queue or token is an error, not a guess.
func TestDeadLettersThroughTheAdminAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations)
	jobs, err := jobqueue.New(db.Pool, jobqueue.Options{Redact: map[string]func([]byte) []byte{
		"charges": func([]byte) []byte { return []byte(`{"payment_method":"[redacted]"}`) },
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jobs.Close)
	for _, q := range []jobqueue.Queue{{Name: "charges-dlq"}, {Name: "charges", MaxReceiveCount: 1, DeadLetterQueue: "charges-dlq", VisibilityTimeout: time.Hour}} {
		if err := jobs.CreateQueue(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var sent jobqueue.SendResult
	if err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
		sent, err = jobs.Send(ctx, tx, "charges", jobqueue.SendInput{Body: []byte(`{"payment_method":"tok_visa"}`)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// One receive is the last allowed: made visible again, the next
	// receive moves it to the DLQ.
	msgs, err := jobs.Receive(ctx, "charges", jobqueue.ReceiveInput{})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("receive: %v %+v", err, msgs)
	}
	if err := jobs.ChangeMessageVisibility(ctx, msgs[0].ReceiptHandle, 0); err != nil {
		t.Fatal(err)
	}
	if msgs, _ := jobs.Receive(ctx, "charges", jobqueue.ReceiveInput{}); len(msgs) != 0 {
		t.Fatalf("not dead-lettered: %+v", msgs)
	}

	// The service's admin API, behind a gate that wants the operator's
	// token (the services' pkg/auth does this for real).
	admin := http.NewServeMux()
	jobs.AdminRoutes(admin, "/v1/admin/queues")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer operator-token" {
			http.Error(w, `{"title":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		admin.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c := New(&target.System{Endpoints: target.Endpoints{Metrics: map[string]string{"payments": srv.URL}}})

	qs := c.DeadLetters(ctx, "operator-token")
	if len(qs) != 1 || qs[0].Service != "payments" || qs[0].Queue != "charges-dlq" || qs[0].Err != "" || len(qs[0].Letters) != 1 {
		t.Fatalf("dead letters = %+v", qs)
	}
	d := qs[0].Letters[0]
	if d.ID != sent.ID || d.SourceQueue != "charges" || d.ReceiveCount != 1 || !strings.Contains(d.Reason, "maxReceiveCount") {
		t.Errorf("dead letter = %+v", d)
	}
	if strings.Contains(d.BodyText(), "tok_visa") || !strings.Contains(d.BodyText(), "[redacted]") {
		t.Errorf("listed body %s, want the service's redacted one", d.BodyText())
	}
	one, err := c.DeadLetter(ctx, "operator-token", "payments", "charges-dlq", sent.ID)
	if err != nil || one.ID != sent.ID || strings.Contains(one.BodyText(), "tok_visa") {
		t.Fatalf("inspect = %+v, %v", one, err)
	}
	if _, err := c.DeadLetter(ctx, "operator-token", "payments", "charges", sent.ID); !target.IsNotFound(err) {
		t.Errorf("inspect in another queue: %v, want 404", err)
	}

	// Refused before anything is asked: a service without job queues, a
	// queue name that is not one; and the service's own refusal shows.
	if _, err := c.Redrive(ctx, "operator-token", "orders", "charges-dlq", nil, false); !errors.Is(err, ErrUnknown) {
		t.Errorf("redrive at orders: %v, want ErrUnknown", err)
	}
	if _, err := c.Redrive(ctx, "operator-token", "payments", "../charges", nil, false); !errors.Is(err, ErrUnknown) {
		t.Errorf("redrive of ../charges: %v, want ErrUnknown", err)
	}
	if _, err := c.DeadLetter(ctx, "operator-token", "search", "charges-dlq", sent.ID); !errors.Is(err, ErrUnknown) {
		t.Errorf("inspect at search: %v, want ErrUnknown (the page's 404)", err)
	}
	if qs := c.DeadLetters(ctx, "someone-else"); len(qs) != 1 || !strings.Contains(qs[0].Err, "401") {
		t.Errorf("with a wrong token: %+v, want payments' 401", qs)
	}

	if n, err := c.Redrive(ctx, "operator-token", "payments", "charges-dlq", []int64{sent.ID}, true); err != nil || n != 1 {
		t.Fatalf("dry run = %d, %v", n, err)
	}
	if n, err := c.Redrive(ctx, "operator-token", "payments", "charges-dlq", []int64{sent.ID}, false); err != nil || n != 1 {
		t.Fatalf("redrive = %d, %v", n, err)
	}
	if msgs, err := jobs.Receive(ctx, "charges", jobqueue.ReceiveInput{}); err != nil || len(msgs) != 1 || msgs[0].ID != sent.ID || msgs[0].ReceiveCount != 1 {
		t.Fatalf("after the redrive the queue gives %+v, %v; want the job back, receive count reset", msgs, err)
	}
	if qs := c.DeadLetters(ctx, "operator-token"); len(qs) != 1 || len(qs[0].Letters) != 0 {
		t.Errorf("after the redrive: %+v, want an empty DLQ", qs)
	}
}
