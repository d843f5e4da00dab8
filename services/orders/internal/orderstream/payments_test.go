package orderstream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/orders/internal/order"
	"github.com/shopfloor/shopfloor/services/orders/internal/orderpg"
	"github.com/shopfloor/shopfloor/services/orders/internal/orderstream"
	"github.com/shopfloor/shopfloor/services/orders/internal/ordersvc"
	"github.com/shopfloor/shopfloor/services/orders/migrations"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

type bundle struct {
	db  *testinfra.Database
	svc *ordersvc.Service
	h   *orderstream.Payments
}

func setup(t *testing.T) *bundle {
	t.Helper()
	db := testinfra.Postgres(t, migrations.FS)
	svc, err := ordersvc.New(db.Pool, nil, outbox.New(ordersapi.Stream), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{db: db, svc: svc, h: &orderstream.Payments{Pool: db.Pool, Applier: svc, Log: slog.New(slog.DiscardHandler)}}
}

// newOrder writes a pending order (as Place would, without catalog and
// without its order.placed event), then moves it to status (paid or
// failed by payment payID+"-"+order id).
func (b *bundle) newOrder(t *testing.T, status order.Status, payID string) string {
	t.Helper()
	ctx := context.Background()
	id := uuid.Must(uuid.NewV7()).String()
	now := time.Now().UTC().Truncate(time.Microsecond)
	o := order.Order{ID: id, CustomerID: "c1", CustomerEmail: "ada@example.com", Status: order.PendingPayment, Version: 1,
		Currency: "EUR", TotalMinor: 1000, CreatedAt: now, UpdatedAt: now,
		Lines:    []order.Line{{ProductID: uuid.NewString(), SKU: "SKU-1", Name: "n", Quantity: 1, UnitPriceMinor: 1000, CatalogVersion: 1}},
		Shipping: ordersapi.Address{Name: "A", Line1: "L", City: "C", PostalCode: "P", Country: "DE"}}
	if err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error { return orderpg.Insert(ctx, tx, o) }); err != nil {
		t.Fatal(err)
	}
	switch status {
	case order.Paid, order.PaymentFailed:
		typ := paymentsapi.EventPaymentSucceeded
		if status == order.PaymentFailed {
			typ = paymentsapi.EventPaymentFailed
		}
		if err := b.h.Handle(ctx, delivery(t, typ, id, payID+"-"+id)); err != nil {
			t.Fatal(err)
		}
	case order.Cancelled:
		if err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
			_, err := b.svc.Cancel(ctx, tx, "", id, 0, "test")
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

func envelope(t *testing.T, typ, orderID, paymentID string) events.Envelope {
	t.Helper()
	ev, err := events.New(paymentsapi.Source, typ, orderID, 1, 1, paymentsapi.PaymentResult{
		PaymentID: paymentID, OrderID: orderID, AmountMinor: 1000, Currency: "EUR", Reason: "card_declined"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func deliveryOf(t *testing.T, ev events.Envelope) stream.Delivery {
	t.Helper()
	b, err := events.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return stream.Delivery{ID: ev.ID, Key: ev.Subject, Payload: b, NumDelivered: 1}
}

func delivery(t *testing.T, typ, orderID, paymentID string) stream.Delivery {
	t.Helper()
	return deliveryOf(t, envelope(t, typ, orderID, paymentID))
}

// state reads the order's status and version and the types of its events
// in commit order.
func (b *bundle) state(t *testing.T, id string) (order.Status, int64, []string) {
	t.Helper()
	ctx := context.Background()
	o, err := orderpg.Get(ctx, b.db.Pool, id, false)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := b.db.Pool.Query(ctx, `SELECT event_type FROM outbox WHERE key = $1 ORDER BY id`, id)
	if err != nil {
		t.Fatal(err)
	}
	typs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return o.Status, o.Version, typs
}

// TestPaymentEventTable applies each payment event to an order in each
// state and checks the resulting state, version, events and recorded
// outcome.
func TestPaymentEventTable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const (
		succ = paymentsapi.EventPaymentSucceeded
		fail = paymentsapi.EventPaymentFailed
	)
	cases := []struct {
		from       order.Status
		typ, payID string
		want       order.Status
		outcome    string
		newEvents  string
	}{
		{order.PendingPayment, succ, "p1", order.Paid, orderpg.OutcomeApplied, "order.paid"},
		{order.PendingPayment, fail, "p1", order.PaymentFailed, orderpg.OutcomeApplied, "order.payment_failed"},
		// The payment that paid the order, again (a new event id): nothing.
		{order.Paid, succ, "p1", order.Paid, orderpg.OutcomeIgnored, ""},
		// Another payment for a paid order: it is refunded.
		{order.Paid, succ, "p2", order.Paid, orderpg.OutcomeRefundRequired, "order.refund_required"},
		// A failure after success (out of order): recorded, not applied.
		{order.Paid, fail, "p1", order.Paid, orderpg.OutcomeIgnored, ""},
		{order.PaymentFailed, fail, "p1", order.PaymentFailed, orderpg.OutcomeIgnored, ""},
		// payment_failed → paid is not a transition: refund.
		{order.PaymentFailed, succ, "p2", order.PaymentFailed, orderpg.OutcomeRefundRequired, "order.refund_required"},
		// Cancelled while the payment was in flight: stays cancelled, refund.
		{order.Cancelled, succ, "p1", order.Cancelled, orderpg.OutcomeRefundRequired, "order.refund_required"},
		{order.Cancelled, fail, "p1", order.Cancelled, orderpg.OutcomeIgnored, ""},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s+%s(%s)", tc.from, tc.typ, tc.payID), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			// Payment ids are unique across orders, as payments makes them.
			id := b.newOrder(t, tc.from, "p1")
			_, v0, before := b.state(t, id)
			d := delivery(t, tc.typ, id, tc.payID+"-"+id)
			if err := b.h.Handle(ctx, d); err != nil {
				t.Fatal(err)
			}
			status, v1, after := b.state(t, id)
			if status != tc.want {
				t.Fatalf("status %s, want %s", status, tc.want)
			}
			if changed := status != tc.from; changed != (v1 == v0+1) || !changed && v1 != v0 {
				t.Fatalf("version %d → %d for %s → %s", v0, v1, tc.from, status)
			}
			if got := strings.Join(after[len(before):], ","); got != tc.newEvents {
				t.Fatalf("new events %q, want %q", got, tc.newEvents)
			}
			evs, err := orderpg.PaymentEvents(ctx, b.db.Pool, id)
			if err != nil {
				t.Fatal(err)
			}
			last := evs[len(evs)-1]
			if last.EventID != d.ID || last.Outcome != tc.outcome || last.OrderStatus != status || last.OrderVersion != v1 {
				t.Fatalf("recorded %+v, want outcome %s", last, tc.outcome)
			}
			// A redelivery of the same event changes nothing.
			if err := b.h.Handle(ctx, d); err != nil {
				t.Fatal(err)
			}
			if s2, v2, again := b.state(t, id); s2 != status || v2 != v1 || len(again) != len(after) {
				t.Fatalf("redelivery changed the order: %s v%d %v", s2, v2, again)
			}
		})
	}
}

// TestRefundOncePerPayment: two different events reporting the same
// payment's success for a cancelled order ask for one refund.
func TestRefundOncePerPayment(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.newOrder(t, order.Cancelled, "")
	for range 2 {
		if err := b.h.Handle(context.Background(), delivery(t, paymentsapi.EventPaymentSucceeded, id, "p1-"+id)); err != nil {
			t.Fatal(err)
		}
	}
	_, _, evs := b.state(t, id)
	if strings.Join(evs, ",") != "order.cancelled,order.refund_required" {
		t.Fatalf("events %v", evs)
	}
	var payload []byte
	if err := b.db.Pool.QueryRow(context.Background(), `SELECT payload FROM outbox WHERE key = $1 AND event_type = 'order.refund_required'`, id).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	ev, err := events.Unmarshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	var rr ordersapi.RefundRequired
	if err := ev.DecodeData(&rr); err != nil || rr.PaymentID != "p1-"+id || rr.AmountMinor != 1000 || rr.Status != "cancelled" || ev.CausationID == "" {
		t.Fatalf("refund_required: %+v %+v %v", ev, rr, err)
	}
}

// TestCancelRacesPayment runs a cancel and a payment success for the same
// order at once, many times. Whichever wins, the invariant holds: the
// order is paid (and the cancel was refused) or cancelled with exactly one
// refund_required for the payment; never both, never neither.
func TestCancelRacesPayment(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	wins := map[order.Status]int{}
	for range 20 {
		id := b.newOrder(t, order.PendingPayment, "")
		var cancelErr, payErr error
		var wg sync.WaitGroup
		wg.Go(func() {
			cancelErr = pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
				_, err := b.svc.Cancel(ctx, tx, "", id, 0, "race")
				return err
			})
		})
		wg.Go(func() { payErr = b.h.Handle(ctx, delivery(t, paymentsapi.EventPaymentSucceeded, id, "p1-"+id)) })
		wg.Wait()
		if payErr != nil {
			t.Fatal(payErr)
		}
		status, _, evs := b.state(t, id)
		wins[status]++
		joined := strings.Join(evs, ",")
		var te *order.TransitionError
		switch status {
		case order.Paid:
			if !errors.As(cancelErr, &te) || joined != "order.paid" {
				t.Fatalf("paid: cancel err %v, events %s", cancelErr, joined)
			}
		case order.Cancelled:
			if cancelErr != nil || joined != "order.cancelled,order.refund_required" {
				t.Fatalf("cancelled: cancel err %v, events %s", cancelErr, joined)
			}
		default:
			t.Fatalf("status %s after the race", status)
		}
	}
	t.Logf("outcomes over 20 races: %v", wins)
}

// TestUnappliableEventsAreDeadLetteredAndOtherTypesIgnored: events that can never be applied go to the DLQ
// (stream.Permanent); events of other types are acknowledged untouched.
func TestUnappliableEventsAreDeadLetteredAndOtherTypesIgnored(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	unknown := delivery(t, paymentsapi.EventPaymentSucceeded, uuid.Must(uuid.NewV7()).String(), "p1")
	notUUID := delivery(t, paymentsapi.EventPaymentSucceeded, "order-1", "p1")
	noPayment := delivery(t, paymentsapi.EventPaymentSucceeded, uuid.NewString(), "")
	// A payment of a pending order, as schemaversion 2, which this build
	// does not know: refused, never applied as if it were v1.
	v2 := envelope(t, paymentsapi.EventPaymentSucceeded, b.newOrder(t, order.PendingPayment, ""), "p2")
	v2.SchemaVersion = 2
	for name, d := range map[string]stream.Delivery{
		"unreadable":    {ID: "x", Payload: []byte("{")},
		"unknown order": unknown,
		"not a uuid":    notUUID,
		"no payment id": noPayment,
		"schema v2":     deliveryOf(t, v2),
	} {
		if err := b.h.Handle(ctx, d); !stream.IsPermanent(err) {
			t.Errorf("%s: err = %v, want permanent", name, err)
		}
	}
	if err := b.h.Handle(ctx, delivery(t, paymentsapi.EventPaymentRefunded, uuid.NewString(), "p1")); err != nil {
		t.Errorf("payment.refunded: %v", err)
	}
	var n int
	if err := b.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM inbox) + (SELECT count(*) FROM order_payment_events) + (SELECT count(*) FROM outbox)`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("poison left %d rows (%v)", n, err)
	}
}

// TestBatchAppliesInOrderInOneTransaction: a batch (HandleBatch, as the
// service's batch group calls it) with the outcomes of several orders, an
// event twice, a success and then a late failure of the same order: each
// applies once, in stream order (the later failure of a paid order changes
// nothing), in one transaction; a batch holding poison writes nothing.
func TestBatchAppliesInOrderInOneTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	o1, o2, o3 := b.newOrder(t, order.PendingPayment, ""), b.newOrder(t, order.PendingPayment, ""), b.newOrder(t, order.PendingPayment, "")

	poisoned := []stream.Delivery{delivery(t, paymentsapi.EventPaymentSucceeded, o3, "p3"), {ID: "x", Payload: []byte("nope")}}
	if err := b.h.HandleBatch(ctx, poisoned); !stream.IsPermanent(err) {
		t.Fatalf("batch with poison: %v, want permanent", err)
	}
	if st, _, _ := b.state(t, o3); st != order.PendingPayment {
		t.Fatalf("a failed batch moved order 3 to %s", st)
	}

	paid1 := delivery(t, paymentsapi.EventPaymentSucceeded, o1, "p1")
	batch := []stream.Delivery{paid1, delivery(t, paymentsapi.EventPaymentFailed, o2, "p2"), paid1,
		delivery(t, paymentsapi.EventPaymentFailed, o1, "p1b"), delivery(t, paymentsapi.EventPaymentSucceeded, o3, "p3")}
	if err := b.h.HandleBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]order.Status{o1: order.Paid, o2: order.PaymentFailed, o3: order.Paid} {
		if st, _, typs := b.state(t, id); st != want {
			t.Errorf("order %s: %s (events %v), want %s", id, st, typs, want)
		}
	}
	var claims, txs int
	if err := b.db.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT xmin::text) FROM inbox WHERE group_name = $1`,
		orderstream.Group).Scan(&claims, &txs); err != nil {
		t.Fatal(err)
	}
	if claims != 4 || txs != 1 {
		t.Fatalf("%d claims in %d transactions, want 4 in 1", claims, txs)
	}
}
