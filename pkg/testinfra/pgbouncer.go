package testinfra

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PgBouncerConfig tunes the pooler PgBouncer starts. Zero values take the
// defaults.
type PgBouncerConfig struct {
	// PoolSize is default_pool_size: server connections per (database,
	// user). Default 2, small on purpose: clients share server sessions
	// the way they do in production, so code that relies on its session
	// (advisory locks, LISTEN, SET) fails in tests too.
	PoolSize int
}

// PgBouncer starts pgbouncer (Debian's package, 1.18; make tools installs
// it) in transaction pooling mode in front of d's server and returns a URL
// that reaches d through it. The process is stopped when the test ends.
//
// Its settings are what a production deployment in front of shopfloor
// needs (ADR 0042): auth_type trust (the test server trusts local
// connections; the user is listed in its own auth file), and
// ignore_startup_parameters naming the session timeouts pkg/pgdb sends in
// the startup message, which PgBouncer 1.18 otherwise refuses; through
// the pooler those timeouts do not apply (set them per role on the
// server). The URL carries no default_query_exec_mode: add
// &default_query_exec_mode=exec for pgx (see ADR 0042) or leave it out to
// see the named prepared statements fail.
//
// A missing pgbouncer binary fails the test (never a skip): run make tools.
func PgBouncer(tb testing.TB, d *Database, cfg PgBouncerConfig) string {
	tb.Helper()
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = 2
	}
	bin, err := pgbouncerBinary()
	if err != nil {
		tb.Fatalf("testinfra: %v", err)
	}
	cc, err := pgx.ParseConfig(d.URL)
	if err != nil {
		tb.Fatalf("testinfra: parse the test database URL: %v", err)
	}
	u, err := url.Parse(d.URL)
	if err != nil || u.Scheme == "" {
		tb.Fatalf("testinfra: PgBouncer needs a URL-form database URL")
	}
	port := freePort(tb)
	exited, log := startPgBouncer(tb, bin, pgbouncerIni(tb, cc, port, cfg.PoolSize))
	u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	bouncerURL := u.String()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, bouncerURL+"&default_query_exec_mode=simple_protocol")
		if err == nil {
			_ = conn.Close(ctx)
			cancel()
			return bouncerURL
		}
		cancel()
		select {
		case werr := <-exited:
			tb.Fatalf("testinfra: pgbouncer exited (%v):\n%s", werr, log.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testinfra: pgbouncer on port %d does not answer: %v\n%s", port, err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pgbouncerIni writes pgbouncer's configuration and auth file for the
// server cc names into a temporary directory and returns the ini's path.
func pgbouncerIni(tb testing.TB, cc *pgx.ConnConfig, port, poolSize int) string {
	tb.Helper()
	dir := tb.TempDir()
	userlist := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(userlist, fmt.Appendf(nil, "%q %q\n", cc.User, cc.Password), 0o600); err != nil {
		tb.Fatal(err)
	}
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%d
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 200
ignore_startup_parameters = extra_float_digits,statement_timeout,lock_timeout,idle_in_transaction_session_timeout
server_login_retry = 1
`, cc.Host, cc.Port, port, userlist, poolSize)
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(iniPath, []byte(ini), 0o600); err != nil {
		tb.Fatal(err)
	}
	return iniPath
}

// startPgBouncer starts bin with iniPath and stops it when the test ends;
// exited gets its exit, log its output.
func startPgBouncer(tb testing.TB, bin, iniPath string) (exited <-chan error, log *Buffer) {
	tb.Helper()
	args := []string{iniPath}
	if os.Geteuid() == 0 {
		// pgbouncer refuses to run as root; it reads its files first.
		args = []string{"-u", "nobody", iniPath}
	}
	cmd := exec.Command(bin, args...) //nolint:gosec // G204: the binary found above, our own ini
	log = &Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("testinfra: start pgbouncer: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT) // immediate shutdown
		select {
		case <-done: //nolint:errcheck // ended by the signal: not a failure
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done //nolint:errcheck // killed
		}
		if tb.Failed() {
			tb.Logf("pgbouncer's log:\n%s", log.String())
		}
	})
	return done, log
}

// pgbouncerBinary finds pgbouncer on PATH or where Debian puts it
// (/usr/sbin, which is not on every user's PATH).
func pgbouncerBinary() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/pgbouncer"
	if _, err := os.Stat(debian); err == nil {
		return debian, nil
	}
	return "", errors.New("pgbouncer is not installed (not on PATH, no " + debian + "): run make tools, which installs Debian's pgbouncer package")
}
