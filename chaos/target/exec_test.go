package target_test

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/chaos/target"
)

// TestComposeExecArgs renders the operator commands the drills run
// against compose: the process's container and its binary.
func TestComposeExecArgs(t *testing.T) {
	c := &target.Compose{Files: []string{"deploy/compose/compose.yaml", "deploy/compose/compose.chaos.yaml"}}
	for _, tc := range []struct {
		process string
		args    []string
		want    string
	}{
		{"search", []string{"dlq", "--stream", "ORDERS", "list"}, "exec -T search search dlq --stream ORDERS list"},
		{"payments-relay", []string{"dlq", "redrive", "--group", "payments"}, "exec -T payments-relay payments dlq redrive --group payments"},
		{"search-consumer-2", []string{"check", "--stream", "CATALOG"}, "exec -T search-consumer-2 search check --stream CATALOG"},
	} {
		got := strings.Join(c.ExecArgs(tc.process, tc.args...), " ")
		want := "compose -f deploy/compose/compose.yaml -f deploy/compose/compose.chaos.yaml " + tc.want
		if got != want {
			t.Errorf("ExecArgs(%s) = %q, want %q", tc.process, got, want)
		}
	}
}

// TestComposeExecRunsAsTheNATSOperator: with the operator's NATS
// password the command runs as the operator, the password passed through
// the environment, never on the command line (ADR 0039).
func TestComposeExecRunsAsTheNATSOperator(t *testing.T) {
	c := &target.Compose{Files: []string{"compose.yaml"}, NATSPassword: "op-s3cret"}
	got := strings.Join(c.ExecArgs("payments-relay", "dlq", "list"), " ")
	if want := "compose -f compose.yaml exec -T -e NATS_USER=operator -e NATS_PASSWORD payments-relay payments dlq list"; got != want {
		t.Fatalf("ExecArgs = %q, want %q", got, want)
	}
}

// TestComposeExecRunsAsTheDatabaseOwner: an operator command of a binary
// with an owner URL gets it through the environment (ADR 0040), the
// others run with their container's own DATABASE_URL.
func TestComposeExecRunsAsTheDatabaseOwner(t *testing.T) {
	owners := target.ComposeDatabaseOwners(func(k string) (string, error) {
		if k == "SEARCH_DB_OWNER_PASSWORD" {
			return "s3cret", nil
		}
		return "", errors.New("not in .env")
	})
	if want := map[string]string{"search": "postgres://search_owner:s3cret@postgres:5432/search?sslmode=disable"}; !maps.Equal(owners, want) {
		t.Fatalf("ComposeDatabaseOwners = %v, want %v", owners, want)
	}
	c := &target.Compose{Files: []string{"compose.yaml"}, DatabaseOwners: owners}
	if got, want := strings.Join(c.ExecArgs("search-consumer-2", "check", "--stream", "CATALOG"), " "), "compose -f compose.yaml exec -T -e DATABASE_URL search-consumer-2 search check --stream CATALOG"; got != want {
		t.Errorf("ExecArgs = %q, want %q", got, want)
	}
	if got, want := strings.Join(c.ExecArgs("orders-relay", "dlq", "list"), " "), "compose -f compose.yaml exec -T orders-relay orders dlq list"; got != want {
		t.Errorf("ExecArgs = %q, want %q", got, want)
	}
}

func TestReadNATSEnvReturnsTheOperatorsPassword(t *testing.T) {
	dir := t.TempDir()
	if _, err := target.ReadNATSEnv(dir); err == nil || !strings.Contains(err.Error(), "nats.env") {
		t.Fatalf("ReadNATSEnv without nats.env = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nats.env"), []byte("NATS_ORDERS_PASSWORD=o\nNATS_OPERATOR_PASSWORD=op\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pw, err := target.ReadNATSEnv(dir)
	if err != nil || pw != "op" {
		t.Fatalf("ReadNATSEnv = %q, %v; want op", pw, err)
	}
	sys := &target.System{Endpoints: target.Endpoints{NATS: "nats://127.0.0.1:1"}, NATSPassword: pw}
	if c := sys.NATSConfig(); c.User != target.NATSOperator || c.Password != "op" {
		t.Fatalf("NATSConfig = %+v", c)
	}
	if c := (&target.System{}).NATSConfig(); c.User != "" {
		t.Fatalf("NATSConfig without a password names user %q", c.User)
	}
}

// TestSecondInstancesAreEndpoints: every second instance has an admin
// listener in both endpoint sets (the shared lag row reads them).
func TestSecondInstancesAreEndpoints(t *testing.T) {
	local, compose := target.LocalEndpoints(8000), target.ComposeEndpoints()
	for _, name := range target.SecondInstances {
		if local.Metrics[name] == "" || compose.Metrics[name] == "" {
			t.Errorf("%s: local %q, compose %q", name, local.Metrics[name], compose.Metrics[name])
		}
	}
}

func TestDropAbsentInstances(t *testing.T) {
	dir := t.TempDir()
	e := target.LocalEndpoints(8000)
	e.DropAbsentInstances(dir) // no pids directory: unknown, kept
	if _, ok := e.Metrics["search-consumer-2"]; !ok {
		t.Fatal("dropped without a run directory")
	}
	if err := mkdirAll(dir+"/pids", "search-consumer-2.pid"); err != nil {
		t.Fatal(err)
	}
	e.DropAbsentInstances(dir)
	if _, ok := e.Metrics["search-consumer-2"]; !ok {
		t.Error("search-consumer-2 runs but was dropped")
	}
	if _, ok := e.Metrics["orders-consumer-2"]; ok {
		t.Error("orders-consumer-2 does not run but was kept")
	}
	if _, ok := e.Metrics["orders-consumer"]; !ok {
		t.Error("a first instance was dropped")
	}
}

func mkdirAll(dir string, files ...string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("1\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// TestReplicasAreEndpoints: the further instances of a local run
// (SHOPFLOOR_REPLICAS, deploy/local/replicas.sh) have their admin
// listener at the first's + 2000(k-1), and are dropped when the run does
// not have them; the consumer groups' second instances have no replicas.
func TestReplicasAreEndpoints(t *testing.T) {
	e := target.LocalEndpoints(8000)
	for name, want := range map[string]string{
		"orders-r2":          "http://127.0.0.1:11082",
		"orders-relay-r3":    "http://127.0.0.1:13182",
		"payments-worker-r2": "http://127.0.0.1:11183",
	} {
		if got := e.Metrics[name]; got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if _, ok := e.Metrics["orders-consumer-2-r2"]; ok {
		t.Error("a second consumer instance has replicas")
	}
	if n, want := len(e.Metrics), 16+11*(target.MaxReplicas-1); n != want {
		// More: replicas of replicas (addReplicas ranging over the map it grows).
		t.Errorf("%d processes, want %d: 16 first or second instances and %d replicas of each of the 11 roles", n, want, target.MaxReplicas-1)
	}
	dir := t.TempDir()
	if err := mkdirAll(dir+"/pids", "orders.pid", "orders-r2.pid"); err != nil {
		t.Fatal(err)
	}
	e.DropAbsentInstances(dir)
	if _, ok := e.Metrics["orders-r2"]; !ok {
		t.Error("orders-r2 runs but was dropped")
	}
	if _, ok := e.Metrics["orders-r3"]; ok {
		t.Error("orders-r3 does not run but was kept")
	}
}
