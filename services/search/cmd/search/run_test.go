package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/natsauth"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/search/internal/indexsvc"
	"github.com/shopfloor/shopfloor/services/search/internal/searchtest"
	"github.com/shopfloor/shopfloor/services/search/searchapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://x", "ROLES": "api,consumer,gossip", "CATALOG_PARTITIONS": "0",
		"ORDERS_PARTITIONS": "5000", "LAG_INTERVAL": "1ms"}
	getenv := func(k string) string { return env[k] }
	err := run(context.Background(), []string{"search"}, getenv, &testinfra.Buffer{})
	want := []string{`ROLES: unknown role "gossip"`, "NATS_URL: required by the api and consumer roles", "CATALOG_PARTITIONS: must be 1..1024 (got 0)",
		"ORDERS_PARTITIONS: must be 1..1024 (got 5000)", "LAG_INTERVAL: must be at least 100ms", "AUTH_ISSUER: required"}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if err != nil && strings.Count(err.Error(), "\n") != len(want) {
		t.Errorf("want one line per bad value:\n%v", err)
	}
	withDB := map[string]string{"DATABASE_URL": "postgres://x"}
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"search", "dance"}, nil, "usage"},
		{[]string{"search", "rebuild"}, withDB, "--stream: must be CATALOG or ORDERS"},
		{[]string{"search", "rebuild", "--stream", "PAYMENTS"}, withDB, "--stream: must be CATALOG or ORDERS"},
		{[]string{"search", "check", "--stream", "ORDERS", "--allow-missing"}, withDB, "applies to rebuild only"},
		{[]string{"search", "check", "--stream", "ORDERS", "extra"}, withDB, "unexpected arguments"},
		{[]string{"search", "rebuild", "--stream", "ORDERS"}, withDB, "NATS_URL: required by the rebuild and check commands"},
		{[]string{"search", "check", "--stream", "CATALOG"}, nil, "DATABASE_URL"},
		{[]string{"search", "dlq", "list"}, nil, "--stream: must be CATALOG or ORDERS"},
		{[]string{"search", "dlq", "--stream", "ORDERS", "list"}, nil, "NATS_URL"},
		{[]string{"search", "migrate"}, nil, "DATABASE_URL"},
	} {
		// Every case fails before dialling anything.
		err := run(context.Background(), tt.args, func(k string) string { return tt.env[k] }, &testinfra.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want %q", tt.args, err, tt.want)
		}
	}
}

// report finds the replay report in a command's output (JSON log lines
// may surround it).
func report(t *testing.T, out string) indexsvc.Report {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var raw map[string]json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			t.Fatalf("no report in:\n%s", out)
		}
		if err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		if _, ok := raw["mode"]; ok {
			b, _ := json.Marshal(raw)
			var r indexsvc.Report
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			return r
		}
	}
}

// TestEventsBecomeSearchableAndRebuiltProjectionsMatch runs `search migrate`, then serve (api and consumer)
// against PostgreSQL and a private JetStream server; publishes product
// and order events the way catalog's and orders' relays do (keyed by
// entity id, partitions as configured) and finds them through the API
// with freshness headers; then rebuilds and checks both projections
// while serving, with no differences.
func TestEventsBecomeSearchableAndRebuiltProjectionsMatch(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := testinfra.PostgresRoles(t, nil)
	// The broker with the deployments' permissions: search connects as
	// search; catalog and orders (the owners) have created their streams.
	ns := testinfra.NewNATSServer(t, testinfra.NATSServerOptions{Authorization: &natsauth.Shopfloor})
	const partitions = 3
	js := map[string]jetstream.JetStream{}
	for owner, name := range map[string]string{"catalog": catalogapi.Stream, "orders": ordersapi.Stream} {
		_, js[name] = ns.ConnectAs(owner)
		if err := stream.EnsureStream(ctx, js[name], stream.StreamConfig{Name: name, Partitions: partitions}); err != nil {
			t.Fatal(err)
		}
	}
	iss := authtest.NewIssuer(t)
	operator := "Bearer " + iss.Operator(t, "search")
	env := map[string]string{"AUTH_ISSUER": iss.URL, "DATABASE_URL": db.URL, "CATALOG_PARTITIONS": fmt.Sprint(partitions),
		"ORDERS_PARTITIONS": fmt.Sprint(partitions), "LOG_LEVEL": "WARN", "LAG_INTERVAL": "200ms",
		// The test polls anonymously every 20ms (50/s), above the default
		// anonymous limit (20/s, burst 40) once the projection takes more
		// than a second, as on a loaded machine.
		"RATE_LIMIT_ANONYMOUS": "1000", "RATE_LIMIT_ANONYMOUS_BURST": "1000"}
	maps.Copy(env, ns.Env("search"))
	getenv := func(k string) string { return env[k] }
	if err := run(ctx, []string{"search", "migrate"}, db.AsOwner(getenv), &testinfra.Buffer{}); err != nil {
		t.Fatal(err)
	}
	svc := testinfra.StartService(t, run, "search", env)
	base, admin := svc.Public, svc.Admin
	testinfra.Eventually(t, 30*time.Second, func() error {
		a := searchtest.Get(t, base+"/readyz")
		if a.Status != http.StatusOK {
			return fmt.Errorf("readyz %d %s", a.Status, a.Body)
		}
		return nil
	})
	testinfra.CheckListeners(t, base, admin)

	publish := func(streamName string, evs ...searchtest.Event) {
		t.Helper()
		pub, err := stream.NewPublisher(js[streamName], streamName, partitions)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if _, err := pub.Publish(ctx, stream.Message{ID: ev.ID, Key: ev.Key, Payload: ev.Payload}); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk := func(source, typ, id string, v int64, data any) searchtest.Event {
		t.Helper()
		ev, err := searchtest.Envelope(source, typ, id, v, data, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	pid, oid := searchtest.NewID(), searchtest.NewID()
	lamp := catalogapi.ProductChanged{ID: pid, Version: 1, Category: "lamps", Status: "active", SKU: "LAMP-OAK-01",
		Translations: map[string]catalogapi.ProductText{"en-US": {Name: "Oak lamp", Description: "Solid oak."}, "de-DE": {Name: "Eichenlampe"}},
		Prices:       map[string]int64{"EUR": 4900}, Images: []string{"https://img.shopfloor.dev/oak.jpg"}}
	renamed := lamp
	renamed.Version, renamed.Translations = 2, map[string]catalogapi.ProductText{"en-US": {Name: "Oak desk lamp", Description: "Solid oak."}}
	// v1 emitted again after v2 (another event id, so the broker keeps
	// it): stale.
	publish(catalogapi.Stream, mk("catalog", catalogapi.EventProductCreated, pid, 1, lamp), mk("catalog", catalogapi.EventProductUpdated, pid, 2, renamed),
		mk("catalog", catalogapi.EventProductCreated, pid, 1, lamp))
	publish(ordersapi.Stream,
		mk(ordersapi.Source, ordersapi.EventOrderPlaced, oid, 1, ordersapi.OrderPlaced{OrderID: oid, CustomerID: "c-42", CustomerEmail: "ann@example.com",
			Currency: "EUR", TotalMinor: 4900, Items: []ordersapi.Line{{ProductID: pid, SKU: "LAMP-OAK-01", Name: "Oak lamp", Quantity: 1, UnitPriceMinor: 4900}}}),
		mk(ordersapi.Source, ordersapi.EventOrderPaid, oid, 2, ordersapi.OrderStatusChanged{OrderID: oid, CustomerID: "c-42", CustomerEmail: "ann@example.com",
			Status: ordersapi.StatusPaid, Currency: "EUR", TotalMinor: 4900}))

	var products searchapi.ProductResults
	var a searchtest.Answer
	testinfra.Eventually(t, 30*time.Second, func() error {
		a = searchtest.Get(t, base+"/v1/search/products?q=desk+lamp")
		if err := json.Unmarshal(a.Body, &products); err != nil || a.Status != http.StatusOK {
			return fmt.Errorf("%d %s", a.Status, a.Body)
		}
		// Freshness is read before the results (a lower bound of what they
		// reflect), so the first answer with the document can still carry
		// the freshness from before it was applied.
		if len(products.Products) != 1 || products.Products[0].Version != 2 || a.Header.Get(searchapi.HeaderLagSeconds) == "" ||
			a.Header.Get(searchapi.HeaderLastApplied) == "" {
			return fmt.Errorf("not there yet: %s %v", a.Body, a.Header)
		}
		return nil
	})
	if p := products.Products[0]; p.ID != pid || p.Name != "Oak desk lamp" || p.SKU != "LAMP-OAK-01" || p.Prices["EUR"] != 4900 {
		t.Errorf("product = %+v", p)
	}
	if _, err := time.Parse(time.RFC3339Nano, a.Header.Get(searchapi.HeaderLastApplied)); err != nil || products.Freshness.LagSeconds == nil {
		t.Errorf("freshness: header %q (%v), body %+v", a.Header.Get(searchapi.HeaderLastApplied), err, products.Freshness)
	}
	// v2 dropped the German text.
	if r := searchtest.Decode[searchapi.ProductResults](t, searchtest.Get(t, base+"/v1/search/products?q=Eichenlampe&locale=de-DE")); len(r.Products) != 0 {
		t.Errorf("German text of v1 still found: %+v", r.Products)
	}
	var orders searchapi.OrderResults
	testinfra.Eventually(t, 30*time.Second, func() error {
		a := searchtest.GetAs(t, base+"/v1/search/orders?customer_id=c-42&status=paid", operator)
		if err := json.Unmarshal(a.Body, &orders); err != nil || len(orders.Orders) != 1 || a.Header.Get(searchapi.HeaderLastApplied) == "" {
			return fmt.Errorf("%d %s", a.Status, a.Body)
		}
		return nil
	})
	if o := orders.Orders[0]; o.ID != oid || o.Version != 2 || len(o.Items) != 1 {
		t.Errorf("order = %+v", o)
	}
	if a := searchtest.GetAs(t, base+"/v1/search/orders?status=shipped", operator); a.Status != http.StatusBadRequest {
		t.Errorf("bad status = %d %s", a.Status, a.Body)
	}

	// Rebuild and check while serving, as the operator does (a replay
	// runs a consumer group of its own, which search's NATS user may not,
	// and creates tables, which its app role may not).
	opEnv := maps.Clone(env)
	maps.Copy(opEnv, ns.Env("operator"))
	opEnv["DATABASE_URL"] = db.OwnerURL // a rebuild creates and swaps tables: the owner's work (ADR 0040)
	getenv = func(k string) string { return opEnv[k] }
	for _, cmd := range [][]string{
		{"search", "rebuild", "--stream", "CATALOG"},
		{"search", "rebuild", "--stream", "ORDERS", "--timeout", "1m"},
		{"search", "check", "--stream", "CATALOG"},
		{"search", "check", "--stream", "ORDERS"},
	} {
		out := &testinfra.Buffer{}
		if err := run(ctx, cmd, getenv, out); err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
		r := report(t, out.String())
		if r.Diff.Differences() != 0 || r.Diff.LiveDocuments != 1 || r.Swapped != (cmd[1] == "rebuild") || r.Stream != cmd[3] {
			t.Errorf("%v: %+v", cmd, r)
		}
	}
	if r := searchtest.Decode[searchapi.ProductResults](t, searchtest.Get(t, base+"/v1/search/products?q=oak+desk+lamp")); len(r.Products) != 1 {
		t.Errorf("after the rebuild: %+v", r)
	}

	out := &testinfra.Buffer{}
	if err := run(ctx, []string{"search", "dlq", "--stream", "ORDERS", "list"}, getenv, out); err != nil || !strings.Contains(out.String(), "SEQ") {
		t.Errorf("dlq list: %v\n%s", err, out)
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		m := searchtest.Get(t, admin+"/metrics")
		for _, name := range []string{`search_projection_events_total{outcome="stale",stream="CATALOG"} 1`, `search_projection_events_total{outcome="applied",stream="ORDERS"} 2`,
			`search_projection_events_total{outcome="ignored",stream="CATALOG"} 0`,
			"stream_consumer_lag_messages{", "search_projection_lag_seconds{", "search_projection_freshness_age_seconds{"} {
			if !strings.Contains(string(m.Body), name) {
				return fmt.Errorf("/metrics lacks %s", name)
			}
		}
		return nil
	})
}

func TestHelpListsTheCommandsAndRolesInTheSharedShape(t *testing.T) {
	t.Parallel()
	testinfra.CheckHelp(t, run, "search")
}
