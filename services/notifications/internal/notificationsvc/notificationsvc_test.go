package notificationsvc_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/notifications/internal/email"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notification"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationsvc"
	"github.com/shopfloor/shopfloor/services/notifications/migrations"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
	"github.com/shopfloor/shopfloor/services/notifications/smtpsink"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

type bundle struct {
	db   *testinfra.Database
	sink *smtpsink.Sink
	jobs *jobqueue.Client
	svc  *notificationsvc.Service
	reg  *prometheus.Registry
}

// setup runs notifications' service over its own database against a real
// SMTP sink; wrap, when set, decorates the real sender (to inject a crash).
func setup(t *testing.T, cfg notificationsvc.Config, wrap func(notificationsvc.Mailer) notificationsvc.Mailer) *bundle {
	t.Helper()
	db := testinfra.Postgres(t, migrations.FS)
	sink, err := smtpsink.New(smtpsink.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	_, p, _ := net.SplitHostPort(sink.Addr())
	port, _ := strconv.Atoi(p)
	sender, err := email.NewSender(email.Config{Host: "127.0.0.1", Port: port, TLS: email.TLSNone, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	composer, err := email.NewComposer("shopfloor <shop@example.com>")
	if err != nil {
		t.Fatal(err)
	}
	var mailer notificationsvc.Mailer = sender
	if wrap != nil {
		mailer = wrap(sender)
	}
	jobs, err := jobqueue.New(db.Pool, jobqueue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jobs.Close)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	svc, err := notificationsvc.New(db.Pool, jobs, composer, mailer, cfg, slog.New(slog.DiscardHandler), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.CreateQueues(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &bundle{db: db, sink: sink, jobs: jobs, svc: svc, reg: reg}
}

// work runs the e-mail worker until the test ends.
func (b *bundle) work(t *testing.T, concurrency int) {
	t.Helper()
	stop := b.startWorker(t, concurrency)
	t.Cleanup(stop)
}

// startWorker runs an e-mail worker until the returned func is called,
// which returns once the worker stopped (its handlers get 10 ms).
func (b *bundle) startWorker(t *testing.T, concurrency int) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := b.jobs.NewWorker(jobqueue.WorkerConfig{Queue: notificationsvc.EmailQueue, Concurrency: concurrency, VisibilityTimeout: 5 * time.Second,
		ShutdownGrace: 10 * time.Millisecond,
		Backoff:       backoff.Policy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2}}, b.svc.HandleEmail)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.Run(ctx); err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	var once sync.Once
	return func() { once.Do(func() { cancel(); wg.Wait() }) }
}

// apply records a notification of kind for orderID, as event eventID, in
// a committed transaction, as the consumer does.
func (b *bundle) apply(t *testing.T, eventID, orderID, kind, recipient string) bool {
	t.Helper()
	created, err := b.record(context.Background(), notification.Notification{OrderID: orderID, Kind: kind,
		Recipient: recipient, Currency: "EUR", TotalMinor: 4200, EventID: eventID, OrderVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	return created
}

// record runs Record in a transaction of its own and counts what it
// created once that committed.
func (b *bundle) record(ctx context.Context, n notification.Notification) (created bool, err error) {
	err = pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
		created, err = b.svc.Record(ctx, tx, n)
		return err
	})
	if created {
		b.svc.Created(n.Kind)
	}
	return created, err
}

func (b *bundle) list(t *testing.T, orderID string) []notification.Notification {
	t.Helper()
	ns, err := b.svc.ListByOrder(context.Background(), orderID, "")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// settled waits until no notification is queued and the e-mail queue is
// empty.
func (b *bundle) settled(t *testing.T) {
	t.Helper()
	testinfra.Eventually(t, 30*time.Second, func() error {
		var queued, jobs int
		if err := b.db.Pool.QueryRow(context.Background(), `SELECT
			(SELECT count(*) FROM notifications WHERE status = 'queued'),
			(SELECT count(*) FROM jobqueue_messages WHERE queue = 'emails')`).Scan(&queued, &jobs); err != nil {
			return err
		}
		if queued+jobs > 0 {
			return fmt.Errorf("%d notifications queued, %d e-mail jobs left", queued, jobs)
		}
		return nil
	})
}

// queueDepth is the number of messages in queue, visible or not.
func (b *bundle) queueDepth(t *testing.T, queue string) int64 {
	t.Helper()
	stats, err := b.jobs.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		if s.Queue == queue {
			return s.Visible + s.InFlight + s.Delayed
		}
	}
	t.Fatalf("no queue %s in %+v", queue, stats)
	return 0
}

// counter reads a counter of the service's registry.
func (b *bundle) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s %v", name, labels)
	return 0
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// TestOneEmailPerOrderAndKind: every kind of one order is recorded once,
// however often its event (or another event of the same kind) arrives,
// and sent once; the rows show sent, one attempt, sent_at and the
// Message-ID the sink received.
func TestOneEmailPerOrderAndKind(t *testing.T) {
	t.Parallel()
	b := setup(t, notificationsvc.Config{}, nil)
	orderID := newID()
	for _, kind := range notificationsapi.Kinds() {
		ev := newID()
		if !b.apply(t, ev, orderID, kind, "ada@example.com") {
			t.Fatalf("%s not created", kind)
		}
		if b.apply(t, ev, orderID, kind, "ada@example.com") { // a redelivery
			t.Fatalf("%s created twice by one event", kind)
		}
		if b.apply(t, newID(), orderID, kind, "someone-else@example.com") { // another event of the kind (a rebuild's group would see it so)
			t.Fatalf("%s created twice for one order", kind)
		}
	}
	if d := b.queueDepth(t, notificationsvc.EmailQueue); d != 4 {
		t.Fatalf("%d e-mail jobs, want 4", d)
	}
	b.work(t, 4)
	b.settled(t)
	ns := b.list(t, orderID)
	if len(ns) != 4 {
		t.Fatalf("%d notifications", len(ns))
	}
	msgs := b.sink.Messages("ada@example.com")
	if st := b.sink.Stats(); st.Messages != 4 || st.DistinctMessageIDs != 4 || len(msgs) != 4 {
		t.Fatalf("sink: %+v, %d to ada", st, len(msgs))
	}
	byID := map[string]smtpsink.Message{}
	for _, m := range msgs {
		byID[m.MessageID] = m
	}
	for _, n := range ns {
		m, ok := byID[n.MessageID()]
		if n.Status != notificationsapi.StatusSent || n.Attempts != 1 || n.SentAt == nil || !ok || !strings.Contains(m.Subject, orderID) ||
			!strings.Contains(m.Text, "42.00 EUR") {
			t.Errorf("%s: %+v; sink has %v: %+v", n.Kind, n, ok, m)
		}
		if b.counter(t, "notifications_created_total", map[string]string{"kind": n.Kind}) != 1 ||
			b.counter(t, "notifications_emails_sent_total", map[string]string{"kind": n.Kind}) != 1 {
			t.Errorf("%s: metrics", n.Kind)
		}
	}
}

// crashAfterAccept decorates the real sender: the first time the SMTP
// server accepts a message, the worker "dies" before its commit (the
// record step never runs).
// failRecordAfterAccept fails the first record of "sent" after the
// server accepted the message (the database unreachable at that moment)
// and then calls crash, when set, before returning.
type failRecordAfterAccept struct {
	notificationsvc.Mailer
	failed atomic.Bool
	crash  func()
}

func (c *failRecordAfterAccept) Send(ctx context.Context, m email.Message, accepted func() error) error {
	return c.Mailer.Send(ctx, m, func() error {
		if c.failed.CompareAndSwap(false, true) {
			if c.crash != nil {
				c.crash()
			}
			return errors.New("the record of sent failed between the 250 and the commit")
		}
		return accepted()
	})
}

// TestRecordFailureAfterAcceptIsRetriedNotResent: the database blinks
// after the server accepted the e-mail. The delivery retries the record
// until it lands instead of letting the job come back, so the e-mail is
// sent once (the postgres-killed drill sent it twice before).
func TestRecordFailureAfterAcceptIsRetriedNotResent(t *testing.T) {
	t.Parallel()
	fail := &failRecordAfterAccept{}
	b := setup(t, notificationsvc.Config{}, func(m notificationsvc.Mailer) notificationsvc.Mailer { fail.Mailer = m; return fail })
	orderID := newID()
	b.apply(t, newID(), orderID, notificationsapi.KindReceipt, "ada@example.com")
	b.work(t, 2)
	b.settled(t)
	ns := b.list(t, orderID)
	st := b.sink.Stats()
	if !fail.failed.Load() || len(ns) != 1 || ns[0].Status != notificationsapi.StatusSent || st.Messages != 1 {
		t.Fatalf("notifications %+v; sink %+v (want one message)", ns, st)
	}
}

// TestCrashBeforeCommitResendsSameMessageID: the at-least-once SMTP hop
// that remains: the worker dies between the server's acceptance and the
// record. The job comes back after its visibility timeout, the e-mail is
// sent again with the same Message-ID, and the sink sees two messages but
// one distinct Message-ID.
func TestCrashBeforeCommitResendsSameMessageID(t *testing.T) {
	t.Parallel()
	// The crash stops the first worker (its stop func arrives through a
	// channel: the worker is started after the mailer is wired).
	stops, crashed := make(chan func(), 1), make(chan struct{})
	crash := &failRecordAfterAccept{crash: func() { go func() { (<-stops)(); close(crashed) }() }}
	b := setup(t, notificationsvc.Config{}, func(m notificationsvc.Mailer) notificationsvc.Mailer { crash.Mailer = m; return crash })
	orderID := newID()
	b.apply(t, newID(), orderID, notificationsapi.KindReceipt, "ada@example.com")
	stops <- b.startWorker(t, 1)
	<-crashed
	b.work(t, 1) // the process started again
	b.settled(t)
	ns := b.list(t, orderID)
	st := b.sink.Stats()
	if !crash.failed.Load() || len(ns) != 1 || ns[0].Status != notificationsapi.StatusSent ||
		st.Messages != 2 || st.DistinctMessageIDs != 1 || st.Duplicates[ns[0].MessageID()] != 2 {
		t.Fatalf("notifications %+v; sink %+v", ns, st)
	}
	if b.counter(t, "notifications_emails_sent_total", map[string]string{"kind": notificationsapi.KindReceipt}) != 2 {
		t.Fatal("the resend is not counted as sent")
	}
}

// TestSMTPDownForAWhile: while the server refuses mail the e-mails wait in
// the queue and their attempts are counted; when it is back each is sent
// exactly once.
func TestSMTPDownForAWhile(t *testing.T) {
	t.Parallel()
	b := setup(t, notificationsvc.Config{MaxReceives: 100}, nil)
	b.sink.SetDown(true)
	orders := make([]string, 5)
	for i := range orders {
		orders[i] = newID()
		b.apply(t, newID(), orders[i], notificationsapi.KindOrderReceived, fmt.Sprintf("c%d@example.com", i))
	}
	b.work(t, 2)
	testinfra.Eventually(t, 30*time.Second, func() error {
		var retried int
		if err := b.db.Pool.QueryRow(context.Background(),
			`SELECT count(*) FROM notifications WHERE status = 'queued' AND attempts >= 2 AND last_error <> ''`).Scan(&retried); err != nil {
			return err
		}
		if retried != len(orders) {
			return fmt.Errorf("%d of %d notifications retried twice", retried, len(orders))
		}
		return nil
	})
	if d := b.queueDepth(t, notificationsvc.EmailQueue); d != int64(len(orders)) {
		t.Fatalf("queue holds %d e-mails while SMTP is down, want %d", d, len(orders))
	}
	if st := b.sink.Stats(); st.Messages != 0 || st.Rejected < 2*len(orders) {
		t.Fatalf("sink while down: %+v", st)
	}
	if b.counter(t, "notifications_emails_failed_total", map[string]string{"kind": notificationsapi.KindOrderReceived, "outcome": "retry"}) < float64(2*len(orders)) {
		t.Fatal("failed attempts not counted")
	}
	b.sink.SetDown(false)
	b.settled(t)
	st := b.sink.Stats()
	if st.Messages != len(orders) || st.DistinctMessageIDs != len(orders) || len(st.Duplicates) != 0 {
		t.Fatalf("sink after recovery: %+v", st)
	}
	for i, o := range orders {
		ns := b.list(t, o)
		if len(ns) != 1 || ns[0].Status != notificationsapi.StatusSent || ns[0].LastError != "" || ns[0].Attempts < 3 ||
			len(b.sink.Messages(fmt.Sprintf("c%d@example.com", i))) != 1 {
			t.Fatalf("order %d: %+v", i, ns)
		}
	}
}

// TestExhaustionDeadLettersAndRedriveSendsOnce: SMTP down for longer than
// MaxReceives deliveries: the job lands in the DLQ and the notification is
// failed; after recovery a redrive sends it once.
func TestExhaustionDeadLettersAndRedriveSendsOnce(t *testing.T) {
	t.Parallel()
	const maxReceives = 3
	b := setup(t, notificationsvc.Config{MaxReceives: maxReceives}, nil)
	b.sink.SetDown(true)
	orderID := newID()
	b.apply(t, newID(), orderID, notificationsapi.KindPaymentFailed, "ada@example.com")
	b.work(t, 1)
	testinfra.Eventually(t, 30*time.Second, func() error {
		if d := b.queueDepth(t, notificationsvc.EmailDLQ); d != 1 {
			return fmt.Errorf("DLQ depth %d", d)
		}
		return nil
	})
	ns := b.list(t, orderID)
	if len(ns) != 1 || ns[0].Status != notificationsapi.StatusFailed || ns[0].Attempts != maxReceives ||
		!strings.HasPrefix(ns[0].LastError, "retries_exhausted: ") || b.queueDepth(t, notificationsvc.EmailQueue) != 0 {
		t.Fatalf("after exhaustion: %+v", ns)
	}
	dead, err := b.jobs.ListDeadLetters(context.Background(), notificationsvc.EmailDLQ, 10)
	if err != nil || len(dead) != 1 || !strings.Contains(dead[0].DeadLetterReason, "retries_exhausted after 3 attempts") ||
		!strings.Contains(dead[0].DeadLetterReason, ns[0].ID) {
		t.Fatalf("dead letters %+v (%v)", dead, err)
	}
	if b.counter(t, "notifications_emails_failed_total", map[string]string{"kind": notificationsapi.KindPaymentFailed, "outcome": "dead_letter"}) != 1 {
		t.Fatal("dead-lettering not counted")
	}

	b.sink.SetDown(false)
	moved, err := b.jobs.Redrive(context.Background(), jobqueue.RedriveInput{DLQ: notificationsvc.EmailDLQ})
	if err != nil || moved != 1 {
		t.Fatalf("redrive moved %d: %v", moved, err)
	}
	testinfra.Eventually(t, 30*time.Second, func() error {
		if ns := b.list(t, orderID); ns[0].Status != notificationsapi.StatusSent {
			return fmt.Errorf("status %s", ns[0].Status)
		}
		return nil
	})
	b.settled(t)
	if moved, err := b.jobs.Redrive(context.Background(), jobqueue.RedriveInput{DLQ: notificationsvc.EmailDLQ}); err != nil || moved != 0 {
		t.Fatalf("second redrive moved %d: %v", moved, err)
	}
	if st := b.sink.Stats(); st.Messages != 1 || st.DistinctMessageIDs != 1 {
		t.Fatalf("sink: %+v", st)
	}
}

// TestPermanentRejectionFailsAtOnce: a 5xx for the recipient is not
// retried: failed after one attempt, job in the DLQ, nothing delivered.
func TestPermanentRejectionFailsAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, notificationsvc.Config{MaxReceives: 10}, nil)
	orderID := newID()
	b.apply(t, newID(), orderID, notificationsapi.KindCancelled, "ghost@example.invalid")
	b.work(t, 1)
	testinfra.Eventually(t, 30*time.Second, func() error {
		if d := b.queueDepth(t, notificationsvc.EmailDLQ); d != 1 {
			return fmt.Errorf("DLQ depth %d", d)
		}
		return nil
	})
	ns := b.list(t, orderID)
	if len(ns) != 1 || ns[0].Status != notificationsapi.StatusFailed || ns[0].Attempts != 1 || !strings.Contains(ns[0].LastError, "550") {
		t.Fatalf("%+v", ns)
	}
	if st := b.sink.Stats(); st.Messages != 0 || st.Rejected != 1 {
		t.Fatalf("sink: %+v", st)
	}
}

// TestPoisonJobsGoToTheDLQ: a job whose body is not ours, or names no
// notification, is dead-lettered at once.
func TestPoisonJobsGoToTheDLQ(t *testing.T) {
	t.Parallel()
	b := setup(t, notificationsvc.Config{}, nil)
	ctx := context.Background()
	for _, body := range []string{`not json`, `{"notification_id":""}`, `{"notification_id":"` + newID() + `"}`, `{"notification_id":"x"}`} {
		if err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
			_, err := b.jobs.Send(ctx, tx, notificationsvc.EmailQueue, jobqueue.SendInput{Body: []byte(body)})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	b.work(t, 2)
	testinfra.Eventually(t, 30*time.Second, func() error {
		if d := b.queueDepth(t, notificationsvc.EmailDLQ); d != 4 {
			return fmt.Errorf("DLQ depth %d", d)
		}
		return nil
	})
	if got := string(notificationsvc.Redact([]byte(`not json`))); !strings.Contains(got, "redacted") {
		t.Fatalf("Redact(garbage) = %s", got)
	}
}

// TestRecordRefusesWhatCannotBeSent: an event without a usable address
// writes nothing.
func TestRecordRefusesWhatCannotBeSent(t *testing.T) {
	t.Parallel()
	b := setup(t, notificationsvc.Config{}, nil)
	_, err := b.record(context.Background(), notification.Notification{OrderID: newID(), Kind: notificationsapi.KindReceipt, Currency: "EUR"})
	var verr *notification.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v", err)
	}
	var rows int
	if err := b.db.Pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM inbox) + (SELECT count(*) FROM notifications) + (SELECT count(*) FROM jobqueue_messages)`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("%d rows written (%v)", rows, err)
	}
	if err := b.svc.CreateQueues(context.Background()); err != nil {
		t.Fatalf("CreateQueues again: %v", err)
	}
}

// TestCustomerIsStoredAndReplaySafe: the order's customer is stored with
// the notification, and a replay through another consumer group (whose
// inbox claims are not there) duplicates neither the row nor its e-mail
// job. A row recorded without a customer (before the column existed) is
// the operators' only, until a replay or the order's next event fills it
// in; a customer once stored is never replaced.
func TestCustomerIsStoredAndReplaySafe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, notificationsvc.Config{}, nil)
	apply := func(eventID, orderID, kind, customer string) bool {
		t.Helper()
		created, err := b.record(ctx, notification.Notification{OrderID: orderID, CustomerID: customer, Kind: kind,
			Recipient: "ada@example.com", Currency: "EUR", TotalMinor: 4200, EventID: eventID, OrderVersion: 1})
		if err != nil {
			t.Fatal(err)
		}
		return created
	}
	// seen is what a reader filtering by customer gets: kinds, in order.
	seen := func(orderID, customer string) string {
		t.Helper()
		ns, err := b.svc.ListByOrder(ctx, orderID, customer)
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, n := range ns {
			kinds = append(kinds, n.Kind+"/"+n.CustomerID)
		}
		return strings.Join(kinds, ",")
	}
	rows := func(orderID string) (total, withCustomer int) {
		t.Helper()
		if err := b.db.Pool.QueryRow(ctx, `SELECT count(*), count(customer_id) FROM notifications WHERE order_id = $1`, orderID).
			Scan(&total, &withCustomer); err != nil {
			t.Fatal(err)
		}
		return total, withCustomer
	}

	o, ev := newID(), newID()
	if !apply(ev, o, notificationsapi.KindOrderReceived, "c1") {
		t.Fatal("not created")
	}
	if apply(ev, o, notificationsapi.KindOrderReceived, "c1") || // a replay through a new group (its inbox is empty)
		apply(newID(), o, notificationsapi.KindOrderReceived, "c2") { // a forged or buggy event naming someone else
		t.Fatal("a replay created a second notification")
	}
	if total, _ := rows(o); total != 1 {
		t.Fatalf("%d rows for one (order, kind)", total)
	}
	for customer, want := range map[string]string{"c1": "order_received/c1", "": "order_received/c1", "c2": ""} {
		if got := seen(o, customer); got != want {
			t.Errorf("order %s read as %q = %q, want %q", o, customer, got, want)
		}
	}

	// A row from before customer ids: operators only, until a replay fills it.
	old, oldEv := newID(), newID()
	if !apply(oldEv, old, notificationsapi.KindOrderReceived, "") {
		t.Fatal("not created")
	}
	if total, withCustomer := rows(old); total != 1 || withCustomer != 0 {
		t.Fatalf("rows %d, with customer %d; want 1 without (NULL, not '')", total, withCustomer)
	}
	if got := seen(old, "c1"); got != "" {
		t.Fatalf("a row without customer is shown to customer c1: %s", got)
	}
	if seen(old, "") != "order_received/" {
		t.Fatal("operators do not see a row without customer")
	}
	if apply(oldEv, old, notificationsapi.KindOrderReceived, "c1") {
		t.Fatal("the replay created a second notification")
	}
	if got := seen(old, "c1"); got != "order_received/c1" {
		t.Fatalf("after the replay c1 sees %q", got)
	}
	// The order's next event is recorded with its customer; nothing changes the first.
	if !apply(newID(), old, notificationsapi.KindReceipt, "c1") ||
		apply(newID(), old, notificationsapi.KindReceipt, "c2") {
		t.Fatal("receipt: want created once")
	}
	if got := seen(old, "c1"); got != "order_received/c1,receipt/c1" {
		t.Fatalf("c1 sees %q", got)
	}
	if got := seen(old, "c2"); got != "" {
		t.Fatalf("c2 sees %q", got)
	}
	// One e-mail job per notification, whatever was replayed.
	if d := b.queueDepth(t, notificationsvc.EmailQueue); d != 3 {
		t.Fatalf("%d e-mail jobs, want 3", d)
	}
}
