package stream

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/backoff"
)

// Acks lost with a consumer leader.
//
// On a replicated stream (ADR 0041) an acknowledgement goes to the
// consumer's leader. When that node dies, acks sent to it are lost and a
// confirmed ack (+ACK as a request) fails: no responders until a new leader
// is elected, or a timeout. The new leader still counts those messages as
// pending, so the partition would wait for their redelivery after AckWait
// (30 s by default): the gate of a batch group will not go past them, and a
// group of one message in flight has no slot free. reconfirm sends the acks
// again until the broker confirms them; the new leader takes an ack for a
// message it counts as pending, and confirms (without effect) one for a
// message already settled, so sending it again is safe. Give-up is bounded
// by AckWait: by then the broker delivers the message again anyway, and
// every handler is idempotent (delivery is at-least-once).

// ackRetry paces the attempts: a leader election takes a few seconds.
var ackRetry = backoff.Policy{Initial: 50 * time.Millisecond, Max: time.Second}

// ackAttemptTimeout bounds one confirmed ack of a retry.
const ackAttemptTimeout = time.Second

// reconfirm sends a confirmed ack for each of msgs, in stream order, until
// the broker confirms all of them, AckWait passes or the group stops. It
// reports whether every ack was confirmed.
func (g *Group) reconfirm(ctx context.Context, log *slog.Logger, msgs []jetstream.Msg) bool {
	if len(msgs) == 0 {
		return true
	}
	nc := g.js.Conn()
	start := time.Now()
	deadline := start.Add(g.cfg.AckWait)
	left := msgs
	var err error
	for attempt := 1; ; attempt++ {
		for len(left) > 0 {
			actx, cancel := context.WithTimeout(ctx, ackAttemptTimeout)
			_, err = nc.RequestWithContext(actx, left[0].Reply(), ackAck)
			cancel()
			if err != nil {
				// The rest would meet the same: wait for the leader.
				break
			}
			left = left[1:]
		}
		if len(left) == 0 {
			g.metrics.reconfirmed(g.cfg, outcomeConfirmed)
			log.InfoContext(ctx, "acks confirmed again (the consumer's leader changed)",
				"messages", len(msgs), "attempts", attempt, "after", time.Since(start).Round(time.Millisecond))
			return true
		}
		if time.Now().After(deadline) {
			break
		}
		if ackRetry.Sleep(ctx, attempt) != nil {
			break
		}
	}
	g.metrics.reconfirmed(g.cfg, outcomeGaveUp)
	log.WarnContext(ctx, "acks still not confirmed; those messages will be delivered again after AckWait",
		"unconfirmed", len(left), "of", len(msgs), "error", err)
	return false
}

// ackAck is the body of a confirmed acknowledgement (nats-server's AckAck).
var ackAck = []byte("+ACK")

const (
	outcomeConfirmed = "confirmed"
	outcomeGaveUp    = "gave_up"
)
