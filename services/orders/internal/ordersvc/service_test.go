package ordersvc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/internal/order"
	"github.com/shopfloor/shopfloor/services/orders/internal/ordersvc"
	"github.com/shopfloor/shopfloor/services/orders/migrations"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// noPricer: these tests hand Place its priced lines (pricing is
// orderhttp's step before the transaction).
type noPricer struct{}

func (noPricer) Batch(context.Context, catalogapi.BatchQuery) (catalogapi.ProductBatch, error) {
	return catalogapi.ProductBatch{}, errors.New("not used")
}

func newService(t *testing.T) *ordersvc.Service {
	t.Helper()
	db := testinfra.Postgres(t, migrations.FS)
	svc, err := ordersvc.New(db.Pool, noPricer{}, outbox.New(ordersapi.Stream), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// checkout is a valid order of one line at 1000 minor units for customer.
func checkout(customer, currency string) (ordersapi.CreateOrder, []order.Line) {
	in := ordersapi.CreateOrder{CustomerID: customer, CustomerEmail: customer + "@example.com", Currency: currency,
		Items:    []ordersapi.LineInput{{SKU: "LAMP-OAK-01", Quantity: 2}},
		Shipping: ordersapi.Address{Name: "Ada", Line1: "1 Main St", City: "Berlin", PostalCode: "10115", Country: "DE"}}
	lines := []order.Line{{ProductID: uuid.NewString(), SKU: "LAMP-OAK-01", Name: "Oak lamp", Quantity: 2, UnitPriceMinor: 500, CatalogVersion: 3}}
	return in, lines
}

func place(t *testing.T, svc *ordersvc.Service, customer string) order.Order {
	t.Helper()
	in, lines := checkout(customer, "EUR")
	var o order.Order
	if err := pgdb.InTx(context.Background(), svc.Pool(), func(tx pgx.Tx) (err error) {
		o, err = svc.Place(context.Background(), tx, in, lines)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return o
}

// eventTypes are the types of order id's outbox rows, oldest first.
func eventTypes(t *testing.T, svc *ordersvc.Service, id string) []string {
	t.Helper()
	recs, err := svc.Events(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Type)
	}
	return out
}

// TestPlaceWritesTheOrderAndItsEventTogether: the order and its
// order.placed commit in the caller's transaction, or neither does.
func TestPlaceWritesTheOrderAndItsEventTogether(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	in, lines := checkout("ada", "EUR")
	var rolledBack order.Order
	errRollback := errors.New("the caller's transaction fails after Place")
	err := pgdb.InTx(ctx, svc.Pool(), func(tx pgx.Tx) (err error) {
		if rolledBack, err = svc.Place(ctx, tx, in, lines); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("InTx: %v", err)
	}
	if _, err := svc.Get(ctx, rolledBack.ID); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("rolled-back order: %v, want ErrNotFound", err)
	}
	if got := eventTypes(t, svc, rolledBack.ID); len(got) != 0 {
		t.Errorf("rolled-back order left events %v", got)
	}

	o := place(t, svc, "ada")
	got, err := svc.Get(ctx, o.ID)
	if err != nil || got.Status != order.PendingPayment || got.Version != 1 || got.TotalMinor != 1000 || len(got.Lines) != 1 {
		t.Fatalf("placed order: %+v, %v; want pending_payment v1, total 1000, one line", got, err)
	}
	if types := eventTypes(t, svc, o.ID); len(types) != 1 || types[0] != ordersapi.EventOrderPlaced {
		t.Errorf("events of the placed order: %v, want [order.placed]", types)
	}
}

// TestPlaceRefusesWhatPaymentsCannotCharge: a currency payments does not
// take is refused before anything is written.
func TestPlaceRefusesWhatPaymentsCannotCharge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	in, lines := checkout("ada", "JPY")
	err := pgdb.InTx(ctx, svc.Pool(), func(tx pgx.Tx) error {
		_, err := svc.Place(ctx, tx, in, lines)
		return err
	})
	var limit *order.PaymentLimitError
	if !errors.As(err, &limit) {
		t.Fatalf("Place in JPY: %v, want a *order.PaymentLimitError", err)
	}
	if orders, _, err := svc.List(ctx, "ada", "", 10); err != nil || len(orders) != 0 {
		t.Errorf("orders after the refusal: %d (%v), want none", len(orders), err)
	}
}

// TestCancelChecksOwnerVersionAndState: only the owner (or the operator,
// owner "") cancels, an If-Match version must match, a cancel writes
// order.cancelled, and a cancelled order cannot be cancelled again.
func TestCancelChecksOwnerVersionAndState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	o := place(t, svc, "ada")
	cancel := func(owner string, ifVersion int64) (order.Order, error) {
		var got order.Order
		err := pgdb.InTx(ctx, svc.Pool(), func(tx pgx.Tx) (err error) {
			got, err = svc.Cancel(ctx, tx, owner, o.ID, ifVersion, "changed my mind")
			return err
		})
		return got, err
	}
	if _, err := cancel("grace", 0); !errors.Is(err, order.ErrNotFound) {
		t.Errorf("cancel by another customer: %v, want ErrNotFound (nothing tells it exists)", err)
	}
	if _, err := cancel("ada", 7); !errors.Is(err, order.ErrVersionMismatch) {
		t.Errorf("cancel at If-Match 7: %v, want ErrVersionMismatch", err)
	}
	got, err := cancel("ada", 1)
	if err != nil || got.Status != order.Cancelled || got.Version != 2 {
		t.Fatalf("cancel by the owner: %+v, %v; want cancelled v2", got, err)
	}
	var te *order.TransitionError
	if _, err := cancel("", 0); !errors.As(err, &te) {
		t.Errorf("cancel of a cancelled order: %v, want a *order.TransitionError", err)
	}
	if types := eventTypes(t, svc, o.ID); len(types) != 2 || types[1] != ordersapi.EventOrderCancelled {
		t.Errorf("events: %v, want [order.placed order.cancelled]", types)
	}
}

// TestListPagesACustomersOrdersNewestFirst: pages of limit, newest first,
// with a token for the next page until the last.
func TestListPagesACustomersOrdersNewestFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	var ids []string
	for range 3 {
		ids = append(ids, place(t, svc, "ada").ID)
	}
	place(t, svc, "grace")
	first, token, err := svc.List(ctx, "ada", "", 2)
	if err != nil || len(first) != 2 || token == "" || first[0].ID != ids[2] || first[1].ID != ids[1] {
		t.Fatalf("first page: %d orders, token %q, %v; want the two newest of ada's and a token", len(first), token, err)
	}
	rest, token, err := svc.List(ctx, "ada", token, 2)
	if err != nil || len(rest) != 1 || token != "" || rest[0].ID != ids[0] {
		t.Fatalf("last page: %d orders, token %q, %v; want ada's oldest and no token", len(rest), token, err)
	}
}
