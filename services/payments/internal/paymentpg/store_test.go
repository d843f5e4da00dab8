package paymentpg_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/payments/internal/payment"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentpg"
	"github.com/shopfloor/shopfloor/services/payments/migrations"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func newPayment(customer string) payment.Payment {
	id, order := uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()
	now := time.Now().UTC().Truncate(time.Microsecond)
	return payment.Payment{ID: id, OrderID: order, CustomerID: customer, IdempotencyKey: "order:" + order, AmountMinor: 4200,
		Currency: "EUR", PaymentMethod: "tok_visa", Status: paymentsapi.StatusPending, CreatedAt: now, UpdatedAt: now}
}

// TestCustomerRoundTrips: the customer is stored and read back by every
// read; none is stored as NULL and read as ""; FillCustomer sets a missing
// customer once and never changes one.
func TestCustomerRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations.FS)
	insert := func(p payment.Payment) {
		t.Helper()
		if err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
			_, err := paymentpg.Insert(ctx, tx, p)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	fill := func(orderID, customer string) bool {
		t.Helper()
		var filled bool
		if err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) (err error) {
			filled, err = paymentpg.FillCustomer(ctx, tx, orderID, customer)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return filled
	}
	owned, anonymous := newPayment("cust-42"), newPayment("")
	insert(owned)
	insert(anonymous)

	for _, tc := range []struct {
		p    payment.Payment
		want string
	}{{owned, "cust-42"}, {anonymous, ""}} {
		byID, err := paymentpg.Get(ctx, db.Pool, tc.p.ID)
		if err != nil || byID.CustomerID != tc.want || byID.OrderID != tc.p.OrderID {
			t.Errorf("Get %s = %+v %v, want customer %q", tc.p.ID, byID, err, tc.want)
		}
		byOrder, err := paymentpg.GetByOrder(ctx, db.Pool, tc.p.OrderID)
		if err != nil || byOrder.CustomerID != tc.want {
			t.Errorf("GetByOrder %s = %+v %v, want customer %q", tc.p.OrderID, byOrder, err, tc.want)
		}
	}
	var nulls int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM payments WHERE customer_id IS NULL`).Scan(&nulls); err != nil || nulls != 1 {
		t.Fatalf("%d payments without a customer (%v), want 1", nulls, err)
	}

	// A second attempt for the order returns the stored one, customer and all.
	err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
		again := newPayment("cust-7")
		again.OrderID = owned.OrderID
		existing, err := paymentpg.Insert(ctx, tx, again)
		if existing.ID != owned.ID || existing.CustomerID != "cust-42" {
			t.Errorf("existing = %+v", existing)
		}
		return err
	})
	if !errors.Is(err, payment.ErrExists) {
		t.Fatalf("second attempt: %v", err)
	}

	if !fill(anonymous.OrderID, "cust-7") || fill(anonymous.OrderID, "cust-8") || fill(owned.OrderID, "cust-8") ||
		fill(uuid.Must(uuid.NewV7()).String(), "cust-9") {
		t.Fatal("FillCustomer must fill a missing customer once and nothing else")
	}
	for id, want := range map[string]string{anonymous.ID: "cust-7", owned.ID: "cust-42"} {
		if p, err := paymentpg.Get(ctx, db.Pool, id); err != nil || p.CustomerID != want {
			t.Errorf("after fill: %s = %q %v, want %q", id, p.CustomerID, err, want)
		}
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE payments SET customer_id = '' WHERE id = $1`, owned.ID); err == nil {
		t.Error("an empty customer id was stored; want the CHECK to refuse it")
	}
}
