package email

import (
	"context"
	"errors"

	"github.com/emersion/go-smtp"

	"github.com/shopfloor/shopfloor/pkg/breaker"
)

// Guarded is a Sender whose sessions report to a circuit breaker
// (pkg/breaker) and that refuses to start one while it is open. The e-mail
// worker's jobqueue.BreakerGate reads the same breaker, so an SMTP outage
// pauses the worker (the jobs wait in the queue, spending no attempt).
//
// What trips it (IsOutage): failures to reach or set up a session
// (connect, TLS, greeting, AUTH), a 421 "service not available" at any
// stage, and network errors and timeouts mid-session. A permanent refusal
// of one message (5xx to MAIL, RCPT or DATA) and other per-message replies
// prove the server works and count as a success, as does an acceptance. A
// session cut short by the caller's own context counts as neither.
//
// A refused send returns a *SendError at StageConnect whose Err is
// breaker.ErrOpen: retryable, nothing was sent.
type Guarded struct {
	s interface {
		Send(ctx context.Context, m Message, accepted func() error) error
	}
	b *breaker.Breaker
}

// NewGuarded returns s behind b.
func NewGuarded(s *Sender, b *breaker.Breaker) *Guarded { return &Guarded{s: s, b: b} }

// Send is Sender.Send behind the breaker.
func (g *Guarded) Send(ctx context.Context, m Message, accepted func() error) error {
	if err := g.b.Allow(); err != nil {
		return &SendError{Stage: StageConnect, Err: err}
	}
	err := g.s.Send(ctx, m, accepted)
	g.b.Observe(ctx, err, IsOutage)
	return err
}

// IsOutage reports whether err, from Send, says the SMTP server is
// unavailable rather than answering about this message.
func IsOutage(err error) bool {
	var se *SendError
	if err == nil || errors.Is(err, ErrAcceptedNotRecorded) || !errors.As(err, &se) {
		return false
	}
	var reply *smtp.SMTPError
	if !errors.As(se.Err, &reply) {
		return true // no reply: refused, reset, timed out
	}
	switch se.Stage {
	case StageConnect, StageTLS, StageHello, StageAuth:
		return true
	}
	return reply.Code == 421
}
