package notificationsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/services/notifications/internal/email"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notification"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationpg"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
)

// recordTimeout bounds the "sent" transaction after the SMTP server
// accepted a message. It runs on a context that ignores the worker's
// shutdown: the message is out, and every millisecond before the commit is
// a millisecond in which a crash sends it again.
const recordTimeout = 10 * time.Second

// recordRetryFor is how long a delivery keeps trying to record an e-mail
// the SMTP server accepted when the first try failed (the database
// crashed or its link was cut at that moment): every retry that lands
// closes the at-least-once window that would otherwise send the e-mail
// again. The retries stop earlier when the worker shuts down (the
// handler's context ends ShutdownGrace after that).
const recordRetryFor = 2 * time.Minute

// errBeingRecorded: another delivery in this process has sent this
// notification and is still recording it; this one must not send it
// again, and retries after the worker's backoff.
var errBeingRecorded = errors.New("notificationsvc: the e-mail was accepted by the SMTP server and another delivery is recording it")

var errNoMailer = errors.New("notificationsvc: no SMTP sender configured (the worker role needs SMTP_HOST and SMTP_FROM)")

// HandleEmail is the e-mail queue's jobqueue.Handler. For one
// notification:
//
//   - sent already (a redelivery, a redrive of a job that got through):
//     done, the job is deleted;
//   - compose the message from the stored notification (the same bytes
//     and Message-ID on every attempt) and send it; once the server has
//     accepted it, mark the notification sent and delete the job in one
//     transaction, before the session's QUIT;
//   - accepted but that transaction failed: the job comes back and the
//     e-mail is sent again with the same Message-ID (the at-least-once
//     hop; logged);
//   - rejected for good (5xx to MAIL, RCPT or DATA), a message that cannot
//     be composed, or the last allowed delivery (MaxReceives) still
//     failing: mark the notification failed and move the job to the DLQ
//     with the class, the attempt count and the trace id, in one
//     transaction;
//   - anything else (connection refused, 4xx, timeouts): count the attempt
//     and its error on the notification and retry after the worker's
//     backoff.
func (s *Service) HandleEmail(ctx context.Context, m jobqueue.Message) error {
	var job emailJob
	if err := json.Unmarshal(m.Body, &job); err != nil || job.NotificationID == "" {
		return &jobqueue.PermanentError{Err: fmt.Errorf("e-mail job %d: unreadable body", m.ID)}
	}
	n, err := notificationpg.Get(ctx, s.pool, job.NotificationID)
	if errors.Is(err, notification.ErrNotFound) {
		return &jobqueue.PermanentError{Err: err}
	}
	if err != nil {
		return err
	}
	if n.Status == notificationsapi.StatusSent {
		return nil
	}
	if _, busy := s.recording.Load(n.ID); busy {
		return errBeingRecorded
	}
	if s.composer == nil || s.mailer == nil {
		return errNoMailer
	}
	msg, err := s.composer.Compose(n)
	if err != nil {
		return s.giveUp(ctx, m, n, "compose", err)
	}
	err = s.mailer.Send(ctx, msg, func() error { return s.recordSent(ctx, m, n) })
	switch {
	case err == nil:
		s.m.send(n.Kind)
		s.log.InfoContext(ctx, "e-mail sent", "notification", n.ID, "order", n.OrderID, "kind", n.Kind, "message_id", msg.MessageID)
		return jobqueue.ErrHandled
	case errors.Is(err, email.ErrAcceptedNotRecorded):
		s.m.send(n.Kind)
		s.log.WarnContext(ctx, "e-mail accepted by the SMTP server but not recorded; retrying the record",
			"notification", n.ID, "message_id", msg.MessageID, "err", err)
		if rerr := s.recordSentRetrying(ctx, m, n); rerr != nil {
			s.log.WarnContext(ctx, "e-mail accepted by the SMTP server but not recorded; it will be sent again with the same Message-ID",
				"notification", n.ID, "message_id", msg.MessageID, "err", rerr)
			return err
		}
		s.log.InfoContext(ctx, "e-mail sent (recorded on a retry)", "notification", n.ID, "order", n.OrderID, "kind", n.Kind, "message_id", msg.MessageID)
		return jobqueue.ErrHandled
	case email.IsPermanent(err):
		return s.giveUp(ctx, m, n, "rejected", err)
	case m.ReceiveCount >= s.cfg.MaxReceives:
		return s.giveUp(ctx, m, n, "retries_exhausted", err)
	}
	s.m.fail(n.Kind, outcomeRetry)
	if _, rerr := notificationpg.RecordFailure(ctx, s.pool, n.ID, truncate(err.Error(), 500), false, s.now().UTC()); rerr != nil {
		s.log.WarnContext(ctx, "could not count the failed attempt", "notification", n.ID, "err", rerr)
	}
	return err // transient: the worker's backoff
}

// recordSent marks n sent and deletes the job in one transaction. A stale
// receipt (the visibility timeout passed and another delivery holds the
// job) is not an error: the mark is guarded by the status, and the other
// delivery deletes the job when it finds the notification sent or sends
// the same Message-ID again.
func (s *Service) recordSent(ctx context.Context, m jobqueue.Message, n notification.Notification) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	return pgdb.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := notificationpg.MarkSent(ctx, tx, n.ID, s.now().UTC()); err != nil {
			return err
		}
		err := s.jobs.DeleteMessage(ctx, tx, m.ReceiptHandle)
		if errors.Is(err, jobqueue.ErrStaleReceipt) {
			s.log.InfoContext(ctx, "e-mail job redelivered meanwhile; its next delivery finishes it", "queue", m.Queue, "id", m.ID)
			return nil
		}
		return err
	})
}

// recordSentRetrying retries recordSent with capped backoff until it
// lands, recordRetryFor passes or ctx ends. Meanwhile n is marked as being
// recorded, so that a redelivery of its job in this process (the
// visibility timeout may pass during a database outage) does not send it
// again.
func (s *Service) recordSentRetrying(ctx context.Context, m jobqueue.Message, n notification.Notification) error {
	s.recording.Store(n.ID, struct{}{})
	defer s.recording.Delete(n.ID)
	deadline := s.now().Add(recordRetryFor)
	wait := 100 * time.Millisecond
	var err error
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
		if err = s.recordSent(ctx, m, n); err == nil {
			return nil
		}
		if s.now().After(deadline) {
			return err
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// giveUp marks n failed and moves the job to the DLQ, in one transaction,
// with what an operator needs to decide on a redrive.
func (s *Service) giveUp(ctx context.Context, m jobqueue.Message, n notification.Notification, class string, cause error) error {
	reason := fmt.Sprintf("%s after %d attempts; notification=%s order=%s kind=%s; trace_id=%s; last error: %v",
		class, m.ReceiveCount, n.ID, n.OrderID, n.Kind, trace.SpanContextFromContext(ctx).TraceID(), cause)
	s.log.WarnContext(ctx, "e-mail given up; job to the DLQ", "notification", n.ID, "order", n.OrderID, "reason", reason)
	err := pgdb.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := notificationpg.RecordFailure(ctx, tx, n.ID, truncate(class+": "+cause.Error(), 500), true, s.now().UTC()); err != nil {
			return err
		}
		err := s.jobs.MoveToDeadLetter(ctx, tx, m.ReceiptHandle, truncate(reason, 1000))
		if errors.Is(err, jobqueue.ErrStaleReceipt) {
			s.log.InfoContext(ctx, "e-mail job redelivered meanwhile; its next delivery finishes it", "queue", m.Queue, "id", m.ID)
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	s.m.fail(n.Kind, outcomeDeadLetter)
	return jobqueue.ErrHandled
}

// truncate cuts s to at most n bytes without splitting a character
// (PostgreSQL refuses invalid UTF-8).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
