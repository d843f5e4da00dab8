package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

// infrastructureError marks an error as a failure of something the handler
// depends on, not of the message.
type infrastructureError struct{ err error }

func (e *infrastructureError) Error() string { return "infrastructure: " + e.err.Error() }
func (e *infrastructureError) Unwrap() error { return e.err }

// Infrastructure marks err as a failure of a dependency of the handler (a
// database, a broker, another service that answered 503), not of the
// message: the group keeps the message and retries it in the process until
// the dependency is back, without spending its delivery budget (package
// doc, "Errors that are not the message's fault"). Use it for failures
// IsInfrastructure does not recognise by itself. Infrastructure(nil) is nil.
// The mark survives wrapping with %w; Permanent wins over it.
func Infrastructure(err error) error {
	if err == nil {
		return nil
	}
	return &infrastructureError{err: err}
}

// IsInfrastructure is the default GroupConfig.Infrastructure. It reports
// whether err, or an error it wraps, says that a dependency of the handler
// failed rather than the message:
//
//   - an error marked with Infrastructure;
//   - a connection that could not be made or broke mid-request
//     (httpkit.ConnectionLost: pgconn connect errors and closed
//     connections, unexpected EOF, refused or reset connections, broken
//     pipes) and every net.Error, timeouts included;
//   - a statement or transaction PostgreSQL ended by a session timeout
//     (httpkit.DatabaseTimedOut: statement, lock, idle-in-transaction) or
//     refused for its own state: SQLSTATE class 08 (connection exception),
//     class 53 (insufficient resources, e.g. too many connections), 57P01
//     to 57P03 (shutting down, crashed, starting up);
//   - context.DeadlineExceeded: a dependency call that ran out of its own
//     time (the group does not apply this to a handler that ran out of
//     HandlerTimeout; see GroupConfig.Infrastructure);
//   - NATS: a closed, draining, reconnecting or stale connection, no
//     servers, a request timeout, no responders, no response from a stream,
//     a server shutting down, a consumer leadership change, and JetStream
//     API errors with code 503.
//
// Anything else, decode errors and bugs included, is the message's failure.
func IsInfrastructure(err error) bool {
	if err == nil {
		return false
	}
	var ie *infrastructureError
	if errors.As(err, &ie) || httpkit.ConnectionLost(err) || httpkit.DatabaseTimedOut(err) ||
		errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "53") ||
			pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	for _, target := range natsUnavailable {
		if errors.Is(err, target) {
			return true
		}
	}
	var ae *jetstream.APIError
	return errors.As(err, &ae) && ae.Code == 503
}

// natsUnavailable are the NATS errors that mean the broker could not be
// reached or could not answer.
var natsUnavailable = []error{
	nats.ErrConnectionClosed, nats.ErrConnectionDraining, nats.ErrConnectionReconnecting,
	nats.ErrDisconnected, nats.ErrStaleConnection, nats.ErrNoServers, nats.ErrMaxConnectionsExceeded,
	nats.ErrTimeout, nats.ErrNoResponders,
	jetstream.ErrNoStreamResponse, jetstream.ErrServerShutdown, jetstream.ErrConsumerLeadershipChanged,
	jetstream.ErrNoHeartbeat,
}

// handlerTimeoutError is the error of a handler call that ran out of
// HandlerTimeout. It is never an infrastructure error: the group cannot
// tell a dependency that hangs from a message that makes the handler too
// slow, and only the budget ends the latter.
type handlerTimeoutError struct {
	err   error
	limit time.Duration
}

func (e *handlerTimeoutError) Error() string {
	return fmt.Sprintf("handler timed out (HandlerTimeout %s): %v", e.limit, e.err)
}
func (e *handlerTimeoutError) Unwrap() error { return e.err }

// handlerResult marks err as a handler timeout when the handler's own
// deadline (hctx, HandlerTimeout) passed while the group (ctx) runs on.
func (g *Group) handlerResult(ctx, hctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || !errors.Is(hctx.Err(), context.DeadlineExceeded) {
		return err
	}
	return &handlerTimeoutError{err: err, limit: g.cfg.HandlerTimeout}
}

// infrastructure reports whether a handler error is a dependency's
// failure, which makes the partition wait instead of spending the budget.
// A permanent error or a handler timeout never is.
func (g *Group) infrastructure(err error) bool {
	var to *handlerTimeoutError
	if err == nil || IsPermanent(err) || errors.As(err, &to) {
		return false
	}
	return g.cfg.Infrastructure(err)
}

// Handler call outcomes for stream_handler_duration_seconds.
const (
	outcomeAck         = "ack"
	outcomeRetry       = "retry"
	outcomeDeadLetter  = "dead_letter"
	outcomeHandedBack  = "handed_back"
	outcomeInfraFailed = "infrastructure_retry"
)

// infraWait is a partition waiting on a dependency: its message failed
// with an infrastructure error and is retried in the process, held and
// heartbeated, until a handler call ends otherwise or the group stops.
type infraWait struct {
	g       *Group
	since   time.Time // zero: not waiting
	retries int
}

// retry records an infrastructure error of the partition's message and
// waits before the next call (InfrastructureBackoff); it reports false when
// ctx ended first. The first error starts the wait: the gauge goes up and
// a warning is logged.
func (w *infraWait) retry(ctx context.Context, log *slog.Logger, err error) bool {
	if w.since.IsZero() {
		w.since = w.g.cfg.Now()
		w.g.metrics.waiting(w.g.cfg, 1)
		log.WarnContext(ctx, "dependency unavailable: the partition waits and retries its message (no delivery budget spent)", "error", err)
	}
	w.retries++
	w.g.metrics.infraRetry(w.g.cfg)
	log.DebugContext(ctx, "infrastructure error; retrying in-process", "retries", w.retries, "error", err)
	return w.g.cfg.InfrastructureBackoff.Sleep(ctx, w.retries) == nil
}

// end ends the wait, if the partition was waiting: the gauge goes down and
// the time waited is logged. outcome is how the message was settled.
func (w *infraWait) end(ctx context.Context, log *slog.Logger, outcome string) {
	if w.since.IsZero() {
		return
	}
	waited := w.g.cfg.Now().Sub(w.since)
	w.g.metrics.waiting(w.g.cfg, -1)
	if outcome == outcomeHandedBack {
		log.InfoContext(ctx, "group stopping while the partition waits on a dependency; message handed back", "waited", waited, "retries", w.retries)
	} else {
		log.InfoContext(ctx, "partition resumed after waiting on a dependency", "waited", waited, "retries", w.retries, "outcome", outcome)
	}
	w.since, w.retries = time.Time{}, 0
}
