package testinfra

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/natsauth"
)

// NATSPrefix is a test's own name space on a shared NATS JetStream server.
type NATSPrefix struct {
	// Conn and JS are closed when the test ends.
	Conn *nats.Conn
	JS   jetstream.JetStream
	// URL is the server address, to hand to code under test.
	URL string
	// Prefix is unique to the test: upper-case letters and digits, valid in
	// stream, consumer and subject names. Streams whose names start with it
	// are deleted when the test ends.
	Prefix string
}

// Name returns a stream (or consumer, or subject token) name unique to the
// test: Prefix + "_" + base, e.g. Name("ORDERS") → "T3FA9C1_ORDERS".
func (n *NATSPrefix) Name(base string) string { return n.Prefix + "_" + base }

// NATS returns a JetStream connection and a name prefix unique to this test,
// on the server from SHOPFLOOR_TEST_NATS_URL or else an embedded server
// shared by the test binary.
func NATS(tb testing.TB) *NATSPrefix {
	tb.Helper()
	srvURL, err := natsServer()
	if err != nil {
		unavailable(tb, err.Error())
	}
	nc, js := connect(tb, srvURL)
	prefix := "T" + strings.ToUpper(randomHex(4))
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		names := js.StreamNames(ctx)
		var doomed []string
		for name := range names.Name() {
			if strings.HasPrefix(name, prefix+"_") {
				doomed = append(doomed, name)
			}
		}
		for _, name := range doomed {
			if err := js.DeleteStream(ctx, name); err != nil {
				tb.Errorf("testinfra: delete stream %s: %v", name, err)
			}
		}
	})
	return &NATSPrefix{Conn: nc, JS: js, URL: srvURL, Prefix: prefix}
}

func connect(tb testing.TB, srvURL string) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(srvURL, nats.Name("test "+tb.Name()), nats.Timeout(3*time.Second))
	if err != nil {
		tb.Fatalf("testinfra: connect to NATS at %s: %v", srvURL, err)
	}
	tb.Cleanup(nc.Close)
	// Requests without a deadline of their own wait up to 30s, not the
	// library's 5s: the shared server runs inside a race-instrumented test
	// binary next to other packages' tests, where a publish acknowledgement
	// can take seconds. Tests of timeouts pass their own contexts.
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(30*time.Second))
	if err != nil {
		tb.Fatalf("testinfra: JetStream: %v", err)
	}
	return nc, js
}

var natsShared struct {
	mu   sync.Mutex
	done bool
	url  string
	err  error
}

// natsServer returns the address from env, or starts an embedded server once
// per test binary.
func natsServer() (string, error) {
	natsShared.mu.Lock()
	defer natsShared.mu.Unlock()
	if natsShared.done {
		return natsShared.url, natsShared.err
	}
	natsShared.done = true
	if u := os.Getenv(EnvNATSURL); u != "" {
		natsShared.url, natsShared.err = u, checkJetStream(u)
		return natsShared.url, natsShared.err
	}
	dir, err := os.MkdirTemp("", "shopfloor-nats-")
	if err != nil {
		natsShared.err = err
		return "", err
	}
	s, err := startEmbedded(serverConf{}, dir, -1)
	if err != nil {
		_ = os.RemoveAll(dir)
		natsShared.err = err
		return "", err
	}
	onShutdown(func() {
		s.Shutdown()
		s.WaitForShutdown()
		_ = os.RemoveAll(dir)
	})
	natsShared.url = s.ClientURL()
	return natsShared.url, nil
}

// checkJetStream fails with an actionable message when the server is missing,
// too old or has JetStream off.
func checkJetStream(u string) error {
	nc, err := nats.Connect(u, nats.Timeout(3*time.Second))
	if err != nil {
		return fmt.Errorf("cannot reach NATS at %s (from %s): %w\n"+
			"Start nats-server 2.11+ with JetStream (make tools installs one: bin/nats-server -js -a 127.0.0.1 -p 14222),\n"+
			"or unset %s to use the embedded server", u, EnvNATSURL, err, EnvNATSURL)
	}
	defer nc.Close()
	if v := nc.ConnectedServerVersion(); !versionAtLeast(v, 2, 11) {
		return fmt.Errorf("NATS at %s is %s; shopfloor needs 2.11 or newer (make tools installs one), or unset %s to use the embedded server", u, v, EnvNATSURL)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("NATS at %s has no JetStream: start it with -js: %w", u, err)
	}
	return nil
}

func versionAtLeast(v string, major, minor int) bool {
	var ma, mi, pa int
	if _, err := fmt.Sscanf(strings.TrimPrefix(v, "v"), "%d.%d.%d", &ma, &mi, &pa); err != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

// NATSServerOptions configures a private server from NewNATSServer.
type NATSServerOptions struct {
	// SyncAlways makes JetStream fsync every write before acknowledging it.
	// Default false: the server's default, a periodic sync (SyncInterval).
	SyncAlways bool
	// SyncInterval between fsyncs when SyncAlways is false; 0 keeps the
	// server default (2 minutes).
	SyncInterval time.Duration
	// Authorization, when set, runs the server with the matrix's users
	// and permissions (its Conf, as deployments do) and a random password
	// per user: Connect then connects as the matrix's operator user,
	// ConnectAs and Env as any user.
	Authorization *natsauth.Matrix
}

// NATSServer is an embedded nats-server owned by one test, for tests that
// stop and start the broker. It keeps its port and store across restarts, so
// clients reconnect and JetStream recovers its streams.
type NATSServer struct {
	tb   testing.TB
	opts NATSServerOptions
	dir  string
	port int

	mu  sync.Mutex
	srv *server.Server

	passwords map[string]string // of Authorization's users
}

// NewNATSServer starts a private embedded JetStream server, stopped when the
// test ends.
func NewNATSServer(tb testing.TB, opts NATSServerOptions) *NATSServer {
	tb.Helper()
	n := &NATSServer{tb: tb, opts: opts, dir: tb.TempDir(), port: -1}
	if m := opts.Authorization; m != nil {
		n.passwords = map[string]string{}
		for _, u := range m.Users {
			n.passwords[u.Name] = randomHex(16)
		}
	}
	n.Start()
	tb.Cleanup(n.Stop)
	return n
}

// URL is the client address; it does not change across restarts.
func (n *NATSServer) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// Connect returns a connection that reconnects forever across restarts.
// Publishing while the server is down fails at once instead of being
// buffered for the reconnect, as a test of broker outages wants. With
// Authorization it connects as the matrix's operator.
func (n *NATSServer) Connect() (*nats.Conn, jetstream.JetStream) {
	n.tb.Helper()
	user := ""
	if m := n.opts.Authorization; m != nil {
		for _, u := range m.Users {
			if u.Operator {
				user = u.Name
			}
		}
	}
	return n.ConnectAs(user)
}

// Config is how user reaches the server (natsauth.Config: URL, user,
// password); user "" is no user.
func (n *NATSServer) Config(user string) natsauth.Config {
	if user == "" {
		return natsauth.Config{URL: n.URL()}
	}
	pw, ok := n.passwords[user]
	if !ok {
		n.tb.Fatalf("testinfra: the NATS server has no user %q", user)
	}
	return natsauth.Config{URL: n.URL(), User: user, Password: pw}
}

// Env is the environment of a process that connects as user: NATS_URL,
// NATS_USER and NATS_PASSWORD.
func (n *NATSServer) Env(user string) map[string]string {
	c := n.Config(user)
	return map[string]string{"NATS_URL": c.URL, "NATS_USER": c.User, "NATS_PASSWORD": c.Password}
}

// ConnectAs is Connect as user (one of Authorization's; "" is none).
func (n *NATSServer) ConnectAs(user string) (*nats.Conn, jetstream.JetStream) {
	n.tb.Helper()
	nc, err := n.Config(user).Connect("test "+n.tb.Name(), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		n.tb.Fatalf("testinfra: %v", err)
	}
	n.tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		n.tb.Fatalf("testinfra: JetStream: %v", err)
	}
	return nc, js
}

// Start starts the server if it is stopped.
func (n *NATSServer) Start() {
	n.tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return
	}
	s, err := startEmbedded(n.conf(), n.dir, n.port)
	if err != nil {
		n.tb.Fatalf("testinfra: start embedded nats-server: %v", err)
	}
	n.srv = s
	n.port = s.Addr().(*net.TCPAddr).Port
}

// Stop shuts the server down (like a clean process exit) if it runs.
func (n *NATSServer) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}

// conf is the configuration text of a server with Authorization: each
// password as a variable the matrix's Conf refers to, then the Conf.
func (n *NATSServer) conf() serverConf {
	c := serverConf{opts: n.opts}
	if m := n.opts.Authorization; m != nil {
		var b strings.Builder
		for _, u := range m.Users {
			fmt.Fprintf(&b, "%s: %q\n", natsauth.PasswordVar(u.Name), n.passwords[u.Name])
		}
		c.text = b.String() + m.Conf()
	}
	return c
}

// serverConf is what startEmbedded starts: options and configuration
// text (read first; the options win).
type serverConf struct {
	opts NATSServerOptions
	text string
}

func startEmbedded(c serverConf, dir string, port int) (*server.Server, error) {
	o := c.opts
	opts := &server.Options{}
	if c.text != "" {
		path := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(path, []byte(c.text), 0o600); err != nil {
			return nil, err
		}
		var err error
		if opts, err = server.ProcessConfigFile(path); err != nil {
			return nil, fmt.Errorf("nats-server configuration: %w", err)
		}
	}
	opts.ServerName, opts.Host, opts.Port = "shopfloor-test", "127.0.0.1", port
	opts.JetStream, opts.StoreDir = true, filepath.Join(dir, "js")
	opts.NoLog, opts.NoSigs = true, true
	opts.SyncAlways, opts.SyncInterval = o.SyncAlways, o.SyncInterval
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	if err := serve(s); err != nil {
		return nil, err
	}
	return s, nil
}

// serve starts s and waits (10 s at most) until it accepts connections.
func serve(s *server.Server) error {
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("embedded nats-server %s not ready after 10s", s.Name())
	}
	return nil
}
