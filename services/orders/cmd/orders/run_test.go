package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/natsauth"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi/catalogtest"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://x", "ROLES": "api,gossip", "ORDERS_PARTITIONS": "0",
		"MAX_IN_FLIGHT": "0", "IDEMPOTENCY_RETENTION": "1m"}
	err := run(context.Background(), []string{"orders"}, func(k string) string { return env[k] }, &testinfra.Buffer{})
	for _, want := range []string{`ROLES: unknown role "gossip"`, "CATALOG_URL: required by the api role", "AUTH_ISSUER: required", "AUTH_CLIENT_SECRET: required",
		"ORDERS_PARTITIONS: must be", "MAX_IN_FLIGHT: must be at least 1", "IDEMPOTENCY_RETENTION: must be at least 1h"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	env = map[string]string{"DATABASE_URL": "postgres://x", "ROLES": "consumer", "NATS_URL": "nats://x", "ORDERS_STUCK_AFTER": "0s"}
	err = run(context.Background(), []string{"orders"}, func(k string) string { return env[k] }, &testinfra.Buffer{})
	for _, want := range []string{"PAYMENTS_URL: required by the consumer role", "AUTH_CLIENT_SECRET: required", "ORDERS_STUCK_AFTER: must be at least 1s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("consumer: error lacks %q:\n%v", want, err)
		}
	}
	env = map[string]string{"DATABASE_URL": "postgres://x", "ROLES": "relay"}
	if err := run(context.Background(), []string{"orders"}, func(k string) string { return env[k] }, &testinfra.Buffer{}); err == nil ||
		!strings.Contains(err.Error(), "NATS_URL: required") {
		t.Errorf("relay without NATS_URL: %v", err)
	}
	if err := run(context.Background(), []string{"orders", "dance"}, func(string) string { return "" }, &testinfra.Buffer{}); err == nil ||
		!strings.Contains(err.Error(), "usage") {
		t.Errorf("unknown command: %v", err)
	}
}

// TestCheckoutPublishesOrderPlacedAndAPaymentMakesTheOrderPaid runs the orders binary's roles (api, relay, consumer) on
// an empty database after the migrate command, with the real catalog and
// a private JetStream server, and follows one order: the checkout's
// order.placed reaches a consumer group on ORDERS with key = order id, in
// the partition stream.Partition gives, at the row's version; a
// payment.succeeded published on PAYMENTS makes the order paid (version 2)
// and order.paid follows on ORDERS.
func TestCheckoutPublishesOrderPlacedAndAPaymentMakesTheOrderPaid(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := testinfra.PostgresRoles(t, nil)
	// orders gets client-credentials tokens from iss; catalog trusts iss.
	iss := authtest.NewIssuer(t)
	iss.AddClient("orders", "orders-test-secret-0123456789")
	cat := catalogtest.StartWith(t, iss)
	mug := cat.Add(t, catalogtest.Product{SKU: "MUG-BLUE", Prices: map[string]int64{"EUR": 1500}})
	// The broker with the deployments' permissions: orders connects as
	// orders; payments (its owner) has created PAYMENTS, which orders
	// only binds to.
	ns := testinfra.NewNATSServer(t, testinfra.NATSServerOptions{Authorization: &natsauth.Shopfloor})
	const partitions = 4
	_, pjs := ns.ConnectAs("payments")
	if err := stream.EnsureStream(ctx, pjs, stream.StreamConfig{Name: paymentsapi.Stream, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": db.URL, "CATALOG_URL": cat.URL,
		"AUTH_ISSUER": iss.URL, "AUTH_CLIENT_ID": "orders", "AUTH_CLIENT_SECRET": "orders-test-secret-0123456789",
		// The stuck-order repair's payments: no order here is pending
		// long enough to be looked up.
		"PAYMENTS_URL":      "http://127.0.0.1:1",
		"ORDERS_PARTITIONS": fmt.Sprint(partitions), "PAYMENTS_PARTITIONS": fmt.Sprint(partitions), "LOG_LEVEL": "WARN"}
	maps.Copy(env, ns.Env("orders"))
	getenv := func(k string) string { return env[k] }
	if err := run(ctx, []string{"orders", "migrate"}, db.AsOwner(getenv), &testinfra.Buffer{}); err != nil {
		t.Fatal(err)
	}

	svc := testinfra.StartService(t, run, "orders", env)
	svc.WaitReady(30 * time.Second)
	base, admin := svc.Public, svc.Admin
	testinfra.CheckListeners(t, base, admin)

	// Observe ORDERS as a downstream group would (as the operator).
	_, js := ns.Connect()
	type seen struct {
		d  stream.Delivery
		ev events.Envelope
	}
	var mu sync.Mutex
	var got []seen
	obs, err := stream.NewGroup(js, stream.GroupConfig{Stream: ordersapi.Stream, Name: "observer", Partitions: partitions},
		func(_ context.Context, d stream.Delivery) error {
			ev, err := events.Unmarshal(d.Payload)
			if err != nil {
				return stream.Permanent(err)
			}
			mu.Lock()
			got = append(got, seen{d, ev})
			mu.Unlock()
			return nil
		}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	obsCtx, stopObs := context.WithCancel(ctx)
	obsDone := make(chan error, 1)
	go func() { obsDone <- obs.Run(obsCtx) }()
	defer func() {
		stopObs()
		if err := <-obsDone; err != nil {
			t.Errorf("observer: %v", err)
		}
	}()
	waitFor := func(typ string) seen {
		t.Helper()
		var s seen
		testinfra.Eventually(t, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			for _, g := range got {
				if g.ev.Type == typ {
					s = g
					return nil
				}
			}
			return fmt.Errorf("no %s yet (have %d events)", typ, len(got))
		})
		return s
	}

	customer := "Bearer " + iss.Customer(t, "cust-e2e", "orders")
	body, _ := json.Marshal(ordersapi.CreateOrder{CustomerID: "cust-e2e", CustomerEmail: "grace@example.com", Currency: "EUR",
		Items:    []ordersapi.LineInput{{ProductID: mug.ID, Quantity: 2}},
		Shipping: ordersapi.Address{Name: "Grace Hopper", Line1: "1 Navy Way", City: "Arlington", PostalCode: "22202", Country: "US"}})
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/orders", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "e2e-1")
	req.Header.Set("Authorization", customer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var o ordersapi.Order
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || o.TotalMinor != 3000 {
		t.Fatalf("POST = %d %+v", resp.StatusCode, o)
	}

	placed := waitFor(ordersapi.EventOrderPlaced)
	if placed.d.Key != o.ID || placed.d.Partition != stream.Partition(o.ID, partitions) || placed.ev.AggregateVersion != o.Version ||
		placed.d.Subject != stream.Subject(ordersapi.Stream, stream.Partition(o.ID, partitions)) {
		t.Fatalf("order.placed delivery: key %s partition %d subject %s version %d; want key %s partition %d version %d",
			placed.d.Key, placed.d.Partition, placed.d.Subject, placed.ev.AggregateVersion, o.ID, stream.Partition(o.ID, partitions), o.Version)
	}

	// payments reports success on PAYMENTS, keyed by order id.
	pub, err := stream.NewPublisher(pjs, paymentsapi.Stream, partitions)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.New(paymentsapi.Source, paymentsapi.EventPaymentSucceeded, o.ID, 1, 1,
		paymentsapi.PaymentResult{PaymentID: "pay-e2e", OrderID: o.ID, AmountMinor: 3000, Currency: "EUR", ChargeID: "ch_1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := events.Marshal(ev)
	for range 2 { // a duplicate publish changes nothing
		if _, err := pub.Publish(ctx, stream.Message{ID: ev.ID, Key: o.ID, Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	paid := waitFor(ordersapi.EventOrderPaid)
	if paid.d.Key != o.ID || paid.ev.AggregateVersion != 2 || paid.ev.CausationID != ev.ID {
		t.Fatalf("order.paid: key %s version %d causation %s", paid.d.Key, paid.ev.AggregateVersion, paid.ev.CausationID)
	}
	req, _ = http.NewRequest(http.MethodGet, base+"/v1/orders/"+o.ID, nil)
	req.Header.Set("Authorization", customer)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var after ordersapi.Order
	_ = json.NewDecoder(resp.Body).Decode(&after)
	resp.Body.Close()
	if after.Status != ordersapi.StatusPaid || after.Version != 2 || after.PaymentID != "pay-e2e" {
		t.Fatalf("after payment: %+v", after)
	}
	// Metrics of the relay, the consumer and the API are exported.
	resp, err = http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"outbox_backlog", "catalog_client_requests_total", "idempotency_requests_total", "http_inflight_requests", "stream_"} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

func TestHelpListsTheCommandsAndRolesInTheSharedShape(t *testing.T) {
	t.Parallel()
	testinfra.CheckHelp(t, run, "orders")
}
