package jobqueue_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestSendBatchOneInsert: SendBatch writes its messages with one INSERT;
// each result's id is its own message's, duplicates (dedup id) are skipped
// in place, per-message delays hold, and a long-polling receiver wakes.
func TestSendBatchOneInsert(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobqueue.Options{}, jobqueue.Queue{Name: "q", VisibilityTimeout: time.Hour})
	b.send(t, "q", jobqueue.SendInput{Body: []byte("seen"), DedupID: "d-1"})

	// Take it out of the way (invisible for an hour).
	if msgs := b.receive(t, "q", jobqueue.ReceiveInput{}); len(msgs) != 1 {
		t.Fatalf("received %d", len(msgs))
	}

	woke := make(chan []jobqueue.Message, 1)
	go func() {
		msgs, err := b.c.Receive(ctx, "q", jobqueue.ReceiveInput{MaxMessages: 10, WaitTime: 10 * time.Second})
		if err != nil {
			t.Error(err)
		}
		woke <- msgs
	}()
	ins := []jobqueue.SendInput{
		{Body: []byte("0"), Attributes: map[string]string{"n": "0"}},
		{Body: []byte("1"), DedupID: "d-1"}, // duplicate of "seen"
		{Body: []byte("2"), Attributes: map[string]string{"n": "2"}, DedupID: "d-2"},
		{Body: []byte("3"), Delay: dur(10 * time.Minute)},
		{Body: []byte("4"), DedupID: "d-2"}, // duplicate inside the batch
		{Body: []byte("5")},
	}
	var res []jobqueue.SendResult
	err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
		var err error
		res, err = b.c.SendBatch(ctx, tx, "q", ins)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	wantDup := []bool{false, true, false, false, true, false}
	for i, r := range res {
		if r.Duplicate != wantDup[i] || (r.ID == 0) != wantDup[i] {
			t.Fatalf("result %d = %+v, want duplicate %v", i, r, wantDup[i])
		}
	}
	// The long poll wakes on the commit (not on its 2s re-check) and gets
	// the three visible messages, oldest first.
	select {
	case msgs := <-woke:
		var got []string
		for _, m := range msgs {
			got = append(got, string(m.Body))
		}
		if strings.Join(got, ",") != "0,2,5" {
			t.Fatalf("long poll got %v, want 0,2,5", got)
		}
	case <-time.After(time.Second):
		t.Fatal("the long poll did not wake on the send")
	}
	for i, r := range res {
		if r.Duplicate {
			continue
		}
		var body, attrs string
		var delayed bool
		if err := b.db.Pool.QueryRow(ctx, `SELECT convert_from(body, 'UTF8'), attributes::text, receive_count = 0 AND visible_at > now() + interval '5 minutes'
			FROM jobqueue_messages WHERE id = $1`, r.ID).Scan(&body, &attrs, &delayed); err != nil {
			t.Fatal(err)
		}
		if body != strconv.Itoa(i) || delayed != (i == 3) || (ins[i].Attributes != nil) != strings.Contains(attrs, `"n"`) {
			t.Errorf("id %d of message %d holds body %q, attributes %s, delayed %v", r.ID, i, body, attrs, delayed)
		}
	}
}

// TestDeleteMessageBatchTwoDeliveries: a stale and the current handle of
// one message in one batch: the current one deletes, the stale one is
// reported stale.
func TestDeleteMessageBatchTwoDeliveries(t *testing.T) {
	bothAckModes(t, testDeleteMessageBatchTwoDeliveries)
}

func testDeleteMessageBatchTwoDeliveries(t *testing.T, opts jobqueue.Options) {
	ctx := context.Background()
	b := setup(t, opts, jobqueue.Queue{Name: "q", VisibilityTimeout: time.Hour})
	b.send(t, "q", jobqueue.SendInput{Body: []byte("job")})
	first := b.receive(t, "q", jobqueue.ReceiveInput{})
	if err := b.c.ChangeMessageVisibility(ctx, first[0].ReceiptHandle, 0); err != nil {
		t.Fatal(err)
	}
	second := b.receive(t, "q", jobqueue.ReceiveInput{})
	if len(first) != 1 || len(second) != 1 {
		t.Fatalf("received %d, %d", len(first), len(second))
	}
	errs, err := b.c.DeleteMessageBatch(ctx, b.db.Pool, []string{first[0].ReceiptHandle, second[0].ReceiptHandle})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(errs[0], jobqueue.ErrStaleReceipt) || errs[1] != nil {
		t.Fatalf("per-handle results = %v, want [stale, nil]", errs)
	}
	if n := count(t, b, `SELECT count(*) FROM jobqueue_messages`); n != 0 {
		t.Fatalf("%d messages left", n)
	}
}

// TestWorkerGroupsDeletes: handlers that succeed together have their
// messages deleted (in batches), each once, without warnings; the worker
// stops cleanly afterwards.
func TestWorkerGroupsDeletes(t *testing.T) { bothAckModes(t, testWorkerGroupsDeletes) }

func testWorkerGroupsDeletes(t *testing.T, opts jobqueue.Options) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	logs := &testinfra.Buffer{}
	b := setup(t, withOpts(opts, jobqueue.Options{Registerer: reg, Logger: slog.New(slog.NewTextHandler(logs, nil))}),
		jobqueue.Queue{Name: "q", VisibilityTimeout: time.Hour})
	const n, concurrency = 95, 10
	for i := 0; i < n; i += 10 {
		err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
			ins := make([]jobqueue.SendInput, min(10, n-i))
			for j := range ins {
				ins[j] = jobqueue.SendInput{Body: []byte(strconv.Itoa(i + j))}
			}
			_, err := b.c.SendBatch(ctx, tx, "q", ins)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	w := b.c.NewWorker(jobqueue.WorkerConfig{Queue: "q", Concurrency: concurrency, Backoff: fastRetry},
		func(ctx context.Context, m jobqueue.Message) error {
			mu.Lock()
			seen[string(m.Body)]++
			mu.Unlock()
			return nil
		})
	stop := runWorker(t, w)
	testinfra.Eventually(t, 20*time.Second, func() error {
		if left := count(t, b, `SELECT count(*) FROM jobqueue_messages`); left != 0 {
			return fmt.Errorf("%d jobs left", left)
		}
		return nil
	})
	stop()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != n {
		t.Errorf("%d distinct jobs handled, want %d", len(seen), n)
	}
	for body, k := range seen {
		if k != 1 {
			t.Errorf("job %s handled %d times", body, k)
		}
	}
	deleted, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got float64
	for _, mf := range deleted {
		if mf.GetName() == "jobqueue_deleted_total" {
			for _, m := range mf.GetMetric() {
				got += m.GetCounter().GetValue()
			}
		}
	}
	if got != n {
		t.Errorf("jobqueue_deleted_total = %v, want %d", got, n)
	}
	if s := logs.String(); strings.Contains(s, "level=WARN") {
		t.Errorf("warnings logged:\n%s", s)
	}
}

// A long poll that checked the table before the client's listener was
// LISTENing is woken when the listener starts, not at its 2s re-check: the
// NOTIFY of a send committed in between reached nobody.
func TestLongPollCatchesSendBeforeListen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobqueue.Options{}, jobqueue.Queue{Name: "q"})
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	jobqueue.SetBeforeListen(b.c, func() {
		once.Do(func() {
			close(entered)
			<-release
		})
	})
	woke := make(chan []jobqueue.Message, 1)
	go func() {
		msgs, err := b.c.Receive(ctx, "q", jobqueue.ReceiveInput{WaitTime: 10 * time.Second})
		if err != nil {
			t.Error(err)
		}
		woke <- msgs
	}()
	<-entered
	// Give the receiver time to find the queue empty and wait (if it has
	// not, it finds the message below at once and the test proves less,
	// but cannot fail wrongly).
	time.Sleep(200 * time.Millisecond)
	b.send(t, "q", jobqueue.SendInput{Body: []byte("early")})
	start := time.Now()
	close(release)
	select {
	case msgs := <-woke:
		if len(msgs) != 1 || string(msgs[0].Body) != "early" {
			t.Fatalf("long poll got %v", msgs)
		}
		t.Logf("woke %s after the listener started", time.Since(start).Round(time.Millisecond))
	case <-time.After(time.Second):
		t.Fatal("the long poll waited for its re-check: the NOTIFY before LISTEN was lost")
	}
}
