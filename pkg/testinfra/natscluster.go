package testinfra

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSCluster is a JetStream cluster of embedded nats-servers owned by one
// test: every node on loopback with its own store, routed to the others,
// for tests of replicated streams (STREAM_REPLICAS, ADR 0041). Nodes stop
// and start again on the same ports and stores, as a crashed and
// restarted server would.
type NATSCluster struct {
	tb     testing.TB
	name   string
	ports  []int
	routes []int
	dirs   []string

	mu      sync.Mutex
	servers []*server.Server
}

// NewNATSCluster starts n nodes (3 or more for replicas of 3) and returns
// once JetStream answers, which needs a meta leader: a quorum of nodes
// that found each other.
func NewNATSCluster(tb testing.TB, n int) *NATSCluster {
	tb.Helper()
	c := &NATSCluster{tb: tb, name: "shopfloor-test-" + randomHex(3), servers: make([]*server.Server, n)}
	for range n {
		c.ports = append(c.ports, freePort(tb))
		c.routes = append(c.routes, freePort(tb))
		c.dirs = append(c.dirs, tb.TempDir())
	}
	tb.Cleanup(func() {
		for i := range n {
			c.Stop(i)
		}
	})
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = c.start(i) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatalf("testinfra: NATS cluster: %v", err)
		}
	}
	_, js := c.Connect()
	Eventually(tb, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
	return c
}

func freePort(tb testing.TB) int {
	tb.Helper()
	addr := FreeAddr(tb)
	_, port, _ := net.SplitHostPort(addr)
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil {
		tb.Fatal(err)
	}
	return p
}

// URL is every node's client address, comma-separated (NATS_URL).
func (c *NATSCluster) URL() string {
	urls := make([]string, len(c.ports))
	for i, p := range c.ports {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	return strings.Join(urls, ",")
}

// Name is node i's server name ("n1", "n2", …), as stream info names the
// leader and replicas.
func (c *NATSCluster) Name(i int) string { return fmt.Sprintf("n%d", i+1) }

// Index is the node of a server name (Name), or -1.
func (c *NATSCluster) Index(name string) int {
	for i := range c.ports {
		if c.Name(i) == name {
			return i
		}
	}
	return -1
}

func (c *NATSCluster) start(i int) error {
	var routes []string
	for _, p := range c.routes {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	opts := &server.Options{ServerName: c.Name(i), Host: "127.0.0.1", Port: c.ports[i],
		JetStream: true, StoreDir: filepath.Join(c.dirs[i], "js"), NoLog: true, NoSigs: true,
		Cluster: server.ClusterOpts{Name: c.name, Host: "127.0.0.1", Port: c.routes[i]},
		Routes:  server.RoutesFromStr(strings.Join(routes, ","))}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("node %s: %w", c.Name(i), err)
	}
	if err := serve(s); err != nil {
		return err
	}
	c.mu.Lock()
	c.servers[i] = s
	c.mu.Unlock()
	return nil
}

// Stop shuts node i down if it runs.
func (c *NATSCluster) Stop(i int) {
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Start starts node i again (same port, same store) if it is stopped.
func (c *NATSCluster) Start(i int) {
	c.tb.Helper()
	c.mu.Lock()
	running := c.servers[i] != nil
	c.mu.Unlock()
	if running {
		return
	}
	if err := c.start(i); err != nil {
		c.tb.Fatalf("testinfra: NATS cluster: %v", err)
	}
}

// Connect returns a connection to the cluster (every node's URL) that
// reconnects forever, as services connect.
func (c *NATSCluster) Connect() (*nats.Conn, jetstream.JetStream) {
	c.tb.Helper()
	nc, err := nats.Connect(c.URL(), nats.Name("test "+c.tb.Name()), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		c.tb.Fatalf("testinfra: connect to the NATS cluster: %v", err)
	}
	c.tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		c.tb.Fatalf("testinfra: JetStream: %v", err)
	}
	return nc, js
}
