// Package local_test is the end-to-end test of the whole order flow: it
// starts the local topology (deploy/local/ctl.sh up, every role a process,
// every dependency behind Toxiproxy) on its own ports, databases and Redis
// database, drives it only through the public APIs, and checks the design's
// invariants across services.
package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/shopfloor/shopfloor/chaos/invariant"
	"github.com/shopfloor/shopfloor/chaos/load"
	"github.com/shopfloor/shopfloor/chaos/target"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

const (
	portBase = 21000 // every port below the ephemeral range (32768+), so parallel tests cannot take one
	nOrders  = 200
)

// ports mirrors deploy/local/ports.sh for portBase.
var (
	cdn           = url(80)
	orders        = url(82)
	payments      = url(83)
	notifications = url(84)
	psp           = url(99)
	smtpHTTP      = url(25)
)

func url(offset int) string { return "http://127.0.0.1:" + strconv.Itoa(portBase+offset) }

// spans collects the service names of the spans of each trace sent to the
// OTLP/HTTP receiver the processes export to.
type spans struct {
	mu       sync.Mutex
	services map[string]map[string]bool // trace id → service names
	byName   map[string][]string        // span name → trace ids
}

func (s *spans) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || r.URL.Path != "/v1/traces" {
		w.WriteHeader(http.StatusOK) // metrics: accepted, ignored
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		svc := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				svc = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				id := fmt.Sprintf("%x", sp.GetTraceId())
				if s.services[id] == nil {
					s.services[id] = map[string]bool{}
				}
				s.services[id][svc] = true
				s.byName[sp.GetName()] = append(s.byName[sp.GetName()], id)
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

// TestOrderFlowEndToEnd: seed, then 200 concurrent checkouts through the
// public API (some sent twice with the same Idempotency-Key, some paying
// with a declining test card). Then the invariants of chaos/invariant,
// the checker the chaos drills use: within a deadline every order is
// paid or payment_failed as its card implies; the provider charged each
// paid order exactly once and no failed one; the SMTP sink holds exactly
// one e-mail per (order, kind); search finds every order with its final
// status and version; every consumer lag, outbox backlog and job queue
// drains to zero. Beyond those: the provider's global counts match, each
// service's own API agrees for 20 orders, one order's trace spans orders,
// payments and notifications, and every dashboard metric is exported.
// It runs with two instances of every role (SHOPFLOOR_REPLICAS=2).
func TestOrderFlowEndToEnd(t *testing.T) {
	orderFlow(t, "nats")
}

// TestOrderFlowEndToEndOnKafka is the same flow and the same invariants
// with the streams on Kafka (SHOPFLOOR_STREAM_ENGINE=kafka: deploy/kfake,
// franz-go's in-process Kafka, as the broker; ADR 0046), one instance of
// each role and the second instance of every consumer group (which share
// the topics' partitions through the group coordinator), and the broker's
// own offsets and the batch groups' calls are checked (checkKafkaGroups).
func TestOrderFlowEndToEndOnKafka(t *testing.T) {
	orderFlow(t, "kafka")
}

func orderFlow(t *testing.T, engine string) {
	if testing.Short() {
		t.Skip("the end-to-end test starts the whole system")
	}
	rec := &spans{services: map[string]map[string]bool{}, byName: map[string][]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	otlp := &http.Server{Handler: rec, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = otlp.Serve(ln) }()
	defer otlp.Close()

	start := time.Now()
	env := []string{"SEED_PRODUCTS=300", "OTEL_EXPORTER_OTLP_ENDPOINT=http://" + ln.Addr().String()}
	if engine == "kafka" {
		env = append(env, "SHOPFLOOR_STREAM_ENGINE=kafka")
	} else {
		// Two instances of every role (SHOPFLOOR_REPLICAS=2, issue 21):
		// the api ones behind HAProxy, the relays electing one leader.
		env = append(env, "SHOPFLOOR_REPLICAS=2")
	}
	local := startTopology(t, "e2e", portBase, 15, env...)
	t.Logf("the system came up in %s", time.Since(start).Round(time.Millisecond))
	sys := local.System()
	t.Cleanup(sys.HTTP.CloseIdleConnections)

	// Products through the CDN.
	var list catalogapi.ProductList
	getJSON(t, cdn+"/v1/products?limit=50", &list)
	if len(list.Products) < 10 {
		t.Fatalf("catalog lists %d products", len(list.Products))
	}

	// Customers are synthetic users of the sandbox provider (load-*), each
	// with a token; the operator reads everyone's orders.
	operator, err := sys.Token(t.Context(), target.Operator)
	if err != nil {
		t.Fatal(err)
	}
	op = "Bearer " + operator
	const customers = 25
	tokens := make([]string, customers)
	for k := range customers {
		id, _ := e2eCustomer(k)
		if tokens[k], err = sys.Token(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu     sync.Mutex
		result []invariant.Order
		wg     sync.WaitGroup
	)
	for i := range nOrders {
		wg.Go(func() {
			p := list.Products[i%len(list.Products)]
			q := list.Products[(i+7)%len(list.Products)]
			method, declined := "tok_visa", i%20 == 3
			if declined {
				method = "tok_chargeDeclined"
			}
			customer, email := e2eCustomer(i % customers)
			in := ordersapi.CreateOrder{CustomerID: customer, CustomerEmail: email,
				Currency: "EUR", PaymentMethod: method,
				Items:    []ordersapi.LineInput{{ProductID: p.ID, Quantity: 1 + i%3}, {SKU: q.SKU, Quantity: 1}},
				Shipping: ordersapi.Address{Name: "E2E", Line1: "1 Test St", City: "Berlin", PostalCode: "10115", Country: "DE"}}
			key := fmt.Sprintf("e2e-%d", i)
			tries := 1
			if i%40 == 0 {
				tries = 2 // a nervous client: the same key again
			}
			var first string
			for range tries {
				o, code := postOrder(t, tokens[i%customers], in, key)
				if code != http.StatusCreated {
					t.Errorf("order %d: POST = %d", i, code)
					return
				}
				if first != "" && o.ID != first {
					t.Errorf("order %d: a retry with the same key created %s after %s", i, o.ID, first)
				}
				first = o.ID
			}
			mu.Lock()
			result = append(result, invariant.Order{ID: first, CustomerID: in.CustomerID, Email: in.CustomerEmail, Declined: declined})
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(result) != nOrders {
		t.Fatalf("%d orders placed, want %d", len(result), nOrders)
	}

	// The invariants, as the chaos drills check them.
	checker := &invariant.Checker{Sys: sys}
	rep, err := checker.Check(t.Context(), result, invariant.Options{Deadline: 4 * time.Minute,
		Progress: func(s string) { t.Log(s) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if !r.Held {
			t.Errorf("VIOLATED %s: %s", r.Invariant, r.Evidence)
		} else {
			t.Logf("held %s: %s", r.Invariant, r.Evidence)
		}
	}
	final := map[string]string{}
	var paid, failed int
	for _, p := range result {
		var o ordersapi.Order
		getJSON(t, orders+"/v1/orders/"+p.ID, &o)
		final[p.ID] = o.Status
		if o.Status == ordersapi.StatusPaid {
			paid++
		} else {
			failed++
		}
	}

	// The provider's global counts: this topology served only these
	// orders, so no charge at all beyond one per paid order.
	var stats pspsim.Stats
	getJSON(t, psp+"/admin/stats", &stats)
	if len(stats.DoubleCharges) != 0 || stats.ChargesSucceeded != paid {
		t.Errorf("provider: %d succeeded charges for %d paid orders; double charges %v", stats.ChargesSucceeded, paid, stats.DoubleCharges)
	}

	// The sink holds nothing but these orders' e-mails, each once.
	want := paid*2 + failed*2 // received + receipt, received + payment failed
	var msgs []sinkMessage
	getJSON(t, smtpHTTP+"/api/messages", &msgs)
	ids := map[string]bool{}
	for _, m := range msgs {
		if ids[m.MessageID] {
			t.Errorf("e-mail %s delivered twice", m.MessageID)
		}
		ids[m.MessageID] = true
	}
	if len(msgs) != want {
		t.Errorf("%d e-mails, want exactly %d (2 per order)", len(msgs), want)
	}

	// Each service's own view of one paid and one failed order.
	for _, p := range result[:20] {
		var pay struct {
			Status string `json:"status"`
		}
		getJSON(t, payments+"/v1/payments?order_id="+p.ID, &pay)
		var ns struct {
			Notifications []struct {
				Kind   string `json:"kind"`
				Status string `json:"status"`
			} `json:"notifications"`
		}
		getJSON(t, notifications+"/v1/notifications?order_id="+p.ID, &ns)
		wantPay := map[string]string{ordersapi.StatusPaid: "succeeded", ordersapi.StatusPaymentFailed: "failed"}[final[p.ID]]
		if pay.Status != wantPay || len(ns.Notifications) != 2 {
			t.Errorf("order %s (%s): payment %s, notifications %+v", p.ID, final[p.ID], pay.Status, ns.Notifications)
		}
	}

	// Nobody reads or changes another customer's data (DESIGN invariant
	// 8, ADR 0022): customer 1 cannot read, search or cancel customer 0's
	// order, or order in their name; a request without a token is 401;
	// the operator sees everything.
	var victim invariant.Order
	owner, _ := e2eCustomer(0)
	for _, p := range result {
		if p.CustomerID == owner {
			victim = p
			break
		}
	}
	mallory := "Bearer " + tokens[1]
	for _, c := range []struct {
		what, method, u, authz, body string
		header                       map[string]string
		want                         int
	}{
		{"another customer reads the order", "GET", orders + "/v1/orders/" + victim.ID, mallory, "", nil, http.StatusNotFound},
		{"another customer cancels it", "POST", orders + "/v1/orders/" + victim.ID + "/cancel", mallory, "", map[string]string{"Idempotency-Key": "mallory-1"}, http.StatusNotFound},
		{"another customer reads its payment", "GET", payments + "/v1/payments?order_id=" + victim.ID, mallory, "", nil, http.StatusNotFound},
		{"another customer lists the owner's orders", "GET", orders + "/v1/orders?customer_id=" + owner, mallory, "", nil, http.StatusForbidden},
		{"another customer searches the owner's orders", "GET", url(85) + "/v1/search/orders?customer_id=" + owner, mallory, "", nil, http.StatusForbidden},
		{"another customer orders in the owner's name", "POST", orders + "/v1/orders", mallory,
			`{"customer_id":"` + owner + `","customer_email":"x@example.com","currency":"EUR","items":[{"product_id":"` + list.Products[0].ID + `","quantity":1}],"shipping_address":{"name":"M","line1":"1 St","city":"Berlin","postal_code":"10115","country":"DE"}}`,
			map[string]string{"Idempotency-Key": "mallory-2"}, http.StatusForbidden},
		{"nobody reads the order", "GET", orders + "/v1/orders/" + victim.ID, "", "", nil, http.StatusUnauthorized},
		{"nobody searches orders", "GET", url(85) + "/v1/search/orders?limit=1", "", "", nil, http.StatusUnauthorized},
		{"the owner reads the order", "GET", orders + "/v1/orders/" + victim.ID, "Bearer " + tokens[0], "", nil, http.StatusOK},
		{"the operator reads the order", "GET", orders + "/v1/orders/" + victim.ID, op, "", nil, http.StatusOK},
		{"the operator searches the owner's orders", "GET", url(85) + "/v1/search/orders?customer_id=" + owner, op, "", nil, http.StatusOK},
	} {
		if st := send(t, c.method, c.u, c.authz, c.body, c.header); st != c.want {
			t.Errorf("%s: %s %s = %d, want %d", c.what, c.method, c.u, st, c.want)
		}
	}
	var ns struct {
		Notifications []any `json:"notifications"`
	}
	if err := json.Unmarshal([]byte(getAs(t, notifications+"/v1/notifications?order_id="+victim.ID, mallory)), &ns); err != nil || len(ns.Notifications) != 0 {
		t.Errorf("another customer sees %d notifications of the order (%v), want none", len(ns.Notifications), err)
	}
	var after ordersapi.Order
	getJSON(t, orders+"/v1/orders/"+victim.ID, &after)
	if after.Status != final[victim.ID] {
		t.Errorf("order %s is %s after another customer's cancel, want %s", victim.ID, after.Status, final[victim.ID])
	}

	// The edge (ADR 0023): no public port and not the CDN serves /metrics
	// or the admin API; each service process's admin listener serves
	// /metrics, and catalog's the admin API (with the token).
	for _, base := range []string{cdn, url(81), orders, payments, notifications, url(85), url(90)} {
		for _, path := range []string{"/metrics", "/v1/admin/queues", "/v1/admin/products/" + list.Products[0].ID} {
			if st := status(t, base+path, op); st != http.StatusNotFound {
				t.Errorf("GET %s%s = %d, want 404 (admin listener only)", base, path, st)
			}
		}
	}
	if st := status(t, sys.CatalogAdmin+"/v1/admin/products/"+list.Products[0].ID, op); st != http.StatusOK {
		t.Errorf("GET %s/v1/admin/products/{id} = %d, want 200", sys.CatalogAdmin, st)
	}

	if engine == "kafka" {
		checkKafkaGroups(t, sys)
	} else {
		checkReplicas(t, sys)
	}
	checkDashboardMetrics(t, sys)

	// One order's trace: the checkout's trace reaches payments and
	// notifications.
	testinfra.Eventually(t, time.Minute, func() error {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, id := range rec.byName["POST /v1/orders"] {
			s := rec.services[id]
			if s["orders"] && s["payments"] && s["notifications"] {
				return nil
			}
		}
		return fmt.Errorf("no checkout trace spans orders, payments and notifications yet (%d traces)", len(rec.services))
	})
	t.Logf("%s: %d orders: %d paid, %d payment_failed; %d e-mails; provider charges %d; %d answers were 503/409 and retried; converged in %s; %s in all",
		engine, nOrders, paid, failed, len(msgs), stats.ChargesCreated, overloaded.Load(), rep.Took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// checkDashboardMetrics: every metric the dashboards query is exported by
// a running process (the services' on their admin listeners). A stream
// metric is queried for both engines (stream_X or stream_kafka_X, ADR
// 0046): one of the two is enough.
func checkDashboardMetrics(t *testing.T, sys *target.System) {
	t.Helper()
	exported := map[string]bool{}
	metricsURLs := []string{psp, url(131)}
	for _, u := range sys.Metrics {
		metricsURLs = append(metricsURLs, u)
	}
	for _, u := range metricsURLs {
		for _, line := range strings.Split(get(t, u+"/metrics"), "\n") {
			if name, _, ok := strings.Cut(line, "{"); ok && !strings.HasPrefix(line, "#") {
				exported[name] = true
			} else if name, _, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
				exported[name] = true
			}
		}
	}
	has := func(name string) bool { return exported[name] || exported[name+"_total"] || exported[name+"_bucket"] }
	for _, name := range dashboardMetrics(t) {
		other := strings.Replace(name, "stream_", "stream_kafka_", 1)
		if strings.HasPrefix(name, "stream_kafka_") {
			other = strings.Replace(name, "stream_kafka_", "stream_", 1)
		}
		if !has(name) && (!strings.HasPrefix(name, "stream_") || !has(other)) {
			t.Errorf("dashboards query %s, which no process exports", name)
		}
	}
}

var metricRE = regexp.MustCompile(`[a-z_][a-z0-9_]*(?:\{|\[)`)

// dashboardMetrics lists the metric names in the dashboards' queries.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "deploy/compose/grafana/dashboards/*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				for _, m := range metricRE.FindAllString(tg.Expr, -1) {
					name := strings.TrimRight(m, "{[")
					switch name {
					case "rate", "sum", "max", "by", "histogram_quantile":
						continue
					}
					if !seen[name] {
						seen[name] = true
						out = append(out, name)
					}
				}
			}
		}
	}
	return out
}

type sinkMessage struct {
	MessageID string   `json:"message_id"`
	To        []string `json:"to"`
	Subject   string   `json:"subject"`
}

var overloaded atomic.Int64

// op is the operator's Authorization value, which get sends (public
// routes ignore it).
var op string

// e2eCustomer is customer k: a synthetic user of the sandbox provider
// (IDENTITY_SYNTHETIC_CUSTOMER_PREFIX=load-) and its e-mail address.
func e2eCustomer(k int) (id, email string) {
	id = fmt.Sprintf("load-e2e-c%d", k)
	return id, id + "@example.com"
}

// send makes a request with an Authorization value and a body, and
// returns the status.
func send(t *testing.T, method, u, authorization, body string, header map[string]string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// postOrder places an order as a well-behaved client does (load.Place): a
// 503 (the in-flight limit, or catalog unavailable), a 429 or a 409 (the
// same key still in flight) is retried with the same Idempotency-Key after
// Retry-After, for up to two minutes.
func postOrder(t *testing.T, token string, in ordersapi.CreateOrder, key string) (ordersapi.Order, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	a, err := load.Place(ctx, http.DefaultClient, orders, token, in, key)
	for _, n := range a.Retries {
		overloaded.Add(int64(n))
	}
	if err != nil {
		t.Error(err)
		return ordersapi.Order{}, 0
	}
	return a.Order, a.Status
}

func get(t *testing.T, u string) string {
	t.Helper()
	return getAs(t, u, op)
}

// getAs GETs u with the Authorization value authz ("" for none) and
// returns the 200 body.
func getAs(t *testing.T, u, authz string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d %s", u, resp.StatusCode, b)
	}
	return string(b)
}

// status GETs u with the Authorization header and returns the status.
func status(t *testing.T, u, authorization string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Authorization", authorization)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(get(t, u)), v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// startTopology starts the local topology (ctl.sh up) for a test on its
// own ports (base), databases (named after name) and Redis database, with
// LOG_LEVEL=WARN and ./bin on the PATH plus env, holding the machine-wide
// lock: one whole topology at a time on this machine (the chaos drills'
// test starts one too), since cores and PostgreSQL connections are
// shared. It is taken down, and its databases dropped, when t ends; its
// logs' tails are logged when t failed.
func startTopology(t *testing.T, name string, base, redisDB int, env ...string) *target.Local {
	t.Helper()
	local := target.NewLocal(target.LocalConfig{
		Root: repoRoot(t), PortBase: base, RunDir: filepath.Join(t.TempDir(), "run"),
		DBPrefix: fmt.Sprintf("%s_%d_", name, time.Now().UnixNano()%1_000_000), RedisDB: redisDB,
		Env: append([]string{"LOG_LEVEL=WARN", "PATH=" + filepath.Join(repoRoot(t), "bin") + ":" + os.Getenv("PATH")}, env...),
	})
	unlock, err := target.LockSystem(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
	t.Cleanup(func() {
		if err := local.Down(context.WithoutCancel(t.Context())); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("%s", local.LogTails(3000))
		}
		if err := local.DropDatabases(context.WithoutCancel(t.Context())); err != nil {
			t.Logf("drop databases: %v", err)
		}
	})
	if err := local.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	return local
}

func repoRoot(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// checkReplicas: with SHOPFLOOR_REPLICAS=2 both instances of every api
// answered requests through HAProxy (its statistics count each server's
// sessions), every further instance exports its metrics, and each relay
// has exactly one leader among its instances (outbox_relay_leader).
func checkReplicas(t *testing.T, sys *target.System) {
	t.Helper()
	served := map[string]int{}
	for _, line := range strings.Split(get(t, url(132)+"/stats;csv"), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 8 || strings.HasPrefix(line, "#") || f[1] == "FRONTEND" || f[1] == "BACKEND" || f[0] == "metrics" {
			continue
		}
		n, err := strconv.Atoi(f[7]) // stot: sessions the server has had
		if err != nil {
			t.Fatalf("HAProxy stats line %q: %v", line, err)
		}
		served[f[0]+"/"+f[1]] = n
	}
	for _, api := range []string{"catalog", "orders", "payments", "notifications", "search"} {
		for _, server := range []string{api, target.Replica(api, 2)} {
			if served[api+"/"+server] == 0 {
				t.Errorf("HAProxy: %s/%s answered no request (%v)", api, server, served)
			}
		}
	}
	leaders := map[string]float64{}
	for _, relay := range []string{"orders-relay", "payments-relay", "catalog-worker"} {
		for _, name := range []string{relay, target.Replica(relay, 2)} {
			u, ok := sys.Metrics[name]
			if !ok {
				t.Errorf("%s: no metrics endpoint (not running?)", name)
				continue
			}
			for _, line := range strings.Split(get(t, u+"/metrics"), "\n") {
				if rest, ok := strings.CutPrefix(line, "outbox_relay_leader{"); ok {
					labels, value, _ := strings.Cut(rest, "} ")
					v, err := strconv.ParseFloat(value, 64)
					if err != nil {
						t.Fatalf("%s: %q: %v", name, line, err)
					}
					leaders[relay+" "+labels] += v
				}
			}
		}
	}
	t.Logf("HAProxy sessions per instance: %v; relay leaders: %v", served, leaders)
	if len(leaders) < 3 {
		t.Errorf("relay leaders: %v, want one entry per relay", leaders)
	}
	for relay, n := range leaders {
		if n != 1 {
			t.Errorf("%s: %v instances lead, want exactly 1", relay, n)
		}
	}
}

// checkKafkaGroups: with SHOPFLOOR_STREAM_ENGINE=kafka the streams really
// ran on Kafka. The broker holds the three topics with records, every
// service's consumer group has committed all of them on each topic it
// reads (lag 0, from the broker's own offsets, not the services' gauges),
// the batch groups made handler calls on Kafka, and JetStream holds no
// message of those streams.
func checkKafkaGroups(t *testing.T, sys *target.System) {
	t.Helper()
	cl, err := kgo.NewClient(kafkastream.ClientOpts([]string{"127.0.0.1:" + strconv.Itoa(portBase+1092)})...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(t.Context(), "ORDERS", "PAYMENTS", "CATALOG")
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"ORDERS", "PAYMENTS", "CATALOG"} {
		var n int64
		for _, o := range ends[topic] {
			if o.Err != nil {
				t.Fatalf("kafka: topic %s partition %d: %v", topic, o.Partition, o.Err)
			}
			n += o.Offset
		}
		if n == 0 {
			t.Errorf("kafka: topic %s holds no records", topic)
		}
		t.Logf("kafka: topic %s: %d records in %d partitions", topic, n, len(ends[topic]))
	}
	reads := map[string][]string{"catalog-invalidation": {"CATALOG"}, "orders": {"PAYMENTS"},
		"payments": {"ORDERS"}, "notifications": {"ORDERS"}, "search": {"ORDERS", "CATALOG"}}
	testinfra.Eventually(t, 30*time.Second, func() error {
		for group, topics := range reads {
			for _, topic := range topics {
				lags, err := kafkastream.Lag(t.Context(), adm, topic, group)
				if err != nil {
					return err
				}
				var behind int64
				for _, l := range lags {
					behind += l
				}
				if len(lags) == 0 || behind != 0 {
					return fmt.Errorf("kafka: group %s on %s: %d records not committed over %d partitions", group, topic, behind, len(lags))
				}
			}
		}
		return nil
	})
	// The batch groups ran on Kafka (ADR 0045 on the second engine): their
	// calls and the records they carried, from the consumers' histograms.
	calls, records := map[string]float64{}, map[string]float64{}
	for _, base := range sys.Metrics {
		samples, err := target.Scrape(t.Context(), sys.Client(), base)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range samples {
			k := x.Label("group") + "/" + x.Label("stream")
			switch x.Name {
			case "stream_kafka_handler_batch_size_messages_count":
				calls[k] += x.Value
			case "stream_kafka_handler_batch_size_messages_sum":
				records[k] += x.Value
			}
		}
	}
	for _, k := range []string{"payments/ORDERS", "notifications/ORDERS", "orders/PAYMENTS", "search/ORDERS"} {
		if calls[k] == 0 {
			t.Errorf("kafka: batch group %s made no handler calls", k)
			continue
		}
		t.Logf("kafka: batch group %s: %g records in %g calls", k, records[k], calls[k])
	}
	js, err := sys.JetStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ORDERS", "PAYMENTS", "CATALOG"} {
		if n := js.Messages[name]; n != 0 {
			t.Errorf("JetStream stream %s holds %d messages on the Kafka engine", name, n)
		}
	}
}
