package psp

import (
	"context"

	"github.com/shopfloor/shopfloor/pkg/breaker"
)

// Guarded is a Client whose calls report to a circuit breaker (pkg/breaker)
// and are refused without a request while it is open. The breaker is the
// one the charge and refund workers' jobqueue.BreakerGate reads, so an
// outage of the provider pauses them (the jobs wait in their queues,
// spending no attempt) instead of every job burning its retries.
//
// What trips it (IsOutage): 5xx and connection failures (ClassTransient),
// timeouts and lost answers (ClassAmbiguous) and 429s (ClassRateLimited;
// a storm of them trips it, one is counted). A decline or a rejected
// request (ClassDeclined, ClassInvalid, ErrNotFound) proves the provider
// works and counts as a success. A call cut short by the caller's own
// context (shutdown) counts as neither.
//
// A refused call returns a *TransportError with MaybeProcessed false whose
// Err is breaker.ErrOpen: ClassTransient, nothing was sent.
type Guarded struct {
	c *Client
	b *breaker.Breaker
}

// NewGuarded returns c behind b.
func NewGuarded(c *Client, b *breaker.Breaker) *Guarded { return &Guarded{c: c, b: b} }

// Charge is Client.Charge behind the breaker.
func (g *Guarded) Charge(ctx context.Context, idempotencyKey string, req ChargeRequest) (Charge, error) {
	if err := g.allow("charge"); err != nil {
		return Charge{}, err
	}
	ch, err := g.c.Charge(ctx, idempotencyKey, req)
	g.report(ctx, err)
	return ch, err
}

// FindCharge is Client.FindCharge behind the breaker.
func (g *Guarded) FindCharge(ctx context.Context, idempotencyKey string) (Charge, error) {
	if err := g.allow("find charge"); err != nil {
		return Charge{}, err
	}
	ch, err := g.c.FindCharge(ctx, idempotencyKey)
	g.report(ctx, err)
	return ch, err
}

// Refund is Client.Refund behind the breaker.
func (g *Guarded) Refund(ctx context.Context, idempotencyKey string, req RefundRequest) (Refund, error) {
	if err := g.allow("refund"); err != nil {
		return Refund{}, err
	}
	rf, err := g.c.Refund(ctx, idempotencyKey, req)
	g.report(ctx, err)
	return rf, err
}

func (g *Guarded) allow(op string) error {
	if err := g.b.Allow(); err != nil {
		return &TransportError{Op: op, Err: err}
	}
	return nil
}

func (g *Guarded) report(ctx context.Context, err error) { g.b.Observe(ctx, err, IsOutage) }

// IsOutage reports whether err says the provider is failing (as opposed
// to answering): ClassTransient, ClassAmbiguous or ClassRateLimited.
func IsOutage(err error) bool {
	switch Classify(err) {
	case ClassTransient, ClassAmbiguous, ClassRateLimited:
		return true
	}
	return false
}
