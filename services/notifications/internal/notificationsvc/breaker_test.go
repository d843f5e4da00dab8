package notificationsvc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/breaker"
	"github.com/shopfloor/shopfloor/pkg/breaker/breakertest"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/services/notifications/internal/email"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationsvc"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
)

// TestSMTPBreakerPausesTheEmailWorker: with the SMTP server refusing every
// session (421), the breaker opens and the e-mail worker stops receiving:
// while it is open, each half-open probe is the only session and the only
// receive, so no e-mail burns its attempts. When the server is back a
// probe closes the breaker and every e-mail is sent once.
func TestSMTPBreakerPausesTheEmailWorker(t *testing.T) {
	t.Parallel()
	brk := breakertest.New(t, breaker.Config{Name: "smtp", Failures: 3, CoolDown: 50 * time.Millisecond, MaxCoolDown: 200 * time.Millisecond})
	b := setup(t, notificationsvc.Config{MaxReceives: 1000}, func(m notificationsvc.Mailer) notificationsvc.Mailer {
		return email.NewGuarded(m.(*email.Sender), brk.Breaker)
	})
	b.sink.SetDown(true)
	for i := range 8 {
		b.apply(t, newID(), newID(), notificationsapi.KindOrderReceived, fmt.Sprintf("c%d@example.com", i))
	}
	w := b.jobs.NewWorker(jobqueue.WorkerConfig{Queue: notificationsvc.EmailQueue, Concurrency: 1, VisibilityTimeout: 5 * time.Second,
		Backoff: backoff.Policy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 2}, Gate: jobqueue.BreakerGate(brk.Breaker)}, b.svc.HandleEmail)
	breakertest.Run(t, w.Run)

	// One job at a time: none is between its receive and its session when
	// the breaker opens, so every session while open is a probe's.
	type snap struct{ opened, sessions, receives int64 }
	snapshot := func() (s snap) {
		s.opened = brk.Steady(t, 20*time.Second, func() error {
			s.sessions = int64(b.sink.Stats().Rejected)
			return b.db.Pool.QueryRow(context.Background(), `SELECT coalesce(sum(receive_count), 0) FROM jobqueue_messages WHERE queue = 'emails'`).Scan(&s.receives)
		})
		return s
	}
	first := snapshot()
	brk.WaitOpened(t, first.opened+3, 20*time.Second)
	last := snapshot()
	probes := last.opened - first.opened
	if last.sessions-first.sessions != probes || last.receives-first.receives != probes {
		t.Fatalf("while open, %d probes ran but the SMTP server saw %d sessions and the jobs %d receives; want one each per probe",
			probes, last.sessions-first.sessions, last.receives-first.receives)
	}

	b.sink.SetDown(false)
	b.settled(t)
	if st := b.sink.Stats(); st.Messages != 8 || len(st.Duplicates) != 0 {
		t.Fatalf("sink after recovery: %+v", st)
	}
	if s := brk.State(); s != breaker.Closed {
		t.Fatalf("breaker %s after the server came back", s)
	}
}
