package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/natsauth"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://x", "ROLES": "api,worker,gossip",
		"DEFAULT_PAYMENT_METHOD": "4242424242424242", "MAX_RECEIVES": "0", "RETRY_INITIAL": "0s"}
	err := run(context.Background(), []string{"payments"}, func(k string) string { return env[k] }, &testinfra.Buffer{})
	for _, want := range []string{`ROLES: unknown role "gossip"`, "AUTH_ISSUER: required", "PSP_URL: required by the worker role",
		"DEFAULT_PAYMENT_METHOD: must be a provider token", "MAX_RECEIVES: must be 1..100", "RETRY_INITIAL, RETRY_MAX"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if err := run(context.Background(), []string{"payments", "psp-sim"}, func(k string) string {
		return map[string]string{"PSP_SIM_ERROR_RATE": "2"}[k]
	}, &testinfra.Buffer{}); err == nil || !strings.Contains(err.Error(), "PSP_SIM_ERROR_RATE") {
		t.Errorf("psp-sim with a bad rate: %v", err)
	}
	if err := run(context.Background(), []string{"payments", "dance"}, func(string) string { return "" }, &testinfra.Buffer{}); err == nil ||
		!strings.Contains(err.Error(), "usage") {
		t.Errorf("unknown command: %v", err)
	}
}

// TestPSPSimCommandTakesCharges runs `payments psp-sim` as the sandbox does and charges
// through it.
func TestPSPSimCommandTakesCharges(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"payments", "psp-sim"}, func(k string) string { return map[string]string{"PSP_SIM_ADDR": addr}[k] }, &testinfra.Buffer{})
	}()
	testinfra.Eventually(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return err
		}
		return resp.Body.Close()
	})
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/charges", strings.NewReader(`{"amount_minor":100,"currency":"EUR","payment_method":"tok_visa","reference":"o1"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "k1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("charge through psp-sim = %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("psp-sim: %v", err)
	}
}

// TestPlacedOrdersAreChargedAndRefundsRequiredAreRefunded runs payments' roles (api, worker, relay, consumer) after
// the migrate command, against the provider simulator and a private
// JetStream server, and follows the design's flow: order.placed on ORDERS
// → an attempt and its charge job → a charge → payment.succeeded on
// PAYMENTS keyed by order id; order.refund_required → a refund →
// payment.refunded. The order's customer reads its payment, another
// customer gets 404; an operator creates a payment for another order
// idempotently, and the admin endpoints need the token.
func TestPlacedOrdersAreChargedAndRefundsRequiredAreRefunded(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := testinfra.PostgresRoles(t, nil)
	sim, err := pspsim.New(pspsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	psp := httptest.NewServer(sim.Handler())
	defer psp.Close()
	// The broker with the deployments' permissions: payments connects as
	// payments; orders (its owner) has created ORDERS, which payments only
	// binds to.
	ns := testinfra.NewNATSServer(t, testinfra.NATSServerOptions{Authorization: &natsauth.Shopfloor})
	const partitions = 3
	_, ojs := ns.ConnectAs("orders")
	if err := stream.EnsureStream(ctx, ojs, stream.StreamConfig{Name: ordersapi.Stream, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	iss := authtest.NewIssuer(t)
	operator, c1, c2 := "Bearer "+iss.Operator(t, "payments"), "Bearer "+iss.Customer(t, "c1", "payments"), "Bearer "+iss.Customer(t, "c2", "payments")
	env := map[string]string{"DATABASE_URL": db.URL, "PSP_URL": psp.URL, "AUTH_ISSUER": iss.URL,
		"ORDERS_PARTITIONS": fmt.Sprint(partitions), "PAYMENTS_PARTITIONS": fmt.Sprint(partitions), "LOG_LEVEL": "WARN",
		"RETRY_INITIAL": "10ms", "RETRY_MAX": "100ms"}
	maps.Copy(env, ns.Env("payments"))
	getenv := func(k string) string { return env[k] }
	if err := run(ctx, []string{"payments", "migrate"}, db.AsOwner(getenv), &testinfra.Buffer{}); err != nil {
		t.Fatal(err)
	}
	svc := testinfra.StartService(t, run, "payments", env)
	base, admin := svc.Public, svc.Admin
	testinfra.WaitReady(t, base+"/readyz", 30*time.Second)
	testinfra.CheckListeners(t, base, admin, "/v1/admin/queues")

	_, js := ns.Connect()
	var mu sync.Mutex
	var got []events.Envelope
	var keys []string
	obs, err := stream.NewGroup(js, stream.GroupConfig{Stream: paymentsapi.Stream, Name: "observer", Partitions: partitions},
		func(_ context.Context, d stream.Delivery) error {
			ev, err := events.Unmarshal(d.Payload)
			if err != nil {
				return stream.Permanent(err)
			}
			mu.Lock()
			got, keys = append(got, ev), append(keys, d.Key)
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
	waitFor := func(typ, orderID string) paymentsapi.PaymentResult {
		t.Helper()
		var pr paymentsapi.PaymentResult
		testinfra.Eventually(t, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			for i, ev := range got {
				if ev.Type == typ && ev.Subject == orderID && keys[i] == orderID {
					return ev.DecodeData(&pr)
				}
			}
			return fmt.Errorf("no %s for %s yet (%d events)", typ, orderID, len(got))
		})
		return pr
	}

	// order.placed on ORDERS (published twice: a replay creates nothing).
	pub, err := stream.NewPublisher(ojs, ordersapi.Stream, partitions)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(typ, orderID string, data any) {
		t.Helper()
		ev, err := events.New(ordersapi.Source, typ, orderID, 1, 1, data, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := events.Marshal(ev)
		for range 2 {
			if _, err := pub.Publish(ctx, stream.Message{ID: ev.ID, Key: orderID, Payload: b}); err != nil {
				t.Fatal(err)
			}
		}
	}
	orderID := uuid.Must(uuid.NewV7()).String()
	publish(ordersapi.EventOrderPlaced, orderID, ordersapi.OrderPlaced{OrderID: orderID, CustomerID: "c1", CustomerEmail: "a@example.com",
		Currency: "EUR", TotalMinor: 4200, Version: 1})
	paid := waitFor(paymentsapi.EventPaymentSucceeded, orderID)
	if paid.AmountMinor != 4200 || paid.ChargeID == "" || paid.PaymentID == "" {
		t.Fatalf("payment.succeeded: %+v", paid)
	}
	if st := sim.Stats(); st.ChargesCreated != 1 || st.SucceededByReference[orderID] != 1 {
		t.Fatalf("provider: %+v", st)
	}
	var status paymentsapi.Payment
	getJSON(t, base+"/v1/payments?order_id="+orderID, c1, &status)
	if status.ID != paid.PaymentID || status.Status != paymentsapi.StatusSucceeded {
		t.Fatalf("GET by order: %+v", status)
	}
	// c1 placed the order; c2 gets what a missing payment gets, no token 401.
	for authz, want := range map[string]int{c2: http.StatusNotFound, "": http.StatusUnauthorized} {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/payments/"+paid.PaymentID, nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET c1's payment with %.12q = %d, want %d", authz, resp.StatusCode, want)
		}
	}

	// The order was cancelled while paying: refund.
	publish(ordersapi.EventOrderRefundRequired, orderID, ordersapi.RefundRequired{OrderID: orderID, PaymentID: paid.PaymentID,
		AmountMinor: 4200, Currency: "EUR", Status: "cancelled", Version: 2})
	waitFor(paymentsapi.EventPaymentRefunded, orderID)
	getJSON(t, base+"/v1/payments/"+paid.PaymentID, operator, &status)
	if status.Status != paymentsapi.StatusRefunded || status.RefundedMinor != 4200 || sim.Stats().RefundsCreated != 1 {
		t.Fatalf("after refund: %+v", status)
	}

	// The API (an operator's tool): 202 with a status URL, replay, 409 for
	// the order's second payment, 422 for card data, 403 for a customer.
	other := uuid.Must(uuid.NewV7()).String()
	body := `{"order_id":"` + other + `","amount_minor":1500,"currency":"EUR","payment_method":"tok_mastercard"}`
	if r := post(t, base+"/v1/payments", c1, body, "pay-1"); r.status != http.StatusForbidden {
		t.Fatalf("a customer's POST = %d %s", r.status, r.body)
	}
	r1 := post(t, base+"/v1/payments", operator, body, "pay-1")
	r2 := post(t, base+"/v1/payments", operator, body, "pay-1")
	if r1.status != http.StatusAccepted || r2.status != http.StatusAccepted || !bytes.Equal(r1.body, r2.body) || r2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("create + replay: %d %s / %d %s", r1.status, r1.body, r2.status, r2.header)
	}
	if r := post(t, base+"/v1/payments", operator, body, "pay-2"); r.status != http.StatusConflict {
		t.Fatalf("second payment for the order = %d %s", r.status, r.body)
	}
	if r := post(t, base+"/v1/payments", operator, strings.Replace(body, "tok_mastercard", "4242424242424242", 1), "pay-3"); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(string(r.body), `"pointer":"#/payment_method"`) {
		t.Fatalf("card data = %d %s", r.status, r.body)
	}
	waitFor(paymentsapi.EventPaymentSucceeded, other)
	getJSON(t, base+r1.header.Get("Location"), operator, &status)
	if status.Status != paymentsapi.StatusSucceeded {
		t.Fatalf("status URL: %+v", status)
	}

	// Admin: the queues, on the admin listener, for operators only.
	resp, err := http.Get(admin + "/v1/admin/queues")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("admin without token = %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, admin+"/v1/admin/queues", nil)
	req.Header.Set("Authorization", c1)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.Body.Close() != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("admin as a customer: %v %v", resp, err)
	}
	req.Header.Set("Authorization", operator)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"queue":"charges"`) {
		t.Fatalf("admin queues = %d %s", resp.StatusCode, b)
	}
	resp, err = http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"jobqueue_", "outbox_backlog", "idempotency_requests_total"} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// post sends body to url with the Authorization value authz and the
// Idempotency-Key key.
func post(t *testing.T, url, authz, body, key string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", authz)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}

// getJSON reads url with the Authorization value authz into v.
func getJSON(t *testing.T, url, authz string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", authz)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s = %d %s", url, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestHelpListsTheCommandsAndRolesInTheSharedShape(t *testing.T) {
	t.Parallel()
	testinfra.CheckHelp(t, run, "payments")
}
