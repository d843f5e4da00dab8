package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/natsauth"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
	"github.com/shopfloor/shopfloor/services/notifications/smtpsink"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://x", "ROLES": "api,consumer,worker,gossip", "ORDERS_PARTITIONS": "0",
		"SMTP_TLS": "none", "SMTP_USERNAME": "mailer", "SMTP_PASSWORD": "hunter2-secret", "SMTP_PORT": "twenty-five",
		"SMTP_FROM": "not an address", "MAX_RECEIVES": "0", "RETRY_INITIAL": "0s", "WORKER_CONCURRENCY": "0",
		"VISIBILITY_TIMEOUT": "soon", "ORDERS_GROUP": "no spaces please"}
	err := run(context.Background(), []string{"notifications"}, func(k string) string { return env[k] }, &testinfra.Buffer{})
	// VISIBILITY_TIMEOUT and SMTP_PORT fail parsing: the cross-field rules
	// wait until every value parses.
	for _, want := range []string{`SMTP_PORT: not a number (got "twenty-five")`, "VISIBILITY_TIMEOUT: not a duration"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	delete(env, "SMTP_PORT")
	delete(env, "VISIBILITY_TIMEOUT")
	err = run(context.Background(), []string{"notifications"}, func(k string) string { return env[k] }, &testinfra.Buffer{})
	for _, want := range []string{`ROLES: unknown role "gossip"`, "AUTH_ISSUER: required", "NATS_URL: required by the consumer role", "ORDERS_PARTITIONS: must be 1..",
		"ORDERS_GROUP: must be", "SMTP_USERNAME: authentication needs SMTP_TLS=starttls or tls", "SMTP_HOST: required by the worker role",
		"SMTP_FROM: required by the worker role", "MAX_RECEIVES: must be 1..100", "RETRY_INITIAL, RETRY_MAX", "WORKER_CONCURRENCY: must be at least 1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if err != nil && (strings.Contains(err.Error(), "hunter2") || len(strings.Split(err.Error(), "\n")) != 12) {
		t.Errorf("want one line per bad value and no secret:\n%v", err)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"notifications", "serve"}, map[string]string{"DATABASE_URL": "postgres://x", "ROLES": "worker", "SMTP_HOST": "h",
			"SMTP_FROM": "a@b.c", "SMTP_TLS": "ssl", "SMTP_CA_FILE": "/nonexistent/ca.pem"}, "SMTP_TLS: must be none, starttls or tls"},
		{[]string{"notifications", "serve"}, map[string]string{"DATABASE_URL": "postgres://x", "ROLES": "worker", "SMTP_HOST": "h",
			"SMTP_FROM": "a@b.c", "SMTP_CA_FILE": "/nonexistent/ca.pem"}, "SMTP_CA_FILE: cannot read"},
		{[]string{"notifications", "smtp-sink"}, map[string]string{"SMTP_SINK_DOWN": "maybe"}, "SMTP_SINK_DOWN"},
		{[]string{"notifications", "dlq", "list"}, map[string]string{}, "NATS_URL: required"},
		{[]string{"notifications", "queue", "stats"}, map[string]string{}, "DATABASE_URL: required"},
		{[]string{"notifications", "dance"}, map[string]string{}, "usage"},
	} {
		err := run(context.Background(), tc.args, func(k string) string { return tc.env[k] }, &testinfra.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want %q", tc.args, err, tc.want)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	return httpGetAs(t, url, "")
}

// httpGetAs sends GET url with the Authorization value authz ("" for none).
func httpGetAs(t *testing.T, url, authz string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sendPlain submits msg from a@example.com to b@example.com without TLS.
func sendPlain(addr, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail("a@example.com", []string{"b@example.com"}, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// TestSMTPSinkCommandShowsSentMailAndGoesDownOnRequest runs `notifications smtp-sink` as the sandbox does:
// mail sent to it shows on its HTTP API, and the down switch works.
func TestSMTPSinkCommandShowsSentMailAndGoesDownOnRequest(t *testing.T) {
	t.Parallel()
	smtpAddr, httpAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"notifications", "smtp-sink"}, func(k string) string {
			return map[string]string{"SMTP_SINK_ADDR": smtpAddr, "SMTP_SINK_HTTP_ADDR": httpAddr, "LOG_LEVEL": "WARN"}[k]
		}, &testinfra.Buffer{})
	}()
	base := "http://" + httpAddr
	testinfra.Eventually(t, 10*time.Second, func() error {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		return resp.Body.Close()
	})
	msg := "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\nMessage-ID: <m1@test>\r\n\r\nhello\r\n"
	if err := sendPlain(smtpAddr, msg); err != nil {
		t.Fatal(err)
	}
	if st, body := httpGet(t, base+"/api/messages?to=b@example.com"); st != http.StatusOK || !strings.Contains(body, `"message_id":"<m1@test>"`) {
		t.Fatalf("messages = %d %s", st, body)
	}
	req, _ := http.NewRequest(http.MethodPut, base+"/api/down", strings.NewReader(`{"down":true}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := sendPlain(smtpAddr, msg); err == nil || !strings.Contains(err.Error(), "421") {
		t.Fatalf("send while down: %v", err)
	}
	if st, body := httpGet(t, base+"/metrics"); st != http.StatusOK || !strings.Contains(body, `smtpsink_rejected_total{reason="down"} 1`) {
		t.Fatalf("metrics = %d", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("smtp-sink: %v", err)
	}
}

// TestOrderEventsBecomeExactlyOneEmailPerOrderAndKind runs notifications' roles (api, consumer, worker) after the
// migrate command, against a private JetStream server, PostgreSQL and a
// real SMTP sink: order events published on ORDERS (key = order id, each
// twice) become exactly one e-mail per order and kind in the sink, and
// GET /v1/notifications?order_id= shows what was sent and when. Poison
// lands in the stream's DLQ (the dlq command lists it); the queue
// command reports the e-mail queue.
func TestOrderEventsBecomeExactlyOneEmailPerOrderAndKind(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := testinfra.PostgresRoles(t, nil)
	// The broker with the deployments' permissions: notifications
	// connects as notifications; orders (its owner) has created ORDERS.
	ns := testinfra.NewNATSServer(t, testinfra.NATSServerOptions{Authorization: &natsauth.Shopfloor})
	const partitions = 3
	_, js := ns.ConnectAs("orders")
	if err := stream.EnsureStream(ctx, js, stream.StreamConfig{Name: ordersapi.Stream, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	sink, err := smtpsink.New(smtpsink.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	_, smtpPort, _ := net.SplitHostPort(sink.Addr())
	iss := authtest.NewIssuer(t)
	operator, xena := "Bearer "+iss.Operator(t, "notifications"), "Bearer "+iss.Customer(t, "c1", "notifications")
	env := map[string]string{"DATABASE_URL": db.URL, "ORDERS_PARTITIONS": strconv.Itoa(partitions), "LOG_LEVEL": "WARN",
		"SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtpPort, "SMTP_TLS": "none", "SMTP_FROM": "shopfloor <shop@example.com>",
		"RETRY_INITIAL": "10ms", "RETRY_MAX": "100ms", "AUTH_ISSUER": iss.URL}
	maps.Copy(env, ns.Env("notifications"))
	getenv := func(k string) string { return env[k] }
	if err := run(ctx, []string{"notifications", "migrate"}, db.AsOwner(getenv), &testinfra.Buffer{}); err != nil {
		t.Fatal(err)
	}
	svc := testinfra.StartService(t, run, "notifications", env)
	base, admin := svc.Public, svc.Admin
	testinfra.Eventually(t, 30*time.Second, func() error {
		if st, body := httpGet(t, base+"/readyz"); st != http.StatusOK {
			return fmt.Errorf("readyz %d %s", st, body)
		}
		return nil
	})
	testinfra.CheckListeners(t, base, admin, "/v1/admin/queues")

	pub, err := stream.NewPublisher(js, ordersapi.Stream, partitions)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(typ, orderID string, version int64, data any) {
		t.Helper()
		ev, err := events.New(ordersapi.Source, typ, orderID, 1, version, data, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := events.Marshal(ev)
		for _, id := range []string{ev.ID, ev.ID + "-republished"} {
			if _, err := pub.Publish(ctx, stream.Message{ID: id, Key: orderID, Payload: b}); err != nil {
				t.Fatal(err)
			}
		}
	}
	x, y := uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()
	publish(ordersapi.EventOrderPlaced, x, 1, ordersapi.OrderPlaced{OrderID: x, CustomerID: "c1", CustomerEmail: "xena@example.com", Currency: "EUR", TotalMinor: 4200, Version: 1})
	publish(ordersapi.EventOrderPaid, x, 2, ordersapi.OrderStatusChanged{OrderID: x, CustomerID: "c1", CustomerEmail: "xena@example.com", Status: ordersapi.StatusPaid, Version: 2, Currency: "EUR", TotalMinor: 4200})
	publish(ordersapi.EventOrderPlaced, y, 1, ordersapi.OrderPlaced{OrderID: y, CustomerEmail: "yuri@example.com", Currency: "GBP", TotalMinor: 1550, Version: 1})
	publish(ordersapi.EventOrderPaymentFailed, y, 2, ordersapi.OrderStatusChanged{OrderID: y, CustomerEmail: "yuri@example.com", Status: ordersapi.StatusPaymentFailed, Version: 2, Currency: "GBP", TotalMinor: 1550, Reason: "card_declined"})
	publish(ordersapi.EventOrderCancelled, y, 3, ordersapi.OrderStatusChanged{OrderID: y, CustomerEmail: "yuri@example.com", Status: ordersapi.StatusCancelled, Version: 3, Currency: "GBP", TotalMinor: 1550, Reason: "support"})
	publish(ordersapi.EventOrderRefundRequired, y, 4, ordersapi.RefundRequired{OrderID: y, PaymentID: uuid.NewString(), AmountMinor: 1550, Currency: "GBP"})
	poison := uuid.Must(uuid.NewV7()).String()
	publish(ordersapi.EventOrderPlaced, poison, 1, ordersapi.OrderPlaced{OrderID: poison, Currency: "EUR", TotalMinor: 1})

	want := map[string]map[string]string{x: {notificationsapi.KindOrderReceived: "xena@example.com", notificationsapi.KindReceipt: "xena@example.com"},
		y: {notificationsapi.KindOrderReceived: "yuri@example.com", notificationsapi.KindPaymentFailed: "yuri@example.com", notificationsapi.KindCancelled: "yuri@example.com"}}
	for orderID, kinds := range want {
		var list notificationsapi.NotificationList
		testinfra.Eventually(t, 30*time.Second, func() error {
			st, body := httpGetAs(t, base+"/v1/notifications?order_id="+orderID, operator)
			if st != http.StatusOK {
				return fmt.Errorf("GET %d %s", st, body)
			}
			if err := json.Unmarshal([]byte(body), &list); err != nil {
				return err
			}
			sent := 0
			for _, n := range list.Notifications {
				if n.Status == notificationsapi.StatusSent {
					sent++
				}
			}
			if sent != len(kinds) {
				return fmt.Errorf("order %s: %d of %d sent: %s", orderID, sent, len(kinds), body)
			}
			return nil
		})
		if len(list.Notifications) != len(kinds) {
			t.Fatalf("order %s: %+v", orderID, list)
		}
		for _, n := range list.Notifications {
			var found []smtpsink.Message
			for _, m := range sink.Messages(kinds[n.Kind]) {
				if m.MessageID == n.MessageID {
					found = append(found, m)
				}
			}
			if n.Recipient != kinds[n.Kind] || n.Attempts != 1 || n.SentAt == nil || len(found) != 1 || !strings.Contains(found[0].Subject, orderID) {
				t.Errorf("order %s %s: %+v; sink %+v", orderID, n.Kind, n, found)
			}
		}
	}
	if st := sink.Stats(); st.Messages != 5 || st.DistinctMessageIDs != 5 {
		t.Fatalf("sink: %+v", st)
	}
	if st, body := httpGetAs(t, base+"/v1/notifications?order_id=nope", operator); st != http.StatusBadRequest || !strings.Contains(body, "order_id") {
		t.Fatalf("bad order id = %d %s", st, body)
	}
	// Xena (c1) sees her order's e-mails and nothing of Yuri's order (whose
	// events name no customer: operators only); no token is 401.
	for _, tc := range []struct {
		orderID, who, authz string
		status, count       int
	}{{x, "xena", xena, http.StatusOK, 2}, {y, "xena", xena, http.StatusOK, 0}, {x, "nobody", "", http.StatusUnauthorized, 0}} {
		st, body := httpGetAs(t, base+"/v1/notifications?order_id="+tc.orderID, tc.authz)
		var list notificationsapi.NotificationList
		if st != tc.status || (st == http.StatusOK && (json.Unmarshal([]byte(body), &list) != nil || len(list.Notifications) != tc.count)) {
			t.Errorf("GET notifications of %s as %s = %d %s; want %d with %d", tc.orderID, tc.who, st, body, tc.status, tc.count)
		}
	}
	testinfra.Eventually(t, 30*time.Second, func() error {
		_, metrics := httpGet(t, admin+"/metrics")
		for _, m := range []string{`notifications_created_total{kind="receipt"} 1`, `notifications_emails_sent_total{kind="cancelled"} 1`,
			`jobqueue_visible_messages{queue="emails"}`, `stream_consumer_lag_messages{`} {
			if !strings.Contains(metrics, m) {
				return fmt.Errorf("/metrics lacks %s", m)
			}
		}
		return nil
	})

	// The dead-letter tool reads ORDERS_DLQ, which only the operator's
	// NATS user may (ADR 0039): notifications' own is refused.
	var out testinfra.Buffer
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if err := run(short, []string{"notifications", "dlq", "list", "--group", "notifications"}, getenv, &out); err == nil {
		t.Errorf("dlq list as notifications' NATS user: no error\n%s", out.String())
	}
	opEnv := maps.Clone(env)
	maps.Copy(opEnv, ns.Env("operator"))
	testinfra.Eventually(t, 30*time.Second, func() error {
		out = testinfra.Buffer{}
		if err := run(ctx, []string{"notifications", "dlq", "list", "--group", "notifications"}, func(k string) string { return opEnv[k] }, &out); err != nil {
			return err
		}
		if !strings.Contains(out.String(), poison) {
			return fmt.Errorf("dlq list lacks the poison event of %s:\n%s", poison, out.String())
		}
		return nil
	})
	out = testinfra.Buffer{}
	if err := run(ctx, []string{"notifications", "queue", "stats"}, getenv, &out); err != nil || !strings.Contains(out.String(), "emails-dlq") {
		t.Fatalf("queue stats: %v\n%s", err, out.String())
	}

	// The same tools over HTTP, on the admin listener, for operators only.
	for _, tc := range []struct {
		token  string
		status int
		body   string
	}{{"", http.StatusUnauthorized, `"type"`}, {"Bearer not-a-token", http.StatusUnauthorized, `"type"`},
		{xena, http.StatusForbidden, `"type"`}, {operator, http.StatusOK, `"queue":"emails-dlq"`}} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/v1/admin/queues", nil)
		if tc.token != "" {
			req.Header.Set("Authorization", tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.body) {
			t.Errorf("GET /v1/admin/queues with token %q = %d %s, want %d with %s", tc.token, resp.StatusCode, b, tc.status, tc.body)
		}
	}
}

func TestHelpListsTheCommandsAndRolesInTheSharedShape(t *testing.T) {
	t.Parallel()
	testinfra.CheckHelp(t, run, "notifications")
}
