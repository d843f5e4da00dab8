package jobqueue_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

var migrations = fstest.MapFS{
	"00001_jobqueue.sql": {Data: []byte("-- +goose Up\n" + jobqueue.Schema + jobqueue.DeadLetterSchema + jobqueue.PauseSchema + audit.Schema + `
CREATE TABLE results (job text PRIMARY KEY);
-- +goose Down
DROP TABLE results;
DROP TABLE audit_log, jobqueue_state, jobqueue_dedup, jobqueue_messages, jobqueue_queues;
`)},
}

type bundle struct {
	db *testinfra.Database
	c  *jobqueue.Client
}

func setup(t testing.TB, opts jobqueue.Options, queues ...jobqueue.Queue) *bundle {
	t.Helper()
	db := testinfra.Postgres(t, migrations)
	c, err := jobqueue.New(db.Pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for _, q := range queues {
		if err := c.CreateQueue(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	return &bundle{db: db, c: c}
}

func (b *bundle) send(t *testing.T, queue string, in jobqueue.SendInput) jobqueue.SendResult {
	t.Helper()
	var res jobqueue.SendResult
	err := pgdb.InTx(context.Background(), b.db.Pool, func(tx pgx.Tx) error {
		var err error
		res, err = b.c.Send(context.Background(), tx, queue, in)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (b *bundle) receive(t *testing.T, queue string, in jobqueue.ReceiveInput) []jobqueue.Message {
	t.Helper()
	msgs, err := b.c.Receive(context.Background(), queue, in)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// bothAckModes runs test as parallel subtests with the default options
// (synchronous acknowledgements, coalescing), with Options.AsyncAcks and
// with Options.NoCoalescing: the semantics must be the same.
func bothAckModes(t *testing.T, test func(t *testing.T, opts jobqueue.Options)) {
	t.Parallel()
	for name, opts := range map[string]jobqueue.Options{
		"default":       {},
		"async_acks":    {AsyncAcks: true},
		"no_coalescing": {NoCoalescing: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, opts)
		})
	}
}

// withOpts returns o with the acknowledgement modes of modes.
func withOpts(modes, o jobqueue.Options) jobqueue.Options {
	o.AsyncAcks, o.NoCoalescing = modes.AsyncAcks, modes.NoCoalescing
	return o
}

func dur(d time.Duration) *time.Duration { return &d }

func TestSendBelongsToTheTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobqueue.Options{}, jobqueue.Queue{Name: "q"})
	rollback := errors.New("rollback")
	err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
		if _, err := b.c.Send(ctx, tx, "q", jobqueue.SendInput{Body: []byte("x")}); err != nil {
			return err
		}
		return rollback
	})
	if !errors.Is(err, rollback) {
		t.Fatal(err)
	}
	if msgs := b.receive(t, "q", jobqueue.ReceiveInput{}); len(msgs) != 0 {
		t.Fatalf("a rolled-back send left %d messages", len(msgs))
	}
	b.send(t, "q", jobqueue.SendInput{Body: []byte("y"), Attributes: map[string]string{"trace": "t1"}})
	msgs := b.receive(t, "q", jobqueue.ReceiveInput{})
	if len(msgs) != 1 || string(msgs[0].Body) != "y" || msgs[0].Attributes["trace"] != "t1" || msgs[0].ReceiveCount != 1 {
		t.Fatalf("received %+v", msgs)
	}
}

func TestVisibilityAndReceiptHandles(t *testing.T) { bothAckModes(t, testVisibilityAndReceiptHandles) }

func testVisibilityAndReceiptHandles(t *testing.T, opts jobqueue.Options) {
	ctx := context.Background()
	b := setup(t, opts, jobqueue.Queue{Name: "q", VisibilityTimeout: time.Hour})
	b.send(t, "q", jobqueue.SendInput{Body: []byte("job")})

	first := b.receive(t, "q", jobqueue.ReceiveInput{})
	if len(first) != 1 {
		t.Fatalf("first receive got %d", len(first))
	}
	if again := b.receive(t, "q", jobqueue.ReceiveInput{}); len(again) != 0 {
		t.Fatal("an invisible message was received again")
	}
	// Expire the visibility now (as if the timeout passed).
	if err := b.c.ChangeMessageVisibility(ctx, first[0].ReceiptHandle, 0); err != nil {
		t.Fatal(err)
	}
	second := b.receive(t, "q", jobqueue.ReceiveInput{})
	if len(second) != 1 || second[0].ReceiptHandle == first[0].ReceiptHandle || second[0].ReceiveCount != 2 {
		t.Fatalf("redelivery = %+v, want a new handle and receive count 2", second)
	}
	// The stale handle neither extends nor deletes the newer delivery.
	if err := b.c.ChangeMessageVisibility(ctx, first[0].ReceiptHandle, 0); !errors.Is(err, jobqueue.ErrStaleReceipt) {
		t.Fatalf("extend with a stale handle: %v", err)
	}
	if err := b.c.DeleteMessage(ctx, b.db.Pool, first[0].ReceiptHandle); !errors.Is(err, jobqueue.ErrStaleReceipt) {
		t.Fatalf("delete with a stale handle: %v", err)
	}
	if again := b.receive(t, "q", jobqueue.ReceiveInput{}); len(again) != 0 {
		t.Fatal("the stale handle made the message visible")
	}
	// Delete in the caller's transaction: a rollback keeps the message.
	rollback := errors.New("rollback")
	_ = pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
		if err := b.c.DeleteMessage(ctx, tx, second[0].ReceiptHandle); err != nil {
			return err
		}
		return rollback
	})
	if err := b.c.ChangeMessageVisibility(ctx, second[0].ReceiptHandle, time.Hour); err != nil {
		t.Fatalf("after a rolled-back delete the delivery should still exist: %v", err)
	}
	err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO results VALUES ('job')`); err != nil {
			return err
		}
		return b.c.DeleteMessage(ctx, tx, second[0].ReceiptHandle)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.c.DeleteMessage(ctx, b.db.Pool, second[0].ReceiptHandle); !errors.Is(err, jobqueue.ErrStaleReceipt) {
		t.Fatalf("second delete: %v, want ErrStaleReceipt", err)
	}
}

func TestRedrivePolicyMovesToDLQ(t *testing.T) { bothAckModes(t, testRedrivePolicyMovesToDLQ) }

func testRedrivePolicyMovesToDLQ(t *testing.T, opts jobqueue.Options) {
	ctx := context.Background()
	b := setup(t, withOpts(opts, jobqueue.Options{Redact: map[string]func([]byte) []byte{
		"payments": func([]byte) []byte { return []byte(`{"card":"[redacted]"}`) },
	}}),
		jobqueue.Queue{Name: "payments-dlq"},
		jobqueue.Queue{Name: "payments", MaxReceiveCount: 2, DeadLetterQueue: "payments-dlq", VisibilityTimeout: time.Hour},
	)
	sent := b.send(t, "payments", jobqueue.SendInput{Body: []byte(`{"card":"4242424242424242"}`)})
	for i := 1; i <= 2; i++ {
		msgs := b.receive(t, "payments", jobqueue.ReceiveInput{})
		if len(msgs) != 1 || msgs[0].ReceiveCount != i {
			t.Fatalf("receive %d: %+v", i, msgs)
		}
		if err := b.c.ChangeMessageVisibility(ctx, msgs[0].ReceiptHandle, 0); err != nil {
			t.Fatal(err)
		}
	}
	if msgs := b.receive(t, "payments", jobqueue.ReceiveInput{}); len(msgs) != 0 {
		t.Fatalf("third receive returned %+v; want the message moved to the DLQ", msgs)
	}
	dl, err := b.c.ListDeadLetters(ctx, "payments-dlq", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || dl[0].ID != sent.ID || dl[0].SourceQueue != "payments" || !strings.Contains(dl[0].DeadLetterReason, "maxReceiveCount 2") {
		t.Fatalf("DLQ = %+v", dl)
	}
	if strings.Contains(string(dl[0].Body), "4242") {
		t.Fatalf("card number leaked through the DLQ listing: %s", dl[0].Body)
	}
	m, err := b.c.Inspect(ctx, sent.ID)
	if err != nil || strings.Contains(string(m.Body), "4242") {
		t.Fatalf("Inspect = %s, %v; want a redacted body", m.Body, err)
	}

	// Redrive: a dry run moves nothing; the real one brings it back once.
	if n, err := b.c.Redrive(ctx, jobqueue.RedriveInput{DLQ: "payments-dlq", DryRun: true}); err != nil || n != 1 {
		t.Fatalf("dry run = %d, %v", n, err)
	}
	if msgs := b.receive(t, "payments", jobqueue.ReceiveInput{}); len(msgs) != 0 {
		t.Fatal("the dry run moved the message")
	}
	if n, err := b.c.Redrive(ctx, jobqueue.RedriveInput{DLQ: "payments-dlq", IDs: []int64{sent.ID}, RatePerSecond: 10}); err != nil || n != 1 {
		t.Fatalf("redrive = %d, %v", n, err)
	}
	msgs := b.receive(t, "payments", jobqueue.ReceiveInput{})
	if len(msgs) != 1 || msgs[0].ReceiveCount != 1 || string(msgs[0].Body) != `{"card":"4242424242424242"}` {
		t.Fatalf("after redrive: %+v, want the original body with receive count 1", msgs)
	}
	if dl, _ := b.c.ListDeadLetters(ctx, "payments-dlq", 10); len(dl) != 0 {
		t.Fatalf("DLQ still holds %d", len(dl))
	}
}

func TestDelayAndLongPoll(t *testing.T) { bothAckModes(t, testDelayAndLongPoll) }

func testDelayAndLongPoll(t *testing.T, opts jobqueue.Options) {
	b := setup(t, opts, jobqueue.Queue{Name: "q"})
	b.send(t, "q", jobqueue.SendInput{Body: []byte("later"), Delay: dur(300 * time.Millisecond)})
	if msgs := b.receive(t, "q", jobqueue.ReceiveInput{}); len(msgs) != 0 {
		t.Fatal("a delayed message was visible at once")
	}
	// A long poll returns the delayed message when it becomes visible,
	// long before its wait time ends.
	start := time.Now()
	msgs := b.receive(t, "q", jobqueue.ReceiveInput{WaitTime: 20 * time.Second})
	if len(msgs) != 1 || string(msgs[0].Body) != "later" {
		t.Fatalf("long poll = %+v", msgs)
	}
	if waited := time.Since(start); waited >= 20*time.Second {
		t.Fatalf("long poll waited the whole %s", waited)
	}

	// A receiver waiting on an empty queue gets a message sent meanwhile.
	got := make(chan []jobqueue.Message, 1)
	go func() {
		msgs, err := b.c.Receive(context.Background(), "q", jobqueue.ReceiveInput{WaitTime: 20 * time.Second})
		if err != nil {
			t.Error(err)
		}
		got <- msgs
	}()
	b.send(t, "q", jobqueue.SendInput{Body: []byte("now")})
	if msgs := <-got; len(msgs) != 1 || string(msgs[0].Body) != "now" {
		t.Fatalf("waiting receiver got %+v", msgs)
	}
	// An empty long poll ends after its wait time.
	if msgs := b.receive(t, "q", jobqueue.ReceiveInput{WaitTime: 100 * time.Millisecond}); len(msgs) != 0 {
		t.Fatalf("empty long poll returned %+v", msgs)
	}
}

// A queue's DeliveryDelay applies to messages sent without a delay of
// their own; a message's Delay, even zero, overrides it.
func TestQueueDeliveryDelay(t *testing.T) {
	t.Parallel()
	b := setup(t, jobqueue.Options{}, jobqueue.Queue{Name: "q", DeliveryDelay: 10 * time.Minute})
	b.send(t, "q", jobqueue.SendInput{Body: []byte("queue's delay")})
	b.send(t, "q", jobqueue.SendInput{Body: []byte("no delay"), Delay: dur(0)})
	msgs := b.receive(t, "q", jobqueue.ReceiveInput{MaxMessages: 10})
	if len(msgs) != 1 || string(msgs[0].Body) != "no delay" {
		t.Fatalf("received %+v, want only the message with its own zero delay", msgs)
	}
	var delayed int
	if err := b.db.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM jobqueue_messages WHERE visible_at > now() + interval '9 minutes'`).Scan(&delayed); err != nil || delayed != 1 {
		t.Fatalf("%d messages delayed by the queue (%v), want 1", delayed, err)
	}
}

func TestDedupIDDropsRepeatsPerQueueUntilItsWindowEnds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobqueue.Options{}, jobqueue.Queue{Name: "q"}, jobqueue.Queue{Name: "other"})
	first := b.send(t, "q", jobqueue.SendInput{Body: []byte("a"), DedupID: "charge-1"})
	second := b.send(t, "q", jobqueue.SendInput{Body: []byte("a"), DedupID: "charge-1"})
	other := b.send(t, "other", jobqueue.SendInput{Body: []byte("a"), DedupID: "charge-1"})
	if first.Duplicate || !second.Duplicate || other.Duplicate {
		t.Fatalf("dedup: first=%+v second=%+v other queue=%+v", first, second, other)
	}
	if msgs := b.receive(t, "q", jobqueue.ReceiveInput{MaxMessages: 10}); len(msgs) != 1 {
		t.Fatalf("queue holds %d messages, want 1", len(msgs))
	}
	// After the window the id may be used again.
	if _, err := b.db.Pool.Exec(ctx, `UPDATE jobqueue_dedup SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	if again := b.send(t, "q", jobqueue.SendInput{Body: []byte("a"), DedupID: "charge-1"}); again.Duplicate {
		t.Fatal("dedup id still blocked after its window")
	}
}

func TestConcurrentReceiversNeverShareAMessage(t *testing.T) {
	bothAckModes(t, testConcurrentReceiversNeverShareAMessage)
}

func testConcurrentReceiversNeverShareAMessage(t *testing.T, opts jobqueue.Options) {
	ctx := context.Background()
	b := setup(t, opts, jobqueue.Queue{Name: "q", VisibilityTimeout: time.Hour})
	const n = 200
	for i := 0; i < n; i += 10 {
		err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
			ins := make([]jobqueue.SendInput, 10)
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
		seen = map[int64]int{}
		wg   sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for {
				msgs, err := b.c.Receive(ctx, "q", jobqueue.ReceiveInput{MaxMessages: 10})
				if err != nil {
					t.Error(err)
					return
				}
				if len(msgs) == 0 {
					return
				}
				mu.Lock()
				for _, m := range msgs {
					seen[m.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("received %d distinct messages, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("message %d received %d times while invisible", id, c)
		}
	}
}

func TestInvalidSendsReceivesDeletesAndPurgesAreRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobqueue.Options{}, jobqueue.Queue{Name: "q", MaxMessageBytes: 8})
	tests := []struct {
		name string
		fn   func(tx pgx.Tx) error
		want error
	}{
		{"too large", func(tx pgx.Tx) error {
			_, err := b.c.Send(ctx, tx, "q", jobqueue.SendInput{Body: []byte("123456789")})
			return err
		}, jobqueue.ErrInvalid},
		{"delay too long", func(tx pgx.Tx) error {
			_, err := b.c.Send(ctx, tx, "q", jobqueue.SendInput{Body: []byte("x"), Delay: dur(16 * time.Minute)})
			return err
		}, jobqueue.ErrInvalid},
		{"batch too big", func(tx pgx.Tx) error {
			_, err := b.c.SendBatch(ctx, tx, "q", make([]jobqueue.SendInput, 11))
			return err
		}, jobqueue.ErrInvalid},
		{"unknown queue", func(tx pgx.Tx) error {
			_, err := b.c.Send(ctx, tx, "nope", jobqueue.SendInput{Body: []byte("x")})
			return err
		}, jobqueue.ErrQueueNotFound},
		{"unknown queue, with a dedup id", func(tx pgx.Tx) error {
			_, err := b.c.Send(ctx, tx, "nope", jobqueue.SendInput{Body: []byte("x"), DedupID: "d"})
			return err
		}, jobqueue.ErrQueueNotFound},
	}
	for _, tt := range tests {
		if err := pgdb.InTx(ctx, b.db.Pool, tt.fn); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	// One message of a batch too large: the error names it, and the
	// batch writes nothing even if the caller commits anyway (with and
	// without dedup ids, which it must not claim).
	for _, dedup := range []string{"", "d1"} {
		err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
			_, err := b.c.SendBatch(ctx, tx, "q", []jobqueue.SendInput{
				{Body: []byte("ok"), DedupID: dedup}, {Body: []byte("123456789")}, {Body: []byte("ok")},
			})
			if !errors.Is(err, jobqueue.ErrInvalid) || !strings.Contains(err.Error(), "message 1 is 9 bytes, queue q allows 8") {
				return fmt.Errorf("batch with message 1 too large: %w", err)
			}
			return nil // commit
		})
		if err != nil {
			t.Error(err)
		}
	}
	err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
		res, err := b.c.Send(ctx, tx, "q", jobqueue.SendInput{Body: []byte("ok"), DedupID: "d1"})
		if err == nil && res.Duplicate {
			err = errors.New("a rejected batch claimed its dedup id")
		}
		return err
	})
	if err != nil {
		t.Error(err)
	}
	if _, err := b.db.Pool.Exec(ctx, `DELETE FROM jobqueue_messages`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.c.Receive(ctx, "q", jobqueue.ReceiveInput{MaxMessages: 11}); !errors.Is(err, jobqueue.ErrInvalid) {
		t.Errorf("receive 11: %v", err)
	}
	if _, err := b.c.Receive(ctx, "q", jobqueue.ReceiveInput{WaitTime: 21 * time.Second}); !errors.Is(err, jobqueue.ErrInvalid) {
		t.Errorf("wait 21s: %v", err)
	}
	if err := b.c.DeleteMessage(ctx, b.db.Pool, "not-a-handle"); !errors.Is(err, jobqueue.ErrInvalid) {
		t.Errorf("malformed handle: %v", err)
	}
	if _, err := b.c.DeleteMessageBatch(ctx, b.db.Pool, make([]string, 11)); !errors.Is(err, jobqueue.ErrInvalid) {
		t.Errorf("delete batch of 11: %v", err)
	}
	if _, err := b.c.Purge(ctx, "q", nil, "oscar", ""); !errors.Is(err, jobqueue.ErrInvalid) {
		t.Errorf("purge without reason: %v", err)
	}
	if _, err := b.c.Purge(ctx, "q", nil, "", "why"); !errors.Is(err, jobqueue.ErrInvalid) {
		t.Errorf("purge without who: %v", err)
	}
	var n int
	if err := b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM jobqueue_messages`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("bad input wrote %d messages (%v)", n, err)
	}
}

func TestPruneAndStats(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	b := setup(t, jobqueue.Options{Registerer: reg},
		jobqueue.Queue{Name: "dlq"},
		jobqueue.Queue{Name: "q", DeadLetterQueue: "dlq", VisibilityTimeout: time.Hour},
		jobqueue.Queue{Name: "short", Retention: time.Millisecond})
	b.send(t, "q", jobqueue.SendInput{Body: []byte("visible")})
	b.send(t, "q", jobqueue.SendInput{Body: []byte("delayed"), Delay: dur(10 * time.Minute)})
	b.send(t, "q", jobqueue.SendInput{Body: []byte("inflight")})
	b.receive(t, "q", jobqueue.ReceiveInput{})
	b.send(t, "short", jobqueue.SendInput{Body: []byte("old")})

	testinfra.Eventually(t, 10*time.Second, func() error {
		n, err := b.c.Prune(ctx, 1)
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("pruned %d", n)
		}
		return nil
	})
	if err := reg.Register(b.c.NewCollector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			q := m.GetLabel()[0].GetValue()
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			got[mf.GetName()+"/"+q] = v
		}
	}
	want := map[string]float64{
		"jobqueue_visible_messages/q":     1,
		"jobqueue_in_flight_messages/q":   1,
		"jobqueue_delayed_messages/q":     1,
		"jobqueue_visible_messages/short": 0,
		"jobqueue_dead_letter_depth/dlq":  0,
		"jobqueue_sent_total/q":           3,
		"jobqueue_received_total/q":       1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestDeleteMessageBatch(t *testing.T) { bothAckModes(t, testDeleteMessageBatch) }

func testDeleteMessageBatch(t *testing.T, opts jobqueue.Options) {
	ctx := context.Background()
	b := setup(t, opts, jobqueue.Queue{Name: "q", VisibilityTimeout: time.Hour})
	for i := range 3 {
		b.send(t, "q", jobqueue.SendInput{Body: []byte(strconv.Itoa(i))})
	}
	msgs := b.receive(t, "q", jobqueue.ReceiveInput{MaxMessages: 3})
	if len(msgs) != 3 {
		t.Fatalf("received %d", len(msgs))
	}
	// Make the first handle stale by a redelivery.
	if err := b.c.ChangeMessageVisibility(ctx, msgs[0].ReceiptHandle, 0); err != nil {
		t.Fatal(err)
	}
	fresh := b.receive(t, "q", jobqueue.ReceiveInput{})
	errs, err := b.c.DeleteMessageBatch(ctx, b.db.Pool, []string{msgs[0].ReceiptHandle, msgs[1].ReceiptHandle, msgs[2].ReceiptHandle, "junk"})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(errs[0], jobqueue.ErrStaleReceipt) || errs[1] != nil || errs[2] != nil || !errors.Is(errs[3], jobqueue.ErrInvalid) {
		t.Fatalf("per-handle results = %v", errs)
	}
	if err := b.c.DeleteMessage(ctx, b.db.Pool, fresh[0].ReceiptHandle); err != nil {
		t.Fatalf("the newer delivery must survive the stale batch delete: %v", err)
	}
}

// TestAsyncAcksAreLocalToTheirStatement: with AsyncAcks an acknowledgement
// commits with synchronous_commit off, and the pool's connections keep
// their own setting afterwards; without it, nothing changes.
func TestAsyncAcksAreLocalToTheirStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, async := range []bool{false, true} {
		b := setup(t, jobqueue.Options{AsyncAcks: async})
		want := map[bool]string{false: "on", true: "off"}[async]
		for range 5 { // more than the pool's idle connections get one
			got, err := jobqueue.AckSetting(ctx, b.c)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("AsyncAcks=%v: an acknowledgement ran with synchronous_commit=%s, want %s", async, got, want)
			}
		}
		conns := b.db.Pool.AcquireAllIdle(ctx)
		if len(conns) == 0 {
			t.Fatal("no idle connection to check")
		}
		for _, c := range conns {
			var s string
			err := c.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&s)
			c.Release()
			if err != nil {
				t.Fatal(err)
			}
			if s != "on" {
				t.Fatalf("AsyncAcks=%v: a pooled connection kept synchronous_commit=%s", async, s)
			}
		}
	}
}

// TestDeadLetterRetentionCountsFromDeadLettering: a job retried for longer
// than its DLQ's retention and then dead-lettered is kept for the DLQ's
// whole retention, counted from the dead-lettering (not from when it was
// first sent); past it, Prune deletes it; a redrive clears the mark.
func TestDeadLetterRetentionCountsFromDeadLettering(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobqueue.Options{},
		jobqueue.Queue{Name: "refunds-dlq", Retention: time.Hour},
		jobqueue.Queue{Name: "refunds", MaxReceiveCount: 5, DeadLetterQueue: "refunds-dlq", VisibilityTimeout: time.Hour, Retention: time.Hour},
	)
	old := b.send(t, "refunds", jobqueue.SendInput{Body: []byte(`{"refund":"r1"}`)})
	// It has been failing for two hours, longer than either retention.
	if _, err := b.db.Pool.Exec(ctx, `UPDATE jobqueue_messages SET sent_at = now() - interval '2 hours' WHERE id = $1`, old.ID); err != nil {
		t.Fatal(err)
	}
	msgs := b.receive(t, "refunds", jobqueue.ReceiveInput{})
	if len(msgs) != 1 {
		t.Fatalf("receive: %+v", msgs)
	}
	if err := b.c.MoveToDeadLetter(ctx, b.db.Pool, msgs[0].ReceiptHandle, "provider refused the refund"); err != nil {
		t.Fatal(err)
	}
	if n, err := b.c.Prune(ctx, 100); err != nil || n != 0 {
		t.Fatalf("prune right after the dead-lettering deleted %d (%v); the dead letter must stay for the DLQ's retention", n, err)
	}
	if dl, err := b.c.ListDeadLetters(ctx, "refunds-dlq", 10); err != nil || len(dl) != 1 || dl[0].ID != old.ID {
		t.Fatalf("DLQ after prune: %+v, %v", dl, err)
	}
	// Redriven, the mark is gone (its source queue's retention counts from
	// the send again); dead-lettered again and left for longer than the
	// DLQ's retention, it is pruned.
	if n, err := b.c.Redrive(ctx, jobqueue.RedriveInput{DLQ: "refunds-dlq"}); err != nil || n != 1 {
		t.Fatalf("redrive = %d, %v", n, err)
	}
	var marked bool
	if err := b.db.Pool.QueryRow(ctx, `SELECT dead_lettered_at IS NOT NULL FROM jobqueue_messages WHERE id = $1`, old.ID).Scan(&marked); err != nil || marked {
		t.Fatalf("after the redrive: dead_lettered_at set %v (%v)", marked, err)
	}
	if _, err := b.db.Pool.Exec(ctx, `UPDATE jobqueue_messages SET sent_at = now() WHERE id = $1`, old.ID); err != nil {
		t.Fatal(err)
	}
	msgs = b.receive(t, "refunds", jobqueue.ReceiveInput{})
	if len(msgs) != 1 {
		t.Fatalf("receive after the redrive: %+v", msgs)
	}
	if err := b.c.MoveToDeadLetter(ctx, b.db.Pool, msgs[0].ReceiptHandle, "refused again"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Pool.Exec(ctx, `UPDATE jobqueue_messages SET dead_lettered_at = now() - interval '61 minutes' WHERE id = $1`, old.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := b.c.Prune(ctx, 100); err != nil || n != 1 {
		t.Fatalf("prune of a dead letter past its DLQ's retention deleted %d (%v), want 1", n, err)
	}
}
