// Package notificationsvc holds notifications' use cases: record the
// e-mail an order event calls for, send it through the job queue's worker,
// read what was sent.
//
// Guarantees, in the words of the design:
//
//   - Exactly one row per (order, kind), ever. Record inserts the
//     notification (unique per order and kind) and enqueues its e-mail job
//     in the caller's transaction, which also holds the event's inbox claim
//     (notificationstream): a redelivery finds the inbox claim, a replay of
//     the whole stream or a rebuild through a new consumer group finds the
//     row, and neither enqueues anything.
//   - Each job sends its e-mail at least once. The SMTP hop cannot join a
//     database transaction: the worker sends, and as soon as the server
//     has accepted the message (before QUIT) it records "sent" and deletes
//     the job in one transaction. When that transaction fails (the
//     database crashed or its link was cut), the delivery retries it for
//     up to recordRetryFor, and a redelivery of the job in the same process
//     meanwhile waits instead of sending. A crash of the worker between
//     the acceptance and that commit, or a job redelivered to another
//     process after its visibility timeout while the first delivery was
//     still sending or recording, sends the e-mail again — with the
//     same Message-ID (derived from the notification id), which receivers
//     and the SMTP sink deduplicate by. Outside that window nothing is
//     sent twice: a delivery of a job whose notification is sent does
//     nothing.
//   - Failures are retried with capped exponential backoff and jitter (the
//     worker's policy). A permanent rejection (5xx to MAIL, RCPT or DATA)
//     or the last allowed delivery still failing marks the notification
//     failed and moves its job to the dead-letter queue, in one
//     transaction; a redrive sends it once the server takes mail again.
//     (A job the queue dead-letters by itself — the worker died during its
//     last allowed delivery — leaves the notification queued; the DLQ
//     depth shows it, and a redrive sends it.)
package notificationsvc

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/services/notifications/internal/email"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notification"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationpg"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
)

// Queue names.
const (
	// EmailQueue holds one job per notification: {"notification_id": …}.
	EmailQueue = "emails"
	// EmailDLQ holds the jobs the worker gave up on.
	EmailDLQ = "emails-dlq"
)

// Mailer hands a composed message to an SMTP server (email.Sender). It
// calls accepted once the server has accepted the message and returns
// accepted's error wrapped in email.ErrAcceptedNotRecorded; a failure
// before the acceptance satisfies email.IsPermanent when retrying cannot
// help.
type Mailer interface {
	Send(ctx context.Context, m email.Message, accepted func() error) error
}

var _ Mailer = (*email.Sender)(nil)

// Config of the service.
type Config struct {
	// MaxReceives is the e-mail queue's redrive policy: the worker gives up
	// on the delivery that reaches it (default 10).
	MaxReceives int
	// VisibilityTimeout of an e-mail delivery (default 30s); the worker's
	// heartbeat extends it while the SMTP session runs.
	VisibilityTimeout time.Duration
	// Registerer receives notifications_created_total,
	// notifications_emails_sent_total and notifications_emails_failed_total;
	// nil: no metrics.
	Registerer prometheus.Registerer
	// Inject, if set, writes the trace context of ctx into an e-mail job's
	// attributes (telemetry.Inject), so the worker's send continues the
	// trace of the order event.
	Inject func(ctx context.Context, attributes map[string]string)
}

// Service runs the use cases.
type Service struct {
	// recording holds the notification ids this process has sent and is
	// still trying to record (recordSentRetrying).
	recording sync.Map
	pool      *pgxpool.Pool
	jobs      *jobqueue.Client
	composer  *email.Composer
	mailer    Mailer
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	m         *metrics
}

// New returns the service. composer and mailer may be nil in processes
// that do not run the worker (HandleEmail then fails every job without
// touching it).
func New(pool *pgxpool.Pool, jobs *jobqueue.Client, composer *email.Composer, mailer Mailer, cfg Config, log *slog.Logger, now func() time.Time) (*Service, error) {
	if cfg.MaxReceives <= 0 {
		cfg.MaxReceives = 10
	}
	if cfg.VisibilityTimeout <= 0 {
		cfg.VisibilityTimeout = 30 * time.Second
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Service{pool: pool, jobs: jobs, composer: composer, mailer: mailer, cfg: cfg, log: log, now: now, m: m}, nil
}

// CreateQueues creates the e-mail queue and its DLQ (idempotent), with the
// redrive policy of cfg.
func (s *Service) CreateQueues(ctx context.Context) error {
	for _, q := range []jobqueue.Queue{
		{Name: EmailDLQ, Retention: jobqueue.DeadLetterRetention},
		{Name: EmailQueue, VisibilityTimeout: s.cfg.VisibilityTimeout, MaxReceiveCount: s.cfg.MaxReceives, DeadLetterQueue: EmailDLQ},
	} {
		if err := s.jobs.CreateQueue(ctx, q); err != nil {
			return fmt.Errorf("queue %s: %w", q.Name, err)
		}
	}
	return nil
}

// emailJob is the body of an e-mail job: only the notification's id (the
// address and the content stay in the notifications table).
type emailJob struct {
	NotificationID string `json:"notification_id"`
}

// Redact is the queues' redaction function for DLQ tooling: job bodies
// carry only a notification id, so it passes them through after checking
// they parse; anything else is replaced.
func Redact(body []byte) []byte {
	var j emailJob
	if err := json.Unmarshal(body, &j); err != nil {
		return []byte(`{"redacted":"unexpected body"}`)
	}
	b, _ := json.Marshal(j)
	return b
}

// Record writes the notification n calls for in tx: the notification (a
// new id, status queued, created now) unless the order already has one of
// n's kind, and its e-mail job. created is true only when a notification
// was written (a known customer id may still fill the order's rows that
// lack one: notificationpg.Insert); count it with Created once tx has
// committed. n must carry the order id, kind, recipient, amounts and event
// details, and should carry the customer id (without it only operators see
// the notification); an n that fails notification.Validate is refused with
// a *notification.ValidationError before anything is written.
func (s *Service) Record(ctx context.Context, tx pgx.Tx, n notification.Notification) (created bool, err error) {
	if err := notification.Validate(n); err != nil {
		return false, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return false, fmt.Errorf("notification id: %w", err)
	}
	n.ID, n.Status = id.String(), notificationsapi.StatusQueued
	n.CreatedAt = s.now().UTC().Truncate(time.Microsecond)
	if created, err = notificationpg.Insert(ctx, tx, n); err != nil || !created {
		return false, err
	}
	body, _ := json.Marshal(emailJob{NotificationID: n.ID})
	var attrs map[string]string
	if s.cfg.Inject != nil {
		attrs = map[string]string{}
		s.cfg.Inject(ctx, attrs)
	}
	if _, err := s.jobs.Send(ctx, tx, EmailQueue, jobqueue.SendInput{Body: body, DedupID: "email:" + n.ID, Attributes: attrs}); err != nil {
		return false, fmt.Errorf("enqueue e-mail of notification %s: %w", n.ID, err)
	}
	return true, nil
}

// Created counts a notification of kind in notifications_created_total.
// Call it after the transaction in which Record created the notification
// committed, so that a transaction that fails and is retried counts once.
func (s *Service) Created(kind string) { s.m.create(kind) }

// ListByOrder reads an order's notifications, oldest first. customerID,
// when not empty, is the only customer whose rows are returned (a
// customer reading: another customer's order reads as one without
// notifications, so no answer tells that it exists); "" returns every
// row (an operator). orderID must be a UUID (the transport validates it).
func (s *Service) ListByOrder(ctx context.Context, orderID, customerID string) ([]notification.Notification, error) {
	return notificationpg.ListByOrder(ctx, s.pool, orderID, customerID)
}

// Get reads one notification; notification.ErrNotFound when there is none.
func (s *Service) Get(ctx context.Context, id string) (notification.Notification, error) {
	return notificationpg.Get(ctx, s.pool, id)
}
