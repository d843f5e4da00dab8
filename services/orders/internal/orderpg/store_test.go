package orderpg_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/orders/internal/order"
	"github.com/shopfloor/shopfloor/services/orders/internal/orderpg"
	"github.com/shopfloor/shopfloor/services/orders/migrations"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// setup is a database with orders' real migrations.
func setup(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return testinfra.Postgres(t, migrations.FS).Pool
}

// t0 is the tests' clock: microseconds, as PostgreSQL stores them.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// newOrder is a pending order of two lines for customer, at version 1.
func newOrder(customer string) order.Order {
	return order.Order{ID: newID(), CustomerID: customer, CustomerEmail: customer + "@example.com", Status: order.PendingPayment,
		Version: 1, Currency: "EUR", TotalMinor: 2500,
		Lines: []order.Line{
			{ProductID: uuid.NewString(), SKU: "LAMP-OAK-01", Name: "Oak lamp", Quantity: 2, UnitPriceMinor: 1000, CatalogVersion: 3},
			{ProductID: uuid.NewString(), SKU: "MUG-1", Name: "Mug", Quantity: 1, UnitPriceMinor: 500, CatalogVersion: 1},
		},
		Shipping:  ordersapi.Address{Name: "Ada", Line1: "1 Main St", City: "Berlin", PostalCode: "10115", Country: "DE"},
		CreatedAt: t0, UpdatedAt: t0}
}

func inTx(t *testing.T, db *pgxpool.Pool, fn func(tx pgx.Tx) error) error {
	t.Helper()
	return pgdb.InTx(context.Background(), db, fn)
}

func insert(t *testing.T, db *pgxpool.Pool, o order.Order) {
	t.Helper()
	if err := inTx(t, db, func(tx pgx.Tx) error { return orderpg.Insert(context.Background(), tx, o) }); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, db *pgxpool.Pool, id string) order.Order {
	t.Helper()
	o, err := orderpg.Get(context.Background(), db, id, false)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// equal compares two orders field by field (times by instant).
func equal(a, b order.Order) bool {
	return a.ID == b.ID && a.CustomerID == b.CustomerID && a.CustomerEmail == b.CustomerEmail && a.Status == b.Status &&
		a.Version == b.Version && a.Currency == b.Currency && a.TotalMinor == b.TotalMinor && slices.Equal(a.Lines, b.Lines) &&
		a.Shipping == b.Shipping && a.PaymentID == b.PaymentID && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

func TestGetReturnsTheInsertedOrderWithItsLinesInOrder(t *testing.T) {
	t.Parallel()
	db := setup(t)
	want := newOrder("c1")
	insert(t, db, want)
	if got := get(t, db, want.ID); !equal(got, want) {
		t.Errorf("Get = %+v\nwant  %+v", got, want)
	}
}

func TestGetReturnsNotFoundForAnUnknownOrder(t *testing.T) {
	t.Parallel()
	db := setup(t)
	for _, forUpdate := range []bool{false, true} {
		err := inTx(t, db, func(tx pgx.Tx) error {
			_, err := orderpg.Get(context.Background(), tx, newID(), forUpdate)
			return err
		})
		if !errors.Is(err, order.ErrNotFound) {
			t.Errorf("Get(forUpdate=%v) of an unknown id = %v, want order.ErrNotFound", forUpdate, err)
		}
	}
}

func TestInsertRefusesAnIDThatExists(t *testing.T) {
	t.Parallel()
	db := setup(t)
	o := newOrder("c1")
	insert(t, db, o)
	o.CustomerID = "c2"
	if err := inTx(t, db, func(tx pgx.Tx) error { return orderpg.Insert(context.Background(), tx, o) }); !pgdb.IsCode(err, pgdb.CodeUniqueViolation) {
		t.Fatalf("second Insert of %s = %v, want a unique violation", o.ID, err)
	}
	if got := get(t, db, o.ID); got.CustomerID != "c1" {
		t.Errorf("the refused insert changed the order: customer %s", got.CustomerID)
	}
}

// TestGetForUpdateHoldsTheOrderUntilTheTransactionEnds: a concurrent
// compare-and-set cannot pass the lock Get(forUpdate) takes.
func TestGetForUpdateHoldsTheOrderUntilTheTransactionEnds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	o := newOrder("c1")
	insert(t, db, o)
	for _, forUpdate := range []bool{true, false} {
		holder, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := orderpg.Get(ctx, holder, o.ID, forUpdate); err != nil {
			t.Fatal(err)
		}
		err = inTx(t, db, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '200ms'`); err != nil {
				return err
			}
			return orderpg.CompareAndSet(ctx, tx, o, o.Version) // same version: a no-op write that needs the row
		})
		if locked := pgdb.IsCode(err, "55P03"); locked != forUpdate { // lock_not_available
			t.Errorf("forUpdate=%v: a concurrent write = %v", forUpdate, err)
		}
		_ = holder.Rollback(ctx)
	}
}

// TestListByCustomerPagesNewestFirst: ids are UUIDv7, so id order is
// creation order; beforeID continues after the last order of a page.
func TestListByCustomerPagesNewestFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	var ids []string
	for range 5 {
		o := newOrder("c1")
		insert(t, db, o)
		ids = append(ids, o.ID)
		insert(t, db, newOrder("c2")) // another customer's, interleaved
	}
	slices.Reverse(ids) // newest first
	var got []string
	before := ""
	for page := 0; ; page++ {
		os, err := orderpg.ListByCustomer(ctx, db, "c1", before, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(os) > 2 {
			t.Fatalf("page %d holds %d orders, limit 2", page, len(os))
		}
		if len(os) == 0 {
			break
		}
		for _, o := range os {
			if o.CustomerID != "c1" || len(o.Lines) != 2 || o.Lines[0].SKU != "LAMP-OAK-01" {
				t.Errorf("page %d: order %s of %s with lines %+v", page, o.ID, o.CustomerID, o.Lines)
			}
			got = append(got, o.ID)
		}
		before = os[len(os)-1].ID
	}
	if !slices.Equal(got, ids) {
		t.Errorf("pages = %v\nwant    %v", got, ids)
	}
	if os, err := orderpg.ListByCustomer(ctx, db, "nobody", "", 10); err != nil || len(os) != 0 {
		t.Errorf("orders of an unknown customer = %v, %v; want none", os, err)
	}
}

func TestCompareAndSetStoresOnlyFromTheExpectedVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	o := newOrder("c1")
	insert(t, db, o)
	paid, err := o.Transition(order.Paid, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	paid.PaymentID = "pay-1"
	cas := func(o order.Order, from int64) error {
		return inTx(t, db, func(tx pgx.Tx) error { return orderpg.CompareAndSet(ctx, tx, o, from) })
	}
	if err := cas(paid, 1); err != nil {
		t.Fatalf("CompareAndSet from version 1: %v", err)
	}
	if got := get(t, db, o.ID); !equal(got, paid) {
		t.Errorf("after the change: %+v\nwant %+v", got, paid)
	}

	// A writer that read version 1 loses: nothing changes.
	stale := paid
	stale.Status, stale.Version, stale.PaymentID = order.Cancelled, 2, ""
	if err := cas(stale, 1); !errors.Is(err, order.ErrVersionMismatch) {
		t.Errorf("CompareAndSet from a stale version = %v, want order.ErrVersionMismatch", err)
	}
	if got := get(t, db, o.ID); !equal(got, paid) {
		t.Errorf("the lost compare-and-set changed the order: %+v", got)
	}

	unknown := newOrder("c1")
	if err := cas(unknown, 1); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("CompareAndSet of an unknown order = %v, want order.ErrNotFound", err)
	}

	// An empty payment id clears the stored one (NULL, read as "").
	failed := paid
	failed.Status, failed.Version, failed.PaymentID = order.PaymentFailed, 3, ""
	if err := cas(failed, 2); err != nil {
		t.Fatal(err)
	}
	var stored *string
	if err := db.QueryRow(ctx, `SELECT payment_id FROM orders WHERE id = $1`, o.ID).Scan(&stored); err != nil || stored != nil {
		t.Errorf("payment_id = %v, %v; want NULL", stored, err)
	}
}

// TestRecordPaymentEventAsksForARefundOncePerPayment: a second
// refund_required for the same payment is stored as ignored and reported
// as not recorded; other outcomes are stored as they are.
func TestRecordPaymentEventAsksForARefundOncePerPayment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	o := newOrder("c1")
	insert(t, db, o)
	record := func(e orderpg.PaymentEvent) (bool, error) {
		var recorded bool
		err := inTx(t, db, func(tx pgx.Tx) (err error) {
			recorded, err = orderpg.RecordPaymentEvent(ctx, tx, e)
			return err
		})
		return recorded, err
	}
	ev := func(id, payment, outcome string) orderpg.PaymentEvent {
		return orderpg.PaymentEvent{EventID: id, OrderID: o.ID, PaymentID: payment, EventType: "payment.succeeded",
			Outcome: outcome, OrderStatus: order.PendingPayment, OrderVersion: 1}
	}
	steps := []struct {
		event        orderpg.PaymentEvent
		wantRecorded bool
		wantStored   string
	}{
		{ev("e3", "pay-1", orderpg.OutcomeApplied), true, orderpg.OutcomeApplied},
		{ev("e1", "pay-2", orderpg.OutcomeRefundRequired), true, orderpg.OutcomeRefundRequired},
		{ev("e2", "pay-2", orderpg.OutcomeRefundRequired), false, orderpg.OutcomeIgnored}, // the refund was asked for already
		{ev("e0", "pay-3", orderpg.OutcomeIgnored), true, orderpg.OutcomeIgnored},
		{ev("e4", "pay-3", orderpg.OutcomeRefundRequired), true, orderpg.OutcomeRefundRequired},
	}
	for _, s := range steps {
		recorded, err := record(s.event)
		if err != nil || recorded != s.wantRecorded {
			t.Errorf("RecordPaymentEvent(%s, %s, %s) = %v, %v; want %v", s.event.EventID, s.event.PaymentID, s.event.Outcome, recorded, err, s.wantRecorded)
		}
	}
	if _, err := record(ev("e1", "pay-9", orderpg.OutcomeApplied)); err == nil {
		t.Error("a second record of event e1 was accepted")
	}

	// PaymentEvents lists them oldest first (the order they were recorded
	// in, not the event ids' order).
	got, err := orderpg.PaymentEvents(ctx, db, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(steps) {
		t.Fatalf("PaymentEvents = %+v, want %d events", got, len(steps))
	}
	for i, s := range steps {
		want := s.event
		want.Outcome = s.wantStored
		if got[i] != want {
			t.Errorf("event %d = %+v, want %+v", i, got[i], want)
		}
	}
	if none, err := orderpg.PaymentEvents(ctx, db, newID()); err != nil || len(none) != 0 {
		t.Errorf("PaymentEvents of an order without events = %v, %v", none, err)
	}
}

// pending inserts a pending order last changed at updated.
func pending(t *testing.T, db *pgxpool.Pool, updated time.Time) string {
	t.Helper()
	o := newOrder("c1")
	o.CreatedAt, o.UpdatedAt = updated, updated
	insert(t, db, o)
	return o.ID
}

func stuckIDs(ss []orderpg.Stuck) []string {
	ids := make([]string, len(ss))
	for i, s := range ss {
		ids[i] = s.ID
	}
	return ids
}

// TestClaimStuckClaimsDueOrdersOldestFirstForALease: an order pending
// longer than the bound is due; a claim hides it for the lease, so
// another instance does not claim it meanwhile; DeferRepair sets the next
// look and counts failed looks.
func TestClaimStuckClaimsDueOrdersOldestFirstForALease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	const bound, lease = 10 * time.Minute, time.Minute
	now := t0.Add(time.Hour)
	oldest := pending(t, db, now.Add(-40*time.Minute))
	older := pending(t, db, now.Add(-30*time.Minute))
	old := pending(t, db, now.Add(-20*time.Minute))
	pending(t, db, now.Add(-5*time.Minute)) // within the bound: not due
	paid := newOrder("c1")
	paid.Status, paid.UpdatedAt = order.Paid, now.Add(-time.Hour)
	insert(t, db, paid) // not pending: never stuck

	claimed, err := orderpg.ClaimStuck(ctx, db, now, bound, lease, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := stuckIDs(claimed); !slices.Equal(got, []string{oldest, older}) {
		t.Fatalf("first claim = %v, want the two oldest %v", got, []string{oldest, older})
	}
	if c := claimed[0]; c.Attempts != 0 || !c.PendingSince.Equal(now.Add(-40*time.Minute)) {
		t.Errorf("claimed %+v: want 0 attempts, pending since its last change", c)
	}
	next, err := orderpg.ClaimStuck(ctx, db, now, bound, lease, 10)
	if err != nil || !slices.Equal(stuckIDs(next), []string{old}) {
		t.Fatalf("claim within the lease = %v, %v; want only %s", stuckIDs(next), err, old)
	}

	if err := orderpg.DeferRepair(ctx, db, oldest, now.Add(5*time.Minute), true); err != nil {
		t.Fatal(err)
	}
	later, err := orderpg.ClaimStuck(ctx, db, now.Add(2*time.Minute), bound, lease, 10) // the lease ended, the deferral did not
	if err != nil || !slices.Equal(stuckIDs(later), []string{older, old}) {
		t.Fatalf("claim after the lease = %v, %v; want %v", stuckIDs(later), err, []string{older, old})
	}
	deferred, err := orderpg.ClaimStuck(ctx, db, now.Add(5*time.Minute), bound, lease, 1)
	if err != nil || len(deferred) != 1 || deferred[0].ID != oldest || deferred[0].Attempts != 1 {
		t.Fatalf("claim at the deferred look = %+v, %v; want %s with 1 attempt", deferred, err, oldest)
	}
}

func TestClaimStuckNeverHandsOneOrderToTwoInstances(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	now := t0.Add(time.Hour)
	id := pending(t, db, t0)
	first, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Rollback(ctx) }()
	if got, err := orderpg.ClaimStuck(ctx, first, now, time.Minute, time.Minute, 10); err != nil || len(got) != 1 {
		t.Fatalf("first claim = %v, %v", got, err)
	}
	// The first claim is not committed yet: the row is locked, skipped
	// (not waited for).
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if got, err := orderpg.ClaimStuck(wait, db, now, time.Minute, time.Minute, 10); err != nil || len(got) != 0 {
		t.Fatalf("a concurrent claim = %v, %v; want nothing (%s is being claimed)", stuckIDs(got), err, id)
	}
}

func TestCountStuckCountsOrdersPendingPastTheBound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	now := t0.Add(time.Hour)
	if n, oldest, err := orderpg.CountStuck(ctx, db, now, 10*time.Minute); err != nil || n != 0 || oldest != 0 {
		t.Fatalf("CountStuck of no orders = %d, %s, %v", n, oldest, err)
	}
	pending(t, db, now.Add(-30*time.Minute))
	pending(t, db, now.Add(-15*time.Minute))
	pending(t, db, now.Add(-5*time.Minute))
	n, oldest, err := orderpg.CountStuck(ctx, db, now, 10*time.Minute)
	if err != nil || n != 2 || oldest != 30*time.Minute {
		t.Errorf("CountStuck = %d, %s, %v; want 2, 30m0s", n, oldest, err)
	}
}
