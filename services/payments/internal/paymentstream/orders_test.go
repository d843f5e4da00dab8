package paymentstream_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentstream"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentsvc"
	"github.com/shopfloor/shopfloor/services/payments/migrations"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func delivery(t *testing.T, typ, orderID string, data any) stream.Delivery {
	t.Helper()
	return deliveryAt(t, ordersapi.SchemaVersion, typ, orderID, data)
}

// deliveryAt is delivery of an event of the given schemaversion.
func deliveryAt(t *testing.T, schemaVersion int, typ, orderID string, data any) stream.Delivery {
	t.Helper()
	ev, err := events.New(ordersapi.Source, typ, orderID, schemaVersion, 1, data, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := events.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return stream.Delivery{ID: ev.ID, Key: orderID, Payload: b, NumDelivered: 1}
}

// setup: payments' database, the service and the handler.
func setup(t *testing.T) (*testinfra.Database, *paymentsvc.Service, *paymentstream.Orders) {
	t.Helper()
	db := testinfra.Postgres(t, migrations.FS)
	jobs, err := jobqueue.New(db.Pool, jobqueue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jobs.Close)
	log := slog.New(slog.DiscardHandler)
	svc, err := paymentsvc.New(db.Pool, jobs, outbox.New(paymentsapi.Stream), nil, paymentsvc.Config{}, log, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.CreateQueues(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db, svc, &paymentstream.Orders{Pool: db.Pool, Svc: svc, DefaultPaymentMethod: "tok_visa", Log: log}
}

// TestOrderPlacedIsReplaySafe: the same event twice, another event for the
// same order, and a replay of all of them create one attempt and one
// charge job; the order's payment method token is used, the default when
// it has none; the order's customer is recorded and never changed by a
// later event; poison is dead-lettered.
func TestOrderPlacedIsReplaySafe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, svc, h := setup(t)

	a, b := uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()
	placedA := delivery(t, ordersapi.EventOrderPlaced, a, ordersapi.OrderPlaced{OrderID: a, CustomerID: "cust-a", Currency: "EUR", TotalMinor: 500, PaymentMethod: "tok_mastercard"})
	againA := delivery(t, ordersapi.EventOrderPlaced, a, ordersapi.OrderPlaced{OrderID: a, CustomerID: "cust-z", Currency: "EUR", TotalMinor: 500})
	placedB := delivery(t, ordersapi.EventOrderPlaced, b, ordersapi.OrderPlaced{OrderID: b, Currency: "USD", TotalMinor: 700})
	for range 2 { // the second round is a replay of the stream
		for _, d := range []stream.Delivery{placedA, placedA, againA, placedB} {
			if err := h.Handle(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	var payments, charges int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM payments), (SELECT count(*) FROM jobqueue_messages WHERE queue = 'charges')`).
		Scan(&payments, &charges); err != nil || payments != 2 || charges != 2 {
		t.Fatalf("%d payments, %d charge jobs (%v); want 2 and 2", payments, charges, err)
	}
	pa, err := svc.GetByOrder(ctx, a, "")
	if err != nil || pa.PaymentMethod != "tok_mastercard" || pa.AmountMinor != 500 || pa.CustomerID != "cust-a" {
		t.Fatalf("order a: %+v %v", pa, err)
	}
	if pb, _ := svc.GetByOrder(ctx, b, ""); pb.PaymentMethod != "tok_visa" || pb.Currency != "USD" || pb.CustomerID != "" {
		t.Fatalf("order b (default method): %+v", pb)
	}

	for name, d := range map[string]stream.Delivery{
		"unreadable":         {ID: "x", Payload: []byte("nope")},
		"zero amount":        delivery(t, ordersapi.EventOrderPlaced, a, ordersapi.OrderPlaced{OrderID: uuid.NewString(), Currency: "EUR"}),
		"unknown currency":   delivery(t, ordersapi.EventOrderPlaced, a, ordersapi.OrderPlaced{OrderID: uuid.NewString(), Currency: "XXX", TotalMinor: 1}),
		"refund, no such":    delivery(t, ordersapi.EventOrderRefundRequired, a, ordersapi.RefundRequired{OrderID: a, PaymentID: uuid.NewString()}),
		"refund, no payment": delivery(t, ordersapi.EventOrderRefundRequired, a, ordersapi.RefundRequired{OrderID: a}),
		// A chargeable v1 payload as schemaversion 2, which this build does
		// not know: refused, never charged as if it were v1.
		"schema v2": deliveryAt(t, 2, ordersapi.EventOrderPlaced, a, ordersapi.OrderPlaced{OrderID: uuid.NewString(), Currency: "EUR", TotalMinor: 100}),
	} {
		if err := h.Handle(ctx, d); !stream.IsPermanent(err) {
			t.Errorf("%s: err = %v, want permanent", name, err)
		}
	}
	if err := h.Handle(ctx, delivery(t, ordersapi.EventOrderPaid, a, ordersapi.OrderStatusChanged{OrderID: a})); err != nil {
		t.Errorf("order.paid is not payments' business: %v", err)
	}
}

// TestBatchCommitsOnceOrNotAtAll: a batch (HandleBatch, as the service's
// batch group calls it) creates the attempts and charge jobs of all its
// orders in one transaction, a duplicate inside it once; a batch that
// holds poison fails whole and writes nothing (the group then hands its
// events over one at a time).
func TestBatchCommitsOnceOrNotAtAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _, h := setup(t)
	placed := func() stream.Delivery {
		o := uuid.Must(uuid.NewV7()).String()
		return delivery(t, ordersapi.EventOrderPlaced, o, ordersapi.OrderPlaced{OrderID: o, Currency: "EUR", TotalMinor: 100})
	}
	count := func() (payments, charges int) {
		t.Helper()
		if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM payments), (SELECT count(*) FROM jobqueue_messages WHERE queue = 'charges')`).
			Scan(&payments, &charges); err != nil {
			t.Fatal(err)
		}
		return payments, charges
	}

	poisoned := []stream.Delivery{placed(), placed(), {ID: "x", Payload: []byte("nope")}, placed()}
	if err := h.HandleBatch(ctx, poisoned); !stream.IsPermanent(err) {
		t.Fatalf("batch with poison: %v, want permanent", err)
	}
	if p, c := count(); p != 0 || c != 0 {
		t.Fatalf("a failed batch left %d payments and %d charge jobs", p, c)
	}

	d1, d2, d3 := placed(), placed(), placed()
	paid := delivery(t, ordersapi.EventOrderPaid, d1.Key, ordersapi.OrderStatusChanged{OrderID: d1.Key})
	if err := h.HandleBatch(ctx, []stream.Delivery{d1, d2, d1, paid, d3}); err != nil {
		t.Fatal(err)
	}
	if p, c := count(); p != 3 || c != 3 {
		t.Fatalf("%d payments and %d charge jobs, want 3 and 3", p, c)
	}
	var claims, txs int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT xmin::text) FROM inbox WHERE group_name = $1`,
		paymentstream.Group).Scan(&claims, &txs); err != nil {
		t.Fatal(err)
	}
	if claims != 3 || txs != 1 {
		t.Fatalf("%d claims in %d transactions, want 3 in 1", claims, txs)
	}
}
