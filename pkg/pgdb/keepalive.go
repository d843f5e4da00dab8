package pgdb

import (
	"fmt"
	"net"
	"time"
)

// KeepAlive is the TCP keepalive of every connection a pool opens (client
// side): after 15s without traffic the kernel probes the server every 5s
// and drops the connection after 4 unanswered probes, so a server host
// that vanished (power loss, a network partition, a fail-over that moved
// the address) is noticed within about 35s on an idle connection, not
// after the system default of two hours (Linux, for sockets that do not
// ask) or Go's 2.5 minutes. A connection that is merely idle is never
// dropped: the server's kernel answers the probes.
var KeepAlive = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 4}

// ServerKeepAliveSQL sets the same keepalive on the server's side of one
// session, plus tcp_user_timeout (PostgreSQL 12+, Linux): the server drops
// the session when its client host vanishes, releasing what the session
// holds (a session advisory lock: the outbox relay's leadership). Run it
// on connections held for a long time; over a Unix socket the server
// ignores these settings.
var ServerKeepAliveSQL = fmt.Sprintf(
	`SET tcp_keepalives_idle = %d; SET tcp_keepalives_interval = %d; SET tcp_keepalives_count = %d; SET tcp_user_timeout = %d`,
	int(KeepAlive.Idle.Seconds()), int(KeepAlive.Interval.Seconds()), KeepAlive.Count,
	(KeepAlive.Idle + time.Duration(KeepAlive.Count)*KeepAlive.Interval).Milliseconds())

// dialer dials with KeepAlive.
func dialer() *net.Dialer {
	return &net.Dialer{KeepAliveConfig: KeepAlive}
}
