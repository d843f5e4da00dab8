package compose_test

import (
	"bufio"
	"context"
	"fmt"
	"iter"
	"maps"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/natsauth"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// clusterOverlay switches NATS to the JetStream cluster of three (ADR
// 0041); clusterFiles is how the README runs it.
const clusterOverlay = "compose.cluster.yaml"

var (
	clusterFiles = []string{"compose.yaml", clusterOverlay}
	natsNodes    = []string{"nats", "nats-2", "nats-3"}
)

// loadCluster is compose.yaml with the cluster overlay and the cluster
// profile (and observability's), .env.example and the test secrets.
func loadCluster(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadWith(clusterFiles, []string{"observability", "cluster"}, ".env.example", testSecrets)
	if err != nil {
		t.Fatalf("compose.yaml with %s and --profile cluster does not load: %v", clusterOverlay, err)
	}
	return p
}

// TestClusterOverlayNeedsTheProfile: the overlay without `--profile
// cluster` is refused (every client waits for nodes only the profile
// starts: "depends on undefined service nats-2"); the profile without the
// overlay leaves every service on the single server.
func TestClusterOverlayNeedsTheProfile(t *testing.T) {
	t.Parallel()
	_, err := loadWith(clusterFiles, []string{"observability"}, ".env.example", testSecrets)
	if err == nil || !strings.Contains(err.Error(), `depends on undefined service "nats-`) {
		t.Errorf("%s without --profile cluster: %v, want a refusal naming nats-2 or nats-3", clusterOverlay, err)
	}
	single, err := loadWith([]string{"compose.yaml"}, []string{"observability", "cluster"}, ".env.example", testSecrets)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range single.Services {
		if u := s.Environment["NATS_URL"]; u != nil && *u != "nats://nats:4222" {
			t.Errorf("compose.yaml --profile cluster: %s: NATS_URL %s, want the single server's", name, *u)
		}
	}
}

// TestSingleServerIsUnchanged: without the overlay, nats runs nats.conf
// (no cluster, no route secret), every client has nats://nats:4222 and no
// STREAM_REPLICAS (1, the default), and nats-2 and nats-3 do not run.
func TestSingleServerIsUnchanged(t *testing.T) {
	t.Parallel()
	p := load(t)
	nats := p.Services["nats"]
	if got := strings.Join(nats.Command, " "); got != "-c /etc/nats/nats.conf" {
		t.Errorf("nats runs %q, want -c /etc/nats/nats.conf", got)
	}
	for k := range nats.Environment {
		if strings.HasPrefix(k, "NATS_ROUTE") || k == "NATS_SERVER_NAME" {
			t.Errorf("nats: %s set without the cluster", k)
		}
	}
	for _, n := range natsNodes[1:] {
		if _, ok := p.Services[n]; ok {
			t.Errorf("%s runs without --profile cluster", n)
		}
	}
	for name, s := range p.Services {
		if u := s.Environment["NATS_URL"]; u != nil && *u != "nats://nats:4222" {
			t.Errorf("%s: NATS_URL %s", name, *u)
		}
		if _, ok := s.Environment["STREAM_REPLICAS"]; ok {
			t.Errorf("%s: STREAM_REPLICAS set without the cluster", name)
		}
	}
}

// routeURLs parses a node's NATS_ROUTES (a nats-server config array of
// route URLs).
func routeURLs(t *testing.T, node, routes string) []*url.URL {
	t.Helper()
	s := strings.TrimSpace(routes)
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		t.Fatalf("%s: NATS_ROUTES %q is not a config array [a, b, c] (cluster.conf: routes: $NATS_ROUTES)", node, routes)
	}
	var out []*url.URL
	for part := range strings.SplitSeq(strings.Trim(s, "[]"), ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil {
			t.Fatalf("%s: NATS_ROUTES: %v", node, err)
		}
		out = append(out, u)
	}
	return out
}

// TestClusterOverlay: with the overlay and the profile, nats, nats-2 and
// nats-3 run nats/cluster.conf (with nats.conf and the users of auth.conf
// mounted beside it), each with its own volume at /data and its own
// server_name (its service name), every user's password, and routes to
// all three nodes that log in as route with NATS_ROUTE_PASSWORD; every
// process that connects to NATS gets the three URLs, STREAM_REPLICAS=3
// and waits for all three nodes.
func TestClusterOverlay(t *testing.T) {
	t.Parallel()
	p := loadCluster(t)
	routePW := testSecrets["NATS_ROUTE_PASSWORD"]
	stores, names := map[string]string{}, map[string]string{}
	for _, n := range natsNodes {
		s, ok := p.Services[n]
		if !ok {
			t.Errorf("%s: not a service with the cluster profile", n)
			continue
		}
		if got := strings.Join(s.Command, " "); got != "-c /etc/nats/cluster.conf" {
			t.Errorf("%s runs %q, want -c /etc/nats/cluster.conf", n, got)
		}
		mounts := map[string]string{}
		for _, v := range s.Volumes {
			switch v.Type {
			case types.VolumeTypeBind:
				rel, _ := filepath.Rel(mustAbs(t, "."), v.Source)
				mounts[v.Target] = rel
			case types.VolumeTypeVolume:
				if v.Target == "/data" {
					if other, dup := stores[v.Source]; dup {
						t.Errorf("%s and %s share the store volume %s", n, other, v.Source)
					}
					stores[v.Source] = n
				}
			}
		}
		want := map[string]string{"/etc/nats/nats.conf": "nats/nats.conf", "/etc/nats/auth.conf": "nats/auth.conf", "/etc/nats/cluster.conf": "nats/cluster.conf"}
		if !maps.Equal(mounts, want) {
			t.Errorf("%s mounts %v, want %v", n, mounts, want)
		}
		name := s.Environment["NATS_SERVER_NAME"]
		if name == nil || *name != n {
			t.Errorf("%s: NATS_SERVER_NAME %v, want %s", n, name, n)
		} else if other, dup := names[*name]; dup {
			t.Errorf("%s and %s are both server %s", n, other, *name)
		} else {
			names[*name] = n
		}
		for _, u := range natsauth.Shopfloor.Users {
			v := natsauth.PasswordVar(u.Name)
			if got := s.Environment[v]; got == nil || *got != testSecrets[v] {
				t.Errorf("%s: %s = %v, want the secret %s", n, v, got, v)
			}
		}
		if pw := s.Environment["NATS_ROUTE_PASSWORD"]; pw == nil || *pw != routePW {
			t.Errorf("%s: NATS_ROUTE_PASSWORD %v, want the secret", n, pw)
		}
		routes := s.Environment["NATS_ROUTES"]
		if routes == nil {
			t.Errorf("%s: no NATS_ROUTES", n)
			continue
		}
		var hosts []string
		for _, u := range routeURLs(t, n, *routes) {
			pw, _ := u.User.Password()
			if u.Scheme != "nats-route" || u.User.Username() != "route" || pw != routePW || u.Port() != "6222" {
				t.Errorf("%s: route %s: want nats-route://route:<NATS_ROUTE_PASSWORD>@<node>:6222", n, u.Redacted())
			}
			hosts = append(hosts, u.Hostname())
		}
		if !slices.Equal(hosts, natsNodes) {
			t.Errorf("%s routes to %v, want %v", n, hosts, natsNodes)
		}
	}
	if len(stores) != len(natsNodes) {
		t.Errorf("store volumes %v: want one per node", stores)
	}

	want := strings.Join([]string{"nats://nats:4222", "nats://nats-2:4222", "nats://nats-3:4222"}, ",")
	clients := 0
	for name, s := range p.Services {
		if s.Environment["NATS_URL"] == nil {
			continue
		}
		clients++
		if got := *s.Environment["NATS_URL"]; got != want {
			t.Errorf("%s: NATS_URL %s, want %s", name, got, want)
		}
		if r := s.Environment["STREAM_REPLICAS"]; r == nil || *r != "3" {
			t.Errorf("%s: STREAM_REPLICAS %v, want 3", name, r)
		}
		for _, n := range natsNodes {
			if d, ok := s.DependsOn[n]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s: does not wait for %s to be healthy", name, n)
			}
		}
	}
	if single := clientsOf(load(t)); clients != single || clients < 15 {
		t.Errorf("%d NATS clients with the cluster, %d without: want the same (15 or more)", clients, single)
	}
}

func clientsOf(p *types.Project) int {
	n := 0
	for _, s := range p.Services {
		if s.Environment["NATS_URL"] != nil {
			n++
		}
	}
	return n
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// TestClusterConfigFormsACluster reads each node's nats/cluster.conf with
// nats-server's own config parser in the environment compose gives that
// node, and starts the three on free loopback ports (each route URL's
// host moved to its node's port, credentials kept): they form a JetStream
// cluster, a stream with three replicas is placed on all three, every
// service's user exists, and the route port refuses a route that does not
// log in. Not parallel: the parser reads the process environment.
func TestClusterConfigFormsACluster(t *testing.T) {
	p := loadCluster(t)
	clientPorts, routePorts, stores := map[string]int{}, map[string]int{}, map[string]string{}
	for _, n := range natsNodes {
		clientPorts[n], routePorts[n] = freePort(t), freePort(t)
		// Before the shutdown below is registered: cleanups run last
		// first, so the servers stop before their stores are removed.
		stores[n] = t.TempDir()
	}
	var servers []*server.Server
	t.Cleanup(func() {
		for _, s := range servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
	})
	for _, n := range natsNodes {
		for k, v := range p.Services[n].Environment {
			if v != nil {
				t.Setenv(k, *v)
			}
		}
		opts, err := server.ProcessConfigFile("nats/cluster.conf")
		if err != nil {
			t.Fatalf("%s: nats-server refuses nats/cluster.conf: %v", n, err)
		}
		if opts.ServerName != n || !opts.JetStream || opts.Cluster.Name != "shopfloor" {
			t.Errorf("%s: server_name %q, jetstream %v, cluster %q", n, opts.ServerName, opts.JetStream, opts.Cluster.Name)
		}
		if opts.Cluster.Username != "route" || opts.Cluster.Password != testSecrets["NATS_ROUTE_PASSWORD"] {
			t.Errorf("%s: routes accept user %q with password %q, want route with NATS_ROUTE_PASSWORD", n, opts.Cluster.Username, opts.Cluster.Password)
		}
		if len(opts.Users) != len(natsauth.Shopfloor.Users) {
			t.Errorf("%s: %d users, want natsauth.Shopfloor's %d (auth.conf)", n, len(opts.Users), len(natsauth.Shopfloor.Users))
		}
		if len(opts.Routes) != len(natsNodes) {
			t.Fatalf("%s: %d routes, want %d", n, len(opts.Routes), len(natsNodes))
		}
		// The same configuration on this machine's free ports.
		for _, r := range opts.Routes {
			port, ok := routePorts[r.Hostname()]
			if !ok {
				t.Fatalf("%s: route to %s, not a node", n, r.Hostname())
			}
			r.Host = fmt.Sprintf("127.0.0.1:%d", port)
		}
		opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", clientPorts[n], 0
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", routePorts[n]
		opts.StoreDir = stores[n]
		opts.NoLog, opts.NoSigs = true, true
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		s.Start()
		servers = append(servers, s)
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("%s does not accept connections", n)
		}
	}

	var urls []string
	for _, n := range natsNodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[n]))
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.UserInfo("operator", testSecrets[natsauth.PasswordVar("operator")]),
		nats.CustomInboxPrefix("_INBOX.operator"))
	if err != nil {
		t.Fatalf("operator cannot connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var info *jetstream.StreamInfo
	testinfra.Eventually(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "CLUSTERCHECK", Subjects: []string{"CLUSTERCHECK.>"}, Replicas: 3})
		if err != nil {
			return fmt.Errorf("a stream with 3 replicas: %w", err)
		}
		info = s.CachedInfo()
		return nil
	})
	placed := []string{info.Cluster.Leader}
	for _, r := range info.Cluster.Replicas {
		placed = append(placed, r.Name)
	}
	if slices.Sort(placed); !slices.Equal(placed, natsNodes) {
		t.Errorf("stream with 3 replicas placed on %v, want %v", placed, natsNodes)
	}
	for _, s := range servers {
		if got := s.NumRoutes(); got < len(natsNodes)-1 {
			t.Errorf("%s: %d routes, want %d", s.Name(), got, len(natsNodes)-1)
		}
	}

	// A route that does not log in is refused.
	for _, who := range []*url.Userinfo{nil, url.UserPassword("route", "wrong")} {
		if err := routeLogin(routePorts["nats"], who); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
			t.Errorf("route login as %v: %v, want Authorization Violation", who, err)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(testinfra.FreeAddr(t))
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// routeLogin connects to a route port as a server would and returns the
// server's error, if any, after its CONNECT.
func routeLogin(port int, who *url.Userinfo) error {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil { // INFO
		return err
	}
	user, pass := "", ""
	if who != nil {
		user = who.Username()
		pass, _ = who.Password()
	}
	if _, err := fmt.Fprintf(conn, "CONNECT {\"user\":%q,\"pass\":%q,\"name\":\"intruder\",\"cluster\":\"shopfloor\"}\r\nPING\r\n", user, pass); err != nil {
		return err
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("connection closed without an answer: %w", err)
		}
		switch {
		case strings.HasPrefix(line, "-ERR"):
			return fmt.Errorf("%s", strings.TrimSpace(line))
		case strings.HasPrefix(line, "PONG"):
			return nil
		}
	}
}

// servicesOf yields every service of each project (a name once per
// project it is in).
func servicesOf(projects ...*types.Project) iter.Seq2[string, types.ServiceConfig] {
	return func(yield func(string, types.ServiceConfig) bool) {
		for _, p := range projects {
			for name, s := range p.Services {
				if !yield(name, s) {
					return
				}
			}
		}
	}
}
