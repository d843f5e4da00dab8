package jobqueue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestPauseHoldsWorkersAcrossInstances: a paused queue keeps accepting
// jobs, and no worker receives from it (receive counts stay, a job at its
// receive limit is not dead-lettered), also a worker of a new client (a
// restart, another instance); resume lets the jobs through.
func TestPauseHoldsWorkersAcrossInstances(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobqueue.Options{},
		jobqueue.Queue{Name: "dlq"},
		jobqueue.Queue{Name: "q", DeadLetterQueue: "dlq", MaxReceiveCount: 1})
	// One job at its receive limit: the next claim would dead-letter it.
	b.send(t, "q", jobqueue.SendInput{Body: []byte("received-once")})
	m := b.receive(t, "q", jobqueue.ReceiveInput{})
	if err := b.c.ChangeMessageVisibility(ctx, m[0].ReceiptHandle, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.c.Pause(ctx, "q", "alice", "provider incident"); err != nil {
		t.Fatal(err)
	}
	b.send(t, "q", jobqueue.SendInput{Body: []byte("sent-while-paused")})
	receiveCounts := func() string {
		var s string
		if err := b.db.Pool.QueryRow(ctx, `SELECT string_agg(queue || ':' || receive_count, ',' ORDER BY id) FROM jobqueue_messages`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := receiveCounts()

	var handled atomic.Int32
	handler := func(context.Context, jobqueue.Message) error { handled.Add(1); return nil }
	// holdsBack runs a worker of client c and proves it receives nothing:
	// it waits until the worker's claims ran twice (its first poll, and the
	// one a send's NOTIFY wakes) and checks nothing moved.
	holdsBack := func(c *jobqueue.Client) (stop func()) {
		var claims atomic.Int32
		jobqueue.SetBeforeCoalescedReceive(c, func(int) { claims.Add(1) })
		stop = runWorker(t, c.NewWorker(jobqueue.WorkerConfig{Queue: "q", Backoff: fastRetry}, handler))
		testinfra.Eventually(t, 10*time.Second, func() error {
			if claims.Load() == 0 {
				return errors.New("the worker has not polled yet")
			}
			return nil
		})
		n := claims.Load()
		b.send(t, "q", jobqueue.SendInput{Body: []byte("wakes-the-poll")})
		testinfra.Eventually(t, 10*time.Second, func() error {
			if claims.Load() <= n {
				return errors.New("the worker has not polled again")
			}
			return nil
		})
		if h := handled.Load(); h != 0 {
			t.Fatalf("a paused queue's worker handled %d jobs", h)
		}
		return stop
	}
	holdsBack(b.c)()
	if got := receiveCounts(); !strings.HasPrefix(got, before) || strings.Contains(got, "dlq") {
		t.Fatalf("while paused: receive counts %s, were %s (nothing may be received or dead-lettered)", got, before)
	}

	// A new client (restart, other instance) finds the pause in the table.
	c2, err := jobqueue.New(b.db.Pool, jobqueue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c2.Close)
	st, err := c2.PauseStateOf(ctx, "q")
	if err != nil || !st.Paused || st.PausedBy != "alice" || st.Reason != "provider incident" {
		t.Fatalf("pause state = %+v, %v", st, err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c2.NewCollector())
	paused := func(want string) {
		t.Helper()
		exp := "# HELP jobqueue_paused 1 while the queue is paused (no receives), else 0.\n# TYPE jobqueue_paused gauge\n" +
			`jobqueue_paused{queue="dlq"} 0` + "\n" + `jobqueue_paused{queue="q"} ` + want + "\n"
		if err := testutil.GatherAndCompare(reg, strings.NewReader(exp), "jobqueue_paused"); err != nil {
			t.Error(err)
		}
	}
	paused("1")
	holdsBack(c2)
	if got := receiveCounts(); !strings.HasPrefix(got, before) || strings.Contains(got, "dlq") {
		t.Fatalf("while paused (new instance): receive counts %s, were %s", got, before)
	}

	if was, err := c2.Resume(ctx, "q", "alice"); err != nil || !was {
		t.Fatalf("resume = %v, %v", was, err)
	}
	paused("0")
	testinfra.Eventually(t, 10*time.Second, func() error {
		if n := count(t, b, `SELECT count(*) FROM jobqueue_messages WHERE queue = 'q'`); n != 0 {
			return fmt.Errorf("%d jobs left after resume", n)
		}
		return nil
	})
	// The job at its limit goes to the DLQ now, as it would have without
	// the pause; the three others were handled.
	if h, d := handled.Load(), count(t, b, `SELECT count(*) FROM jobqueue_messages WHERE queue = 'dlq'`); h != 3 || d != 1 {
		t.Fatalf("after resume: %d handled, %d dead-lettered; want 3 and 1", h, d)
	}
	if was, err := c2.Resume(ctx, "q", "alice"); err != nil || was {
		t.Fatalf("second resume = %v, %v; want not paused, no error", was, err)
	}
}

func TestPauseRefusesBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobqueue.Options{}, jobqueue.Queue{Name: "q"})
	for _, tc := range []struct {
		queue, by, reason string
		want              error
	}{
		{"nope", "alice", "why", jobqueue.ErrQueueNotFound},
		{"q", "alice", "", jobqueue.ErrInvalid},
		{"q", "", "why", jobqueue.ErrInvalid},
		{"q", "alice", strings.Repeat("x", 501), jobqueue.ErrInvalid},
	} {
		if _, err := b.c.Pause(ctx, tc.queue, tc.by, tc.reason); !errors.Is(err, tc.want) {
			t.Errorf("Pause(%q, %q, %d bytes) = %v, want %v", tc.queue, tc.by, len(tc.reason), err, tc.want)
		}
	}
	if _, err := b.c.Resume(ctx, "nope", "alice"); !errors.Is(err, jobqueue.ErrQueueNotFound) {
		t.Errorf("Resume(nope) = %v", err)
	}
	first, err := b.c.Pause(ctx, "q", "alice", "one")
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.c.Pause(ctx, "q", "bob", "two")
	if err != nil || !again.PausedAt.Equal(first.PausedAt) || again.PausedBy != "bob" || again.Reason != "two" {
		t.Fatalf("pause again = %+v, %v; want the first paused_at and the new reason", again, err)
	}
}

func TestPauseAndResumeCommandsRecordWhoAndWhy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobqueue.Options{}, jobqueue.Queue{Name: "q"})
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := jobqueue.DLQCommand(ctx, b.c, args, &out)
		return out.String(), err
	}
	if out, err := run("pause", "q", "--reason", "psp incident 42", "--by", "alice"); err != nil || !strings.Contains(out, "q paused since") {
		t.Fatalf("pause: %s %v", out, err)
	}
	if out, err := run("stats"); err != nil || !strings.Contains(out, "PAUSED") || !strings.Contains(out, "by alice: psp incident 42") {
		t.Fatalf("stats:\n%s%v", out, err)
	}
	if out, err := run("resume", "q"); err != nil || !strings.Contains(out, "q resumed") {
		t.Fatalf("resume: %s %v", out, err)
	}
	if out, err := run("resume", "q"); err != nil || !strings.Contains(out, "was not paused") {
		t.Fatalf("resume again: %s %v", out, err)
	}
	for _, args := range [][]string{{"pause", "q"}, {"pause"}, {"resume"}, {"pause", "q", "r", "--reason", "x"}} {
		if _, err := run(args...); !errors.Is(err, jobqueue.ErrInvalid) {
			t.Errorf("%v: err = %v, want ErrInvalid with usage", args, err)
		}
	}
	if _, err := run("pause", "nope", "--reason", "x"); !errors.Is(err, jobqueue.ErrQueueNotFound) {
		t.Errorf("pause nope: %v", err)
	}
}

func TestPauseRoutesAnswerProblemsForUnknownQueuesAndBadBodies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobqueue.Options{}, jobqueue.Queue{Name: "q"})
	mux := http.NewServeMux()
	b.c.AdminRoutes(mux, "/v1/admin/queues")
	srv := httptest.NewServer(mux)
	defer srv.Close()
	call := func(method, path, body string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header.Get("Content-Type"), string(out)
	}
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"PUT", "/v1/admin/queues/nope/pause", `{"reason":"x"}`, 404},
		{"DELETE", "/v1/admin/queues/nope/pause", ``, 404},
		{"GET", "/v1/admin/queues/nope/pause", ``, 404},
		{"PUT", "/v1/admin/queues/q/pause", `{"reason":""}`, 400},
		{"PUT", "/v1/admin/queues/q/pause", `{"reson":"x"}`, 400},
		{"PUT", "/v1/admin/queues/q/pause", `not json`, 400},
	} {
		if code, ct, body := call(tc.method, tc.path, tc.body); code != tc.want || ct != "application/problem+json" {
			t.Errorf("%s %s %s = %d %s %s, want %d problem+json", tc.method, tc.path, tc.body, code, ct, body, tc.want)
		}
	}
	if code, _, body := call("PUT", "/v1/admin/queues/q/pause", `{"reason":"psp incident"}`); code != 200 || !strings.Contains(body, `"paused":true`) || !strings.Contains(body, `"paused_by":"admin"`) {
		t.Fatalf("pause = %d %s", code, body)
	}
	if code, _, body := call("GET", "/v1/admin/queues", ""); code != 200 || !strings.Contains(body, `"paused":true`) {
		t.Fatalf("stats = %d %s", code, body)
	}
	if code, _, body := call("DELETE", "/v1/admin/queues/q/pause", ""); code != 200 || !strings.Contains(body, `"paused":false`) {
		t.Fatalf("resume = %d %s", code, body)
	}
	if st, err := b.c.PauseStateOf(ctx, "q"); err != nil || st.Paused {
		t.Fatalf("after DELETE: %+v %v", st, err)
	}
}
