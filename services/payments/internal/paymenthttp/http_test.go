package paymenthttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/httpkit/openapitest"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymenthttp"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentstream"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentsvc"
	"github.com/shopfloor/shopfloor/services/payments/migrations"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// owner is the customer whose orders the tests pay; authtest's "other
// customer" is owner+"-other".
const owner = "cust-42"

type bundle struct {
	url    string
	db     *testinfra.Database
	svc    *paymentsvc.Service
	orders *paymentstream.Orders
	iss    *authtest.Issuer
	// callers are Authorization values by authtest caller name (audience
	// "payments", owner cust-42).
	callers map[string]string
}

// setup serves payments' API over its own database (no worker: payments
// stay pending), trusting a fake issuer for audience "payments".
func setup(t *testing.T) *bundle {
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
	store, err := idempotency.New(idempotency.Config{StoredHeaders: paymenthttp.StoredHeaders(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	iss := authtest.NewIssuer(t)
	authz, err := auth.NewVerifier(iss.Config("payments"), "payments", auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mux := httpkit.NewMux(httpkit.NewHealth(), http.NotFoundHandler())
	paymenthttp.Routes(mux, svc, paymenthttp.Config{Authz: authz, Log: log, Idempotency: store, Jobs: jobs})
	// Every request and answer is held to the API's contract.
	srv := httptest.NewServer(openapitest.Load(t, paymentsapi.OpenAPI()).Handler(t, mux))
	t.Cleanup(srv.Close)
	return &bundle{url: srv.URL, db: db, svc: svc, iss: iss, callers: iss.Callers(t, "payments", owner),
		orders: &paymentstream.Orders{Pool: db.Pool, Svc: svc, DefaultPaymentMethod: "tok_visa", Log: log}}
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// placed pays a new order of customer the way orders' checkout does: an
// order.placed on ORDERS, through payments' consumer. It returns the
// order's payment.
func (b *bundle) placed(t *testing.T, customer string) paymentsapi.Payment {
	t.Helper()
	orderID := newID()
	ev, err := events.New(ordersapi.Source, ordersapi.EventOrderPlaced, orderID, 1, 1,
		ordersapi.OrderPlaced{OrderID: orderID, CustomerID: customer, Currency: "EUR", TotalMinor: 4200, Version: 1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	payload, err := events.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.orders.Handle(context.Background(), stream.Delivery{ID: ev.ID, Key: orderID, Payload: payload, NumDelivered: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := b.svc.GetByOrder(context.Background(), orderID, customer)
	if err != nil {
		t.Fatal(err)
	}
	return p.API()
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

// do sends method path with body (nil for none) and the headers h; an
// empty header value is not sent.
func (b *bundle) do(t *testing.T, method, path string, body []byte, h map[string]string) resp {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, b.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range h {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, out}
}

func createBody(orderID string) []byte {
	b, _ := json.Marshal(paymentsapi.CreatePayment{OrderID: orderID, AmountMinor: 1500, Currency: "EUR", PaymentMethod: "tok_mastercard"})
	return b
}

func decode[T any](t *testing.T, r resp) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %d %s: %v", r.status, r.body, err)
	}
	return v
}

// TestCreateKeysAreScopedByPrincipal: an operator's Idempotency-Key
// replays only that operator's request; another operator's same key is a
// request of its own. The payment's own key names the principal, and
// the body cannot name a customer.
func TestCreateKeysAreScopedByPrincipal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	oscar := b.callers[authtest.Operator]
	olga := "Bearer " + b.iss.Token(t, authtest.Claims{Subject: "olga:ops", Audience: []string{"payments"}, Roles: []string{auth.RoleOperator}})
	x, y := newID(), newID()
	r1 := b.do(t, "POST", "/v1/payments", createBody(x), map[string]string{"Authorization": oscar, "Idempotency-Key": "k1"})
	r2 := b.do(t, "POST", "/v1/payments", createBody(x), map[string]string{"Authorization": oscar, "Idempotency-Key": "k1"})
	if r1.status != http.StatusAccepted || r2.status != http.StatusAccepted || !bytes.Equal(r1.body, r2.body) || r2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("create + replay: %d %s / %d %s %s", r1.status, r1.body, r2.status, r2.header, r2.body)
	}
	r3 := b.do(t, "POST", "/v1/payments", createBody(y), map[string]string{"Authorization": olga, "Idempotency-Key": "k1"})
	if r3.status != http.StatusAccepted || r3.header.Get("Idempotent-Replayed") == "true" || decode[paymentsapi.Payment](t, r3).OrderID != y {
		t.Fatalf("olga's k1 = %d %s %s", r3.status, r3.header, r3.body)
	}
	var keys []string
	rows, err := b.db.Pool.Query(context.Background(), `SELECT idempotency_key FROM payments WHERE customer_id IS NULL ORDER BY created_at`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if len(keys) != 2 || keys[0] != "api:sub:oscar:k1" || keys[1] != "api:sub:olga%3Aops:k1" {
		t.Fatalf("payment keys %q", keys)
	}
	body := []byte(`{"order_id":"` + newID() + `","customer_id":"` + owner + `","amount_minor":1500,"currency":"EUR","payment_method":"tok_visa"}`)
	if r := b.do(t, "POST", "/v1/payments", body, map[string]string{"Authorization": oscar, "Idempotency-Key": "k2"}); r.status/100 != 4 || r.status == http.StatusAccepted {
		t.Fatalf("a body naming a customer = %d %s", r.status, r.body)
	}
}

// TestOperatorPaymentBecomesTheCustomersWhenTheOrderIsPlaced: a payment an
// operator made before order.placed arrived is the operator's alone (the
// customer gets 404) until order.placed names the order's customer.
func TestOperatorPaymentBecomesTheCustomersWhenTheOrderIsPlaced(t *testing.T) {
	t.Parallel()
	b := setup(t)
	orderID := newID()
	r := b.do(t, "POST", "/v1/payments", createBody(orderID), map[string]string{"Authorization": b.callers[authtest.Operator], "Idempotency-Key": "k1"})
	if r.status != http.StatusAccepted {
		t.Fatalf("create = %d %s", r.status, r.body)
	}
	path := r.header.Get("Location")
	if got := b.do(t, "GET", path, nil, map[string]string{"Authorization": b.callers[authtest.Owner]}); got.status != http.StatusNotFound {
		t.Fatalf("owner before order.placed = %d %s", got.status, got.body)
	}
	ev, _ := events.New(ordersapi.Source, ordersapi.EventOrderPlaced, orderID, 1, 1,
		ordersapi.OrderPlaced{OrderID: orderID, CustomerID: owner, Currency: "EUR", TotalMinor: 1500, Version: 1}, time.Now())
	payload, _ := events.Marshal(ev)
	if err := b.orders.Handle(context.Background(), stream.Delivery{ID: ev.ID, Key: orderID, Payload: payload, NumDelivered: 1}); err != nil {
		t.Fatal(err)
	}
	for who, want := range map[string]int{authtest.Owner: http.StatusOK, authtest.OtherCustomer: http.StatusNotFound, authtest.Operator: http.StatusOK} {
		if got := b.do(t, "GET", path, nil, map[string]string{"Authorization": b.callers[who]}); got.status != want {
			t.Errorf("%s after order.placed = %d %s, want %d", who, got.status, got.body, want)
		}
	}
}
