package jobqueue_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shopfloor/shopfloor/pkg/jobqueue"
)

// statements records the size of each coalesced statement and can hold
// one back until enough calls wait behind it.
type statements struct {
	mu    sync.Mutex
	sizes []int
	// hold, when set, is called (and waited for) before the statement
	// with that index (0-based) runs.
	hold map[int]func() error
	errs []error
}

func (s *statements) before(calls int) {
	s.mu.Lock()
	i := len(s.sizes)
	s.sizes = append(s.sizes, calls)
	hold := s.hold[i]
	s.mu.Unlock()
	if hold == nil {
		return
	}
	if err := hold(); err != nil {
		s.mu.Lock()
		s.errs = append(s.errs, fmt.Errorf("statement %d: %w", i, err))
		s.mu.Unlock()
	}
}

func (s *statements) check(t *testing.T, want ...int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := errors.Join(s.errs...); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.sizes, want) {
		t.Fatalf("coalesced statements carried %v calls, want %v", s.sizes, want)
	}
}

// until polls cond for up to 10 s.
func until(what string, cond func() bool) error {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return nil
		}
	}
	return fmt.Errorf("timed out waiting until %s", what)
}

type received struct {
	msgs []jobqueue.Message
	err  error
}

// receiveTogether starts one receive of queue whose statement is held
// until n more receives wait behind it, then those n, and returns all
// n+1 results (the held one first).
func receiveTogether(t *testing.T, b *bundle, st *statements, queue string, n int) []received {
	t.Helper()
	ctx := context.Background()
	held := make(chan struct{})
	st.mu.Lock()
	st.hold = map[int]func() error{len(st.sizes): func() error {
		close(held)
		return until(fmt.Sprintf("%d receives wait", n), func() bool { return jobqueue.WaitingReceives(b.c, queue) == n })
	}}
	st.mu.Unlock()
	out := make([]received, n+1)
	var wg sync.WaitGroup
	wg.Go(func() {
		out[0].msgs, out[0].err = b.c.Receive(ctx, queue, jobqueue.ReceiveInput{})
	})
	<-held
	for i := 1; i <= n; i++ {
		wg.Go(func() {
			out[i].msgs, out[i].err = b.c.Receive(ctx, queue, jobqueue.ReceiveInput{})
		})
	}
	wg.Wait()
	return out
}

// Receives that arrive while one is in flight go out together as the
// next statement, and each receiver gets its own messages and handles.
func TestConcurrentReceivesShareOneStatement(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := setup(t, jobqueue.Options{Registerer: reg}, jobqueue.Queue{Name: "q", VisibilityTimeout: time.Hour})
	st := &statements{}
	jobqueue.SetBeforeCoalescedReceive(b.c, st.before)
	for i := range 12 {
		b.send(t, "q", jobqueue.SendInput{Body: fmt.Appendf(nil, "job %d", i)})
	}

	got := receiveTogether(t, b, st, "q", 9)
	st.check(t, 1, 9)
	ids := map[int64]bool{}
	handles := map[string]bool{}
	for i, r := range got {
		if r.err != nil || len(r.msgs) != 1 {
			t.Fatalf("receiver %d: %d messages, %v", i, len(r.msgs), r.err)
		}
		m := r.msgs[0]
		if ids[m.ID] || handles[m.ReceiptHandle] || m.ReceiveCount != 1 {
			t.Fatalf("receiver %d got %+v: a message or handle twice, or a wrong receive count", i, m)
		}
		ids[m.ID], handles[m.ReceiptHandle] = true, true
	}

	// Two messages left for five receivers in one statement: two get one
	// each, three get none (and return at once: no WaitTime).
	got = receiveTogether(t, b, st, "q", 4)
	st.check(t, 1, 9, 1, 4)
	var withOne, empty int
	for i, r := range got {
		switch {
		case r.err != nil:
			t.Fatalf("receiver %d: %v", i, r.err)
		case len(r.msgs) == 1 && !ids[r.msgs[0].ID]:
			ids[r.msgs[0].ID] = true
			withOne++
		case len(r.msgs) == 0:
			empty++
		default:
			t.Fatalf("receiver %d got %+v", i, r.msgs)
		}
	}
	if withOne != 2 || empty != 3 || len(ids) != 12 {
		t.Fatalf("%d receivers got a message, %d none, %d distinct messages; want 2, 3, 12", withOne, empty, len(ids))
	}
	want := `
# HELP jobqueue_coalesced_calls Calls carried by one coalesced statement, by operation (receive, delete); Options.NoCoalescing: none.
# TYPE jobqueue_coalesced_calls histogram
jobqueue_coalesced_calls_bucket{op="receive",le="1"} 2
jobqueue_coalesced_calls_bucket{op="receive",le="2"} 2
jobqueue_coalesced_calls_bucket{op="receive",le="4"} 3
jobqueue_coalesced_calls_bucket{op="receive",le="8"} 3
jobqueue_coalesced_calls_bucket{op="receive",le="16"} 4
jobqueue_coalesced_calls_bucket{op="receive",le="32"} 4
jobqueue_coalesced_calls_bucket{op="receive",le="64"} 4
jobqueue_coalesced_calls_bucket{op="receive",le="100"} 4
jobqueue_coalesced_calls_bucket{op="receive",le="+Inf"} 4
jobqueue_coalesced_calls_sum{op="receive"} 15
jobqueue_coalesced_calls_count{op="receive"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "jobqueue_coalesced_calls"); err != nil {
		t.Fatal(err)
	}
}

// A receiver that leaves while the statement carrying its receive runs
// gets its context's error, and the message claimed for it becomes
// visible again at once instead of after the visibility timeout.
func TestAbandonedReceiveReleasesItsMessage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobqueue.Options{}, jobqueue.Queue{Name: "q", VisibilityTimeout: time.Hour})
	b.send(t, "q", jobqueue.SendInput{Body: []byte("first")})
	b.send(t, "q", jobqueue.SendInput{Body: []byte("second")})

	st := &statements{}
	jobqueue.SetBeforeCoalescedReceive(b.c, st.before)
	held := make(chan struct{})
	leaverCtx, leave := context.WithCancel(ctx)
	left := make(chan error)
	st.hold = map[int]func() error{
		0: func() error {
			close(held)
			return until("the leaver waits", func() bool { return jobqueue.WaitingReceives(b.c, "q") == 1 })
		},
		// The leaver's statement: it leaves before the statement runs,
		// so what the statement claims for it has no one to go to.
		1: func() error {
			leave()
			if err := <-left; !errors.Is(err, context.Canceled) {
				return fmt.Errorf("the leaver's receive returned %w, want context.Canceled", err)
			}
			return nil
		},
	}
	var first []jobqueue.Message
	var firstErr error
	var wg sync.WaitGroup
	wg.Go(func() { first, firstErr = b.c.Receive(ctx, "q", jobqueue.ReceiveInput{}) })
	<-held
	wg.Go(func() {
		msgs, err := b.c.Receive(leaverCtx, "q", jobqueue.ReceiveInput{})
		if len(msgs) > 0 {
			err = fmt.Errorf("the leaver got %d messages", len(msgs))
		}
		left <- err
	})
	wg.Wait()
	st.check(t, 1, 1)
	if firstErr != nil || len(first) != 1 {
		t.Fatalf("first receive: %d messages, %v", len(first), firstErr)
	}
	// The second message is visible again long before its hour.
	again := b.receive(t, "q", jobqueue.ReceiveInput{WaitTime: 10 * time.Second})
	if len(again) != 1 || again[0].ID == first[0].ID || again[0].ReceiveCount != 2 {
		t.Fatalf("after the leaver: %+v, want the other message on its second receive", again)
	}
}

// Deletes on the pool that arrive while one is in flight go out together,
// each with its own result.
func TestConcurrentDeletesShareOneStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobqueue.Options{}, jobqueue.Queue{Name: "q", VisibilityTimeout: time.Hour})
	for i := range 4 {
		b.send(t, "q", jobqueue.SendInput{Body: fmt.Appendf(nil, "job %d", i)})
	}
	msgs := b.receive(t, "q", jobqueue.ReceiveInput{MaxMessages: 10})
	if len(msgs) != 4 {
		t.Fatalf("received %d", len(msgs))
	}
	// msgs[0]'s handle goes stale: the message is received again.
	if err := b.c.ChangeMessageVisibility(ctx, msgs[0].ReceiptHandle, 0); err != nil {
		t.Fatal(err)
	}
	if again := b.receive(t, "q", jobqueue.ReceiveInput{}); len(again) != 1 || again[0].ID != msgs[0].ID {
		t.Fatalf("redelivery: %+v", again)
	}

	st := &statements{}
	jobqueue.SetBeforeCoalescedDelete(b.c, st.before)
	held := make(chan struct{})
	st.hold = map[int]func() error{0: func() error {
		close(held)
		return until("3 deletes wait", func() bool { return jobqueue.WaitingDeletes(b.c) == 3 })
	}}
	errs := make([]error, 4)
	var wg sync.WaitGroup
	wg.Go(func() { errs[1] = b.c.DeleteMessage(ctx, b.db.Pool, msgs[1].ReceiptHandle) })
	<-held
	for _, i := range []int{0, 2, 3} {
		wg.Go(func() { errs[i] = b.c.DeleteMessage(ctx, b.db.Pool, msgs[i].ReceiptHandle) })
	}
	wg.Wait()
	st.check(t, 1, 3)
	if !errors.Is(errs[0], jobqueue.ErrStaleReceipt) || errs[1] != nil || errs[2] != nil || errs[3] != nil {
		t.Fatalf("delete results %v, want [stale receipt, nil, nil, nil]", errs)
	}
	var left []int64
	if err := b.db.Pool.QueryRow(ctx, `SELECT array_agg(id) FROM jobqueue_messages`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(left, []int64{msgs[0].ID}) {
		t.Fatalf("messages left %v, want only %d (its newer delivery)", left, msgs[0].ID)
	}
}
