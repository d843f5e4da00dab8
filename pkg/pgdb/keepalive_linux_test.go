//go:build linux

package pgdb_test

import (
	"context"
	"net"
	"syscall"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestPoolConnectionsHaveKeepAlive: a pool's TCP connection probes an
// idle peer after KeepAlive.Idle, every KeepAlive.Interval, KeepAlive.Count
// times (the socket options the kernel acts on), and the server side of a
// session takes ServerKeepAliveSQL.
func TestPoolConnectionsHaveKeepAlive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, nil)
	pool, err := pgdb.Open(ctx, pgdb.Config{URL: db.URL, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	tcp, ok := c.Conn().PgConn().Conn().(*net.TCPConn)
	if !ok {
		t.Skipf("connection is %T, not TCP", c.Conn().PgConn().Conn())
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ level, opt, val int }{
		"SO_KEEPALIVE":  {syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		"TCP_KEEPIDLE":  {syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, int(pgdb.KeepAlive.Idle.Seconds())},
		"TCP_KEEPINTVL": {syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, int(pgdb.KeepAlive.Interval.Seconds())},
		"TCP_KEEPCNT":   {syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, pgdb.KeepAlive.Count},
	}
	for name, w := range want {
		var got int
		var gerr error
		if err := raw.Control(func(fd uintptr) { got, gerr = syscall.GetsockoptInt(int(fd), w.level, w.opt) }); err != nil || gerr != nil {
			t.Fatalf("%s: %v %v", name, err, gerr)
		}
		if got != w.val {
			t.Errorf("%s = %d, want %d", name, got, w.val)
		}
	}

	if _, err := c.Exec(ctx, pgdb.ServerKeepAliveSQL); err != nil {
		t.Fatal(err)
	}
	var idle, intvl, cnt, user string
	if err := c.QueryRow(ctx, `SELECT current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_interval'),
		current_setting('tcp_keepalives_count'), current_setting('tcp_user_timeout')`).Scan(&idle, &intvl, &cnt, &user); err != nil {
		t.Fatal(err)
	}
	if idle != "15" || intvl != "5" || cnt != "4" || user != "35000" {
		t.Errorf("server keepalive idle %s interval %s count %s user timeout %s; want 15 5 4 35000 (seconds, ms)", idle, intvl, cnt, user)
	}
}
