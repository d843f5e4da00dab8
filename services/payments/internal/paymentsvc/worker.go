package paymentsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/services/payments/internal/payment"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentpg"
	"github.com/shopfloor/shopfloor/services/payments/internal/psp"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// Aggregate versions of PAYMENTS events of one payment: the first outcome,
// a reconciliation after a redrive (ADR 0012), the refund.
const (
	versionOutcome   = 1
	versionReconcile = 2
	versionRefunded  = 3
)

// HandleCharge is the charge queue's jobqueue.Handler. For one attempt:
//
//   - final already (a redelivery after the result committed): done;
//   - charge with the attempt id as the idempotency key; an ambiguous
//     answer (timeout, connection lost after sending) is resolved by
//     FindCharge before anything else: found → that is the result, not
//     found → retry later with the same key;
//   - succeeded or declined: record it, delete the job and write
//     payment.succeeded / payment.failed, in one transaction;
//   - 429: retry after the provider's Retry-After (the worker adds
//     jitter); 5xx, connection refused, unresolved ambiguity: retry with
//     capped exponential backoff and full jitter;
//   - invalid request: record failed (invalid_request), write
//     payment.failed and move the job to the DLQ with the error class, the
//     attempt count and the trace id, in one transaction;
//   - the last allowed delivery still failing: the outcome is unknown (an
//     earlier attempt's charge may have landed), so nothing is claimed:
//     the payment stays pending, the Reconciler owns it (handOver) and
//     settles it with the provider's answer, never a guess;
//   - an attempt that failed with exhausted retries and is redriven from
//     the DLQ is reconciled, never charged anew: FindCharge, and a charge
//     found is recorded and reported (payment.succeeded), which orders
//     turns into a refund when the order can no longer take it.
func (s *Service) HandleCharge(ctx context.Context, m jobqueue.Message) error {
	if s.provider == nil {
		return errNoProvider
	}
	var job chargeJob
	if err := json.Unmarshal(m.Body, &job); err != nil || job.PaymentID == "" {
		return &jobqueue.PermanentError{Err: fmt.Errorf("charge job %d: unreadable body", m.ID)}
	}
	p, err := paymentpg.Get(ctx, s.pool, job.PaymentID)
	if errors.Is(err, payment.ErrNotFound) {
		return &jobqueue.PermanentError{Err: err}
	}
	if err != nil {
		return err
	}
	if p.Final() {
		return nil
	}
	reconcile := p.Status == paymentsapi.StatusFailed // retries_exhausted, redriven
	var ch psp.Charge
	call := func(op string, fn func() error) error {
		return s.recordCall(ctx, p.ID, m.ReceiveCount, op, fn)
	}
	findCharge := func() error {
		return call(paymentsapi.OpFindCharge, func() (err error) { ch, err = s.provider.FindCharge(ctx, p.ID); return err })
	}
	if reconcile {
		err = findCharge()
		if errors.Is(err, psp.ErrNotFound) {
			s.log.InfoContext(ctx, "redriven payment was never charged; it stays failed", "payment", p.ID)
			return nil
		}
	} else {
		err = call(paymentsapi.OpCharge, func() (err error) {
			ch, err = s.provider.Charge(ctx, p.ID, psp.ChargeRequest{AmountMinor: p.AmountMinor, Currency: p.Currency,
				PaymentMethod: p.PaymentMethod, Reference: p.OrderID})
			return err
		})
		if psp.Classify(err) == psp.ClassAmbiguous {
			s.log.InfoContext(ctx, "charge outcome unknown; asking the provider", "payment", p.ID, "err", err)
			err = findCharge()
			if errors.Is(err, psp.ErrNotFound) {
				err = fmt.Errorf("charge %s: outcome unknown and the provider has no charge for the key yet: %w", p.ID, err)
			}
		}
	}
	class := psp.Classify(err)
	var declined *psp.DeclinedError
	switch {
	case err == nil:
		s.count(ChargeQueue, ch.Status)
		return s.recordCharge(ctx, m, p, ch, reconcile)
	case errors.As(err, &declined):
		s.count(ChargeQueue, "declined")
		return s.recordCharge(ctx, m, p, declined.Charge, reconcile)
	case class == psp.ClassInvalid:
		s.count(ChargeQueue, "invalid")
		return s.giveUp(ctx, m, p, paymentsapi.ReasonInvalidRequest, class, err, reconcile)
	case m.ReceiveCount >= s.cfg.MaxReceives && reconcile:
		s.count(ChargeQueue, "exhausted")
		return s.giveUp(ctx, m, p, paymentsapi.ReasonRetriesExhausted, class, err, reconcile)
	case m.ReceiveCount >= s.cfg.MaxReceives:
		s.count(ChargeQueue, "handed_to_reconciler")
		return s.handOver(ctx, m, p, class, err)
	}
	s.count(ChargeQueue, class.String())
	var rl *psp.RateLimitedError
	if errors.As(err, &rl) && rl.RetryAfter > 0 {
		return &jobqueue.RetryError{After: rl.RetryAfter, Err: err}
	}
	return err // transient: the worker's backoff
}

// recordCharge stores the provider's charge (succeeded or declined),
// deletes the job and writes the event, in one transaction.
func (s *Service) recordCharge(ctx context.Context, m jobqueue.Message, p payment.Payment, ch psp.Charge, reconcile bool) error {
	next := p
	next.ChargeID, next.UpdatedAt = ch.ID, s.now().UTC()
	typ, version := paymentsapi.EventPaymentSucceeded, int64(versionOutcome)
	switch {
	case ch.Status == "succeeded":
		next.Status, next.DeclineCode, next.FailureReason = paymentsapi.StatusSucceeded, "", ""
		if reconcile {
			version = versionReconcile
		}
	case reconcile:
		// A declined charge behind an exhausted attempt: it stays failed;
		// payment.failed was sent when it was given up on.
		next.DeclineCode = ch.DeclineCode
		typ = ""
	default:
		next.Status, next.DeclineCode = paymentsapi.StatusFailed, ch.DeclineCode
		typ = paymentsapi.EventPaymentFailed
	}
	return s.finish(ctx, m, func(tx pgx.Tx) error {
		changed, err := paymentpg.Complete(ctx, tx, next)
		if err != nil || !changed || typ == "" {
			return err
		}
		return s.emit(ctx, tx, typ, next, version)
	}, "")
}

// handOver gives a charge whose outcome is unknown to the Reconciler: the
// payment stays pending (no payment.failed: the customer is never told
// "nothing was charged" while a charge may exist), is marked
// outcome_unknown_since, and its job is deleted, in one transaction. The
// reconciler looks it up after its grace period.
func (s *Service) handOver(ctx context.Context, m jobqueue.Message, p payment.Payment, class psp.Class, cause error) error {
	now := s.now().UTC()
	s.log.WarnContext(ctx, "charge outcome unknown after the last attempt; the reconciler settles it", "payment", p.ID, "order", p.OrderID,
		"attempts", m.ReceiveCount, "class", class.String(), "trace_id", trace.SpanContextFromContext(ctx).TraceID().String(), "err", cause)
	return s.finish(ctx, m, func(tx pgx.Tx) error {
		_, err := paymentpg.HandOver(ctx, tx, p.ID, now, now.Add(s.cfg.ReconcileGrace))
		return err
	}, "")
}

// giveUp records a final failure (unless the attempt is being reconciled:
// it failed already), writes payment.failed and moves the job to the DLQ
// with what an operator needs, in one transaction.
func (s *Service) giveUp(ctx context.Context, m jobqueue.Message, p payment.Payment, reason string, class psp.Class, cause error, reconcile bool) error {
	dlqReason := fmt.Sprintf("%s after %d attempts; class=%s; trace_id=%s; last error: %v",
		reason, m.ReceiveCount, class, trace.SpanContextFromContext(ctx).TraceID(), cause)
	s.log.WarnContext(ctx, "payment given up; job to the DLQ", "payment", p.ID, "order", p.OrderID, "reason", dlqReason)
	return s.finish(ctx, m, func(tx pgx.Tx) error {
		if reconcile {
			return nil
		}
		next := p
		next.Status, next.FailureReason, next.UpdatedAt = paymentsapi.StatusFailed, reason, s.now().UTC()
		changed, err := paymentpg.Complete(ctx, tx, next)
		if err != nil || !changed {
			return err
		}
		return s.emit(ctx, tx, paymentsapi.EventPaymentFailed, next, versionOutcome)
	}, dlqReason)
}

// finish runs record in a transaction that also deletes the job (or moves
// it to the DLQ with dlqReason), and tells the worker it is handled. A
// stale receipt (the visibility timeout passed and another delivery runs)
// is not an error: the record is guarded by a compare-and-set, and the
// other delivery deletes the job.
func (s *Service) finish(ctx context.Context, m jobqueue.Message, record func(pgx.Tx) error, dlqReason string) error {
	err := pgdb.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		if err := record(tx); err != nil {
			return err
		}
		var err error
		if dlqReason != "" {
			err = s.jobs.MoveToDeadLetter(ctx, tx, m.ReceiptHandle, truncate(dlqReason, 1000))
		} else {
			err = s.jobs.DeleteMessage(ctx, tx, m.ReceiptHandle)
		}
		if errors.Is(err, jobqueue.ErrStaleReceipt) {
			s.log.InfoContext(ctx, "job redelivered meanwhile; its next delivery finishes it", "queue", m.Queue, "id", m.ID)
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	return jobqueue.ErrHandled
}

// HandleRefund is the refund queue's jobqueue.Handler: refund the charge
// through the provider with the refund's own idempotency key
// (refund:<payment id>), then record it, mark the payment refunded, write
// payment.refunded and delete the job in one transaction. The provider
// never refunds more than the charge and answers a repeated key with the
// same refund, so retries (ambiguous answers included) are safe, and a
// refund is retried until it is done (RefundRetryMax caps the backoff).
// Only a refusal (invalid request, declined) marks it failed and moves the
// job to the DLQ for a person, who redrives it or abandons it with a
// reason (AbandonRefund). An abandoned refund's job is a no-op.
func (s *Service) HandleRefund(ctx context.Context, m jobqueue.Message) error {
	if s.provider == nil {
		return errNoProvider
	}
	var job refundJob
	if err := json.Unmarshal(m.Body, &job); err != nil || job.RefundID == "" {
		return &jobqueue.PermanentError{Err: fmt.Errorf("refund job %d: unreadable body", m.ID)}
	}
	r, err := paymentpg.GetRefund(ctx, s.pool, job.RefundID)
	if errors.Is(err, payment.ErrNotFound) {
		return &jobqueue.PermanentError{Err: err}
	}
	if err != nil {
		return err
	}
	if r.Status == "succeeded" || r.Status == "abandoned" {
		return nil
	}
	p, err := paymentpg.Get(ctx, s.pool, r.PaymentID)
	if err != nil {
		return err
	}
	var rf psp.Refund
	err = s.recordCall(ctx, p.ID, m.ReceiveCount, paymentsapi.OpRefund, func() (err error) {
		rf, err = s.provider.Refund(ctx, refundKeyStart+p.ID, psp.RefundRequest{ChargeID: p.ChargeID, AmountMinor: r.AmountMinor})
		return err
	})
	class := psp.Classify(err)
	now := s.now().UTC()
	s.count(RefundQueue, map[bool]string{true: "refunded", false: class.String()}[err == nil])
	switch {
	case err == nil:
		r.Status, r.ProviderRefundID = "succeeded", rf.ID
		return s.finish(ctx, m, func(tx pgx.Tx) error {
			changed, err := paymentpg.CompleteRefund(ctx, tx, r, now)
			if err != nil || !changed {
				return err
			}
			p.Status = paymentsapi.StatusRefunded
			return s.emit(ctx, tx, paymentsapi.EventPaymentRefunded, p, versionRefunded)
		}, "")
	case class == psp.ClassInvalid || class == psp.ClassDeclined:
		reason := fmt.Sprintf("refund refused after %d attempts; class=%s; trace_id=%s; last error: %v",
			m.ReceiveCount, class, trace.SpanContextFromContext(ctx).TraceID(), err)
		r.Status, r.FailureReason = "failed", truncate(err.Error(), 500)
		s.log.WarnContext(ctx, "refund given up; job to the DLQ", "payment", p.ID, "reason", reason)
		return s.finish(ctx, m, func(tx pgx.Tx) error {
			_, err := paymentpg.CompleteRefund(ctx, tx, r, now)
			return err
		}, reason)
	}
	// Transient, ambiguous (a repeated key returns the same refund) or
	// rate limited: retried until done, however long the provider is
	// away, with backoff capped at RefundRetryMax; only an operator ends
	// it (AbandonRefund).
	after := max(s.refundRetry.Delay(m.ReceiveCount), 10*time.Millisecond)
	var rl *psp.RateLimitedError
	if errors.As(err, &rl) && rl.RetryAfter > after {
		after = rl.RetryAfter
	}
	if m.ReceiveCount%20 == 0 {
		s.log.WarnContext(ctx, "refund still failing; retrying until it is done or abandoned", "refund", r.ID, "payment", p.ID,
			"attempts", m.ReceiveCount, "retry_in", after, "err", err)
	}
	return &jobqueue.RetryError{After: after, Err: err}
}

func (s *Service) count(queue, outcome string) { s.attempts.WithLabelValues(queue, outcome).Inc() }

// recordCall runs fn, one call to the provider, and records it in
// provider_calls with its outcome (paymentsapi.Outcome*), returning fn's
// error. The row is written outside the job's transaction and a failure
// to write it is logged, not returned: it is history for people, and the
// call has happened either way.
func (s *Service) recordCall(ctx context.Context, paymentID string, attempt int, op string, fn func() error) error {
	start := s.now()
	err := fn()
	c := paymentsapi.ProviderCall{Attempt: max(attempt, 1), Operation: op, Outcome: outcome(op, err),
		DurationMs: s.now().Sub(start).Milliseconds(), At: start.UTC()}
	var rl *psp.RateLimitedError
	if errors.As(err, &rl) {
		ms := rl.RetryAfter.Milliseconds()
		c.RetryAfterMs = &ms
	}
	if werr := paymentpg.InsertCall(ctx, s.pool, paymentID, c); werr != nil {
		s.log.WarnContext(ctx, "provider call not recorded", "payment", paymentID, "operation", op, "err", werr)
	}
	return err
}

// outcome names what a provider call's error means (psp.Classify).
func outcome(op string, err error) string {
	if errors.Is(err, psp.ErrNotFound) && op == paymentsapi.OpFindCharge {
		return paymentsapi.OutcomeNotFound
	}
	switch psp.Classify(err) {
	case psp.ClassNone:
		return map[string]string{paymentsapi.OpCharge: paymentsapi.OutcomeCharged, paymentsapi.OpFindCharge: paymentsapi.OutcomeFound,
			paymentsapi.OpRefund: paymentsapi.OutcomeRefunded}[op]
	case psp.ClassDeclined:
		return paymentsapi.OutcomeDeclined
	case psp.ClassRateLimited:
		return paymentsapi.OutcomeRateLimited
	case psp.ClassTransient:
		return paymentsapi.OutcomeTransient
	case psp.ClassInvalid:
		return paymentsapi.OutcomeInvalid
	default:
		return paymentsapi.OutcomeAmbiguous
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
