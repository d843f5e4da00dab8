package drill_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/chaos/drill"
	"github.com/shopfloor/shopfloor/chaos/load"
	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// portBase keeps every port of this copy (16525 … 30932) below the
// ephemeral range and apart from those of the end-to-end test's copy
// (base 21000) and of a copy at 8000 or 30000 (23000 would share a port
// with 30000: 23000+25 = 30000-6975).
const portBase = 23500

// logWriter sends the drill's timeline to the test log, line by line.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestDrillsHoldAgainstTheLocalTopology starts the local topology (deploy/local/ctl.sh up) on its own
// ports, run directory, databases and Redis database, runs two short
// drills against it under checkout load, and fails on any row of their
// reports that did not hold: the drills' own regression test. The
// visibility timeout is 10s (30s by default) so that worker-killed's
// redelivery fits the test's budget.
func TestDrillsHoldAgainstTheLocalTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("the drills start the whole system")
	}
	sys := startLocal(t, "VISIBILITY_TIMEOUT=10s")

	// The drills sign in at the topology's own provider (identity.env of
	// its run directory): the operator and synthetic "load-" customers.
	// The APIs they drive refuse a caller without the right token, so
	// the drills' reads and writes are authorized ones, not an open door.
	t.Run("identity", func(t *testing.T) {
		customer, _ := load.Customer("test", 0)
		op, err := sys.Token(t.Context(), target.Operator)
		if err != nil {
			t.Fatal(err)
		}
		cust, err := sys.Token(t.Context(), customer)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := sys.Token(t.Context(), target.Operator); err != nil || again != op {
			t.Errorf("second operator token %v: want the cached one", err)
		}
		var list catalogapi.ProductList
		if err := target.GetJSON(t.Context(), sys.Client(), sys.Catalog+"/v1/products?limit=1", &list); err != nil || len(list.Products) == 0 {
			t.Fatalf("a product to read through the admin API: %v", err)
		}
		adminProduct := sys.CatalogAdmin + "/v1/admin/products/" + list.Products[0].ID
		for _, tt := range []struct {
			name, method, url, token string
			want                     int
		}{
			{"checkout without a token", http.MethodPost, sys.Orders + "/v1/orders", "", http.StatusUnauthorized},
			{"orders of another customer, as a customer", http.MethodGet, sys.Orders + "/v1/orders?customer_id=ada", cust, http.StatusForbidden},
			{"orders of a customer, as the operator", http.MethodGet, sys.Orders + "/v1/orders?customer_id=ada", op, http.StatusOK},
			{"catalog admin as a customer", http.MethodGet, adminProduct, cust, http.StatusForbidden},
			{"catalog admin as the operator", http.MethodGet, adminProduct, op, http.StatusOK},
		} {
			h := http.Header{}
			if tt.token != "" {
				h.Set("Authorization", "Bearer "+tt.token)
			}
			err := target.DoJSON(t.Context(), sys.Client(), tt.method, tt.url, h, nil, nil)
			var se *target.StatusError
			got := http.StatusOK
			if errors.As(err, &se) {
				got = se.Status
			} else if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if got != tt.want {
				t.Errorf("%s: %d, want %d (%v)", tt.name, got, tt.want, err)
			}
		}
	})

	for _, name := range []string{"relay-killed", "worker-killed"} {
		t.Run(name, func(t *testing.T) { runDrill(t, sys, name) })
	}
}

// TestStreamDrillsHoldOnKafka starts the local topology with its streams
// on Kafka (SHOPFLOOR_STREAM_ENGINE=kafka: deploy/kfake, ADR 0046) and
// runs the two drills whose faults are the stream's own processes:
// relay-killed (a relay restarted with a new producer re-publishes the
// rows it had not marked; Kafka stores them again and the consumers'
// inboxes drop them) and consumer-killed (the killed members' partitions
// wait for the group coordinator, SessionTimeout, and are handled by the
// surviving instances or the restarted ones). Every row must hold.
func TestStreamDrillsHoldOnKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("the drills start the whole system")
	}
	sys := startLocal(t, "VISIBILITY_TIMEOUT=10s", "SHOPFLOOR_STREAM_ENGINE=kafka")
	if len(sys.KafkaBrokers) == 0 {
		t.Fatal("the system does not know its Kafka brokers")
	}
	for _, name := range []string{"relay-killed", "consumer-killed"} {
		t.Run(name, func(t *testing.T) { runDrill(t, sys, name) })
	}
}

// runDrill runs the named drill briefly (20 s of load at 5 checkouts/s,
// longer where the drill needs it) and fails on any row that did not
// hold.
func runDrill(t *testing.T, sys *target.System, name string) {
	t.Helper()
	ds, err := drill.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	rep, err := drill.Execute(t.Context(), sys, ds[0], drill.Config{
		Duration: 20 * time.Second, Rate: 5, Customers: 5, Deadline: 2 * time.Minute, Log: logWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := rep.Write(&b); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s\n(%s in all)", b.String(), time.Since(began).Round(time.Second))
	for _, r := range rep.Results {
		if !r.Held {
			t.Errorf("VIOLATED %s: %s", r.Invariant, r.Evidence)
		}
	}
}

// startLocal starts the local topology on this test's ports, run
// directory, databases and Redis database with env added, and stops it
// (dropping its databases) when the test ends.
func startLocal(t *testing.T, env ...string) *target.System {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("chaos_%d_", time.Now().UnixNano()%1_000_000)
	local := target.NewLocal(target.LocalConfig{
		Root: root, PortBase: portBase, RunDir: filepath.Join(t.TempDir(), "run"), DBPrefix: prefix, RedisDB: 14,
		Env: append([]string{"SEED_PRODUCTS=100", "LOG_LEVEL=WARN",
			"PATH=" + filepath.Join(root, "bin") + ":" + os.Getenv("PATH")}, env...),
	})
	unlock, err := target.LockSystem(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
	start := time.Now()
	if err := local.Up(t.Context()); err != nil {
		t.Logf("%s", local.LogTails(3000))
		_ = local.Down(t.Context())
		_ = local.DropDatabases(t.Context())
		t.Fatal(err)
	}
	t.Logf("the system came up in %s", time.Since(start).Round(time.Millisecond))
	sys := local.System()
	t.Cleanup(func() {
		ctx := context.WithoutCancel(t.Context()) // cancelled by now
		if err := local.Down(ctx); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("%s", local.LogTails(3000))
		}
		if err := local.DropDatabases(ctx); err != nil {
			t.Logf("drop databases: %v", err)
		}
		sys.HTTP.CloseIdleConnections()
	})
	return sys
}

// TestClusterDrillHoldsAgainstALocalCluster starts the local topology
// with a JetStream cluster of three (SHOPFLOOR_NATS_NODES=3, ADR 0041)
// and runs nats-node-killed: a node dies and comes back, then the ORDERS
// leader dies, under load; every row must hold.
func TestClusterDrillHoldsAgainstALocalCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("the drills start the whole system")
	}
	sys := startLocal(t, "SHOPFLOOR_NATS_NODES=3", "SHOPFLOOR_CONSUMER_INSTANCES=1")
	runDrill(t, sys, "nats-node-killed")
}
