package notificationpg_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notification"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationpg"
	"github.com/shopfloor/shopfloor/services/notifications/migrations"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// setup is a database with notifications' real migrations.
func setup(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return testinfra.Postgres(t, migrations.FS).Pool
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// newNotification is a queued notification of kind for orderID, created
// at created.
func newNotification(orderID, customer, kind string, created time.Time) notification.Notification {
	return notification.Notification{ID: newID(), OrderID: orderID, CustomerID: customer, Kind: kind, Recipient: "ada@example.com",
		Status: notificationsapi.StatusQueued, EventID: newID(), OrderVersion: 1, Currency: "EUR", TotalMinor: 4200,
		Items:     []notification.Line{{SKU: "MUG-1", Name: "Mug", Quantity: 2, UnitPriceMinor: 2100}},
		CreatedAt: created, UpdatedAt: created}
}

func insert(t *testing.T, db *pgxpool.Pool, n notification.Notification) bool {
	t.Helper()
	var created bool
	if err := pgdb.InTx(context.Background(), db, func(tx pgx.Tx) (err error) {
		created, err = notificationpg.Insert(context.Background(), tx, n)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return created
}

func get(t *testing.T, db *pgxpool.Pool, id string) notification.Notification {
	t.Helper()
	n, err := notificationpg.Get(context.Background(), db, id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// same compares what a read returns with what was inserted (times by
// instant).
func same(got, want notification.Notification) bool {
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) ||
		(got.SentAt == nil) != (want.SentAt == nil) || (got.SentAt != nil && !got.SentAt.Equal(*want.SentAt)) {
		return false
	}
	got.CreatedAt, got.UpdatedAt, got.SentAt = want.CreatedAt, want.UpdatedAt, want.SentAt
	return reflect.DeepEqual(got, want)
}

func TestGetReturnsTheInsertedNotification(t *testing.T) {
	t.Parallel()
	db := setup(t)
	want := newNotification(newID(), "c1", notificationsapi.KindPaymentFailed, t0)
	want.Reason = "card declined"
	if !insert(t, db, want) {
		t.Fatal("Insert: created = false")
	}
	if got := get(t, db, want.ID); !same(got, want) {
		t.Errorf("Get = %+v\nwant  %+v", got, want)
	}
	// Without items, customer or reason: an empty list, "" and "" back.
	bare := newNotification(newID(), "", notificationsapi.KindReceipt, t0)
	bare.Items = nil
	insert(t, db, bare)
	if got := get(t, db, bare.ID); got.Items == nil || len(got.Items) != 0 || got.CustomerID != "" || got.Reason != "" {
		t.Errorf("Get of a bare notification = %+v", got)
	}
	var message string
	if err := db.QueryRow(context.Background(), `SELECT message_id FROM notifications WHERE id = $1`, want.ID).Scan(&message); err != nil ||
		message != want.MessageID() {
		t.Errorf("stored message_id = %q, %v; want %q", message, err, want.MessageID())
	}
}

func TestGetReturnsNotFoundForAnUnknownOrMalformedID(t *testing.T) {
	t.Parallel()
	db := setup(t)
	for _, id := range []string{newID(), "not-a-uuid"} {
		if _, err := notificationpg.Get(context.Background(), db, id); !errors.Is(err, notification.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want notification.ErrNotFound", id, err)
		}
	}
}

// TestInsertKeepsTheFirstNotificationOfAKind: a second notification of the
// same (order, kind) writes nothing of itself, whatever it says.
func TestInsertKeepsTheFirstNotificationOfAKind(t *testing.T) {
	t.Parallel()
	db := setup(t)
	order := newID()
	first := newNotification(order, "c1", notificationsapi.KindReceipt, t0)
	if !insert(t, db, first) {
		t.Fatal("first Insert: created = false")
	}
	second := newNotification(order, "c1", notificationsapi.KindReceipt, t0.Add(time.Minute))
	second.Recipient, second.TotalMinor = "eve@example.com", 1
	if insert(t, db, second) {
		t.Error("second Insert of (order, receipt): created = true")
	}
	if _, err := notificationpg.Get(context.Background(), db, second.ID); !errors.Is(err, notification.ErrNotFound) {
		t.Errorf("the second notification was stored (%v)", err)
	}
	if got := get(t, db, first.ID); !same(got, first) {
		t.Errorf("the first notification changed: %+v", got)
	}
	if !insert(t, db, newNotification(order, "c1", notificationsapi.KindCancelled, t0)) {
		t.Error("another kind of the same order: created = false")
	}
}

// TestInsertFillsAMissingCustomerButNeverReplacesOne: a notification that
// carries the customer fills the order's rows that have none, even when it
// is itself a duplicate; a customer once stored stays.
func TestInsertFillsAMissingCustomerButNeverReplacesOne(t *testing.T) {
	t.Parallel()
	db := setup(t)
	order := newID()
	old := newNotification(order, "", notificationsapi.KindOrderReceived, t0)
	insert(t, db, old)
	if insert(t, db, newNotification(order, "c1", notificationsapi.KindOrderReceived, t0)) { // a replay, now with the customer
		t.Fatal("the replay created a second row")
	}
	if got := get(t, db, old.ID); got.CustomerID != "c1" {
		t.Errorf("customer after the replay = %q, want c1", got.CustomerID)
	}
	insert(t, db, newNotification(order, "c2", notificationsapi.KindReceipt, t0)) // names someone else
	if got := get(t, db, old.ID); got.CustomerID != "c1" {
		t.Errorf("customer after an event naming c2 = %q, want c1 kept", got.CustomerID)
	}
}

// TestListByOrderReadsOldestFirstAndOnlyTheCustomersRows: customerID
// filters; rows without a customer and other customers' orders read as
// an order without notifications.
func TestListByOrderReadsOldestFirstAndOnlyTheCustomersRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	order, unclaimed := newID(), newID()
	later := newNotification(order, "c1", notificationsapi.KindReceipt, t0.Add(2*time.Minute))
	first := newNotification(order, "c1", notificationsapi.KindOrderReceived, t0)
	insert(t, db, later) // inserted first, created later
	insert(t, db, first)
	insert(t, db, newNotification(unclaimed, "", notificationsapi.KindOrderReceived, t0))
	insert(t, db, newNotification(newID(), "c1", notificationsapi.KindOrderReceived, t0)) // another order

	kinds := func(orderID, customer string) []string {
		t.Helper()
		ns, err := notificationpg.ListByOrder(ctx, db, orderID, customer)
		if err != nil {
			t.Fatal(err)
		}
		if ns == nil {
			t.Errorf("ListByOrder(%s, %q) = nil, want a list", orderID, customer)
		}
		var out []string
		for _, n := range ns {
			out = append(out, n.Kind)
		}
		return out
	}
	want := []string{notificationsapi.KindOrderReceived, notificationsapi.KindReceipt}
	for _, customer := range []string{"c1", ""} {
		if got := kinds(order, customer); !slices.Equal(got, want) {
			t.Errorf("order read as %q = %v, want %v", customer, got, want)
		}
	}
	if got := kinds(order, "c2"); len(got) != 0 {
		t.Errorf("another customer reads %v", got)
	}
	if got := kinds(unclaimed, "c1"); len(got) != 0 {
		t.Errorf("a row without customer is shown to c1: %v", got)
	}
	if got := kinds(unclaimed, ""); !slices.Equal(got, []string{notificationsapi.KindOrderReceived}) {
		t.Errorf("operators read %v of the row without customer", got)
	}
	if got := kinds(newID(), ""); len(got) != 0 {
		t.Errorf("an order without notifications reads %v", got)
	}
}

func TestMarkSentRecordsTheFirstAcceptanceOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	n := newNotification(newID(), "c1", notificationsapi.KindReceipt, t0)
	insert(t, db, n)
	if _, err := notificationpg.RecordFailure(ctx, db, n.ID, "421 try later", false, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(2 * time.Minute)
	if changed, err := notificationpg.MarkSent(ctx, db, n.ID, at); err != nil || !changed {
		t.Fatalf("MarkSent = %v, %v; want changed", changed, err)
	}
	got := get(t, db, n.ID)
	if got.Status != notificationsapi.StatusSent || got.SentAt == nil || !got.SentAt.Equal(at) || !got.UpdatedAt.Equal(at) ||
		got.Attempts != 2 || got.LastError != "" {
		t.Errorf("after MarkSent: %+v (sent at %v)", got, got.SentAt)
	}
	// Another delivery of the job got there too: nothing changes.
	if changed, err := notificationpg.MarkSent(ctx, db, n.ID, at.Add(time.Minute)); err != nil || changed {
		t.Errorf("second MarkSent = %v, %v; want unchanged", changed, err)
	}
	if again := get(t, db, n.ID); !again.SentAt.Equal(at) || again.Attempts != 2 {
		t.Errorf("the second MarkSent changed the row: %+v", again)
	}
}

// TestRecordFailureQueuesOrFailsButLeavesSentAlone: a failure counts an
// attempt and keeps the notification queued, or fails it when final; a
// redriven failed notification is queued again; a sent one never changes.
func TestRecordFailureQueuesOrFailsButLeavesSentAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	n := newNotification(newID(), "c1", notificationsapi.KindReceipt, t0)
	insert(t, db, n)
	steps := []struct {
		final      bool
		wantStatus string
	}{
		{false, notificationsapi.StatusQueued},
		{true, notificationsapi.StatusFailed},
		{false, notificationsapi.StatusQueued}, // redriven
	}
	for i, s := range steps {
		at := t0.Add(time.Duration(i+1) * time.Minute)
		msg := "attempt " + string(rune('1'+i))
		if changed, err := notificationpg.RecordFailure(ctx, db, n.ID, msg, s.final, at); err != nil || !changed {
			t.Fatalf("RecordFailure %d = %v, %v", i, changed, err)
		}
		got := get(t, db, n.ID)
		if got.Status != s.wantStatus || got.Attempts != i+1 || got.LastError != msg || !got.UpdatedAt.Equal(at) {
			t.Errorf("after failure %d (final %v): status %s, %d attempts, last error %q, updated %v", i, s.final, got.Status, got.Attempts, got.LastError, got.UpdatedAt)
		}
	}
	if _, err := notificationpg.MarkSent(ctx, db, n.ID, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if changed, err := notificationpg.RecordFailure(ctx, db, n.ID, "late", true, t0.Add(2*time.Hour)); err != nil || changed {
		t.Errorf("RecordFailure of a sent notification = %v, %v; want unchanged", changed, err)
	}
	if got := get(t, db, n.ID); got.Status != notificationsapi.StatusSent || got.LastError != "" {
		t.Errorf("a sent notification changed: %+v", got)
	}
}
