// Package paymentsvc holds payments' use cases: create a payment attempt
// and its charge job in one transaction, charge it exactly once through the
// provider (the worker), refund a payment an order could not take, read
// payments.
//
// "Charged exactly once" is built from at-least-once parts: the job queue
// may deliver a charge job twice and a worker may crash after the provider
// charged, so every charge of an attempt carries the same idempotency key
// (the attempt's id), an ambiguous answer is resolved by asking the
// provider for the charge by that key before any retry, and the result,
// the job's deletion and the outbox event commit in one transaction guarded
// by a compare-and-set on the attempt's status.
package paymentsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/internal/payment"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentpg"
	"github.com/shopfloor/shopfloor/services/payments/internal/psp"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// Queue names and their dead-letter queues.
const (
	ChargeQueue    = "charges"
	ChargeDLQ      = "charges-dlq"
	RefundQueue    = "refunds"
	RefundDLQ      = "refunds-dlq"
	refundKeyStart = "refund:"
	// refundMaxReceives: see CreateQueues.
	refundMaxReceives = 10_000
)

// Provider is the payment provider (psp.Client).
type Provider interface {
	Charge(ctx context.Context, key string, req psp.ChargeRequest) (psp.Charge, error)
	FindCharge(ctx context.Context, key string) (psp.Charge, error)
	Refund(ctx context.Context, key string, req psp.RefundRequest) (psp.Refund, error)
}

var _ Provider = (*psp.Client)(nil)

// Config of the service.
type Config struct {
	// MaxReceives is the queues' redrive policy: the worker gives up on the
	// delivery that reaches it (default 10).
	MaxReceives int
	// VisibilityTimeout of a charge or refund delivery (default 30s); the
	// worker's heartbeat extends it while the provider call runs.
	VisibilityTimeout time.Duration
	// ReconcileGrace is how long after the worker gives a charge up the
	// reconciler first looks it up (ReconcileConfig.Grace; default 1m).
	ReconcileGrace time.Duration
	// RefundRetryMax caps the backoff between refund attempts, which
	// never run out (default 10m).
	RefundRetryMax time.Duration
	// Registerer receives payments_attempts_total{queue,outcome}: every
	// charge or refund attempt by what came of it (succeeded, declined,
	// failed, refunded, rate_limited, transient, ambiguous_resolved,
	// ambiguous_unresolved, invalid, exhausted). Nil: no metrics.
	Registerer prometheus.Registerer
	// Inject, if set, writes the trace context of ctx into a job's
	// attributes (telemetry.Inject), so the worker continues the trace.
	Inject func(ctx context.Context, attributes map[string]string)
}

// Service runs the use cases.
type Service struct {
	pool     *pgxpool.Pool
	jobs     *jobqueue.Client
	outbox   *outbox.Outbox
	provider Provider
	cfg      Config
	attempts *prometheus.CounterVec
	// refundRetry spaces refund attempts (capped at RefundRetryMax).
	refundRetry backoff.Policy
	log         *slog.Logger
	now         func() time.Time
}

// New returns the service. ob must publish to paymentsapi.Stream; provider
// may be nil in processes that do not run the worker.
func New(pool *pgxpool.Pool, jobs *jobqueue.Client, ob *outbox.Outbox, provider Provider, cfg Config, log *slog.Logger, now func() time.Time) (*Service, error) {
	if ob.Stream() != paymentsapi.Stream {
		return nil, fmt.Errorf("paymentsvc: outbox publishes to %s, want %s", ob.Stream(), paymentsapi.Stream)
	}
	if cfg.MaxReceives <= 0 {
		cfg.MaxReceives = 10
	}
	if cfg.VisibilityTimeout <= 0 {
		cfg.VisibilityTimeout = 30 * time.Second
	}
	if cfg.ReconcileGrace <= 0 {
		cfg.ReconcileGrace = time.Minute
	}
	if cfg.RefundRetryMax <= 0 {
		cfg.RefundRetryMax = 10 * time.Minute
	}
	attempts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "payments_attempts_total",
		Help: "Charge and refund attempts by queue and outcome."}, []string{"queue", "outcome"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(attempts); err != nil {
			return nil, fmt.Errorf("paymentsvc: metrics: %w", err)
		}
	}
	return &Service{pool: pool, jobs: jobs, outbox: ob, provider: provider, cfg: cfg, attempts: attempts, log: log, now: now,
		refundRetry: backoff.Policy{Initial: time.Second, Max: cfg.RefundRetryMax, Multiplier: 2}}, nil
}

// Pool is the database (for the idempotency store).
func (s *Service) Pool() *pgxpool.Pool { return s.pool }

// Redact is the queues' redaction function for DLQ tooling: job bodies
// carry only ids (never card data), so it passes them through after
// checking they parse; anything else is replaced.
func Redact(body []byte) []byte {
	var j struct {
		PaymentID string `json:"payment_id,omitempty"`
		RefundID  string `json:"refund_id,omitempty"`
	}
	if err := json.Unmarshal(body, &j); err != nil {
		return []byte(`{"redacted":"unexpected body"}`)
	}
	b, _ := json.Marshal(j)
	return b
}

// CreateQueues creates the charge and refund queues and their DLQs
// (idempotent), with the redrive policy of cfg.
func (s *Service) CreateQueues(ctx context.Context) error {
	for _, q := range []jobqueue.Queue{
		{Name: ChargeDLQ, Retention: jobqueue.DeadLetterRetention}, {Name: RefundDLQ, Retention: jobqueue.DeadLetterRetention},
		{Name: ChargeQueue, VisibilityTimeout: s.cfg.VisibilityTimeout, MaxReceiveCount: s.cfg.MaxReceives, DeadLetterQueue: ChargeDLQ},
		// Refunds are retried until done: the queue's own redrive
		// policy is only a backstop (10,000 receives at the 10m cap is
		// about ten weeks).
		{Name: RefundQueue, VisibilityTimeout: s.cfg.VisibilityTimeout, MaxReceiveCount: refundMaxReceives, DeadLetterQueue: RefundDLQ},
	} {
		if err := s.jobs.CreateQueue(ctx, q); err != nil {
			return fmt.Errorf("queue %s: %w", q.Name, err)
		}
	}
	return nil
}

type chargeJob struct {
	PaymentID string `json:"payment_id"`
}

type refundJob struct {
	RefundID string `json:"refund_id"`
}

// CreateInput is a payment to create: the request, and whose order it is.
type CreateInput struct {
	paymentsapi.CreatePayment
	// CustomerID is the order's customer, from order.placed (the ORDERS
	// consumer). It is not part of the API's request body: an operator
	// creating a payment through the API cannot say whose it is, so such
	// a payment has none until order.placed of its order is applied, and
	// until then only operators may read it (ADR 0022).
	CustomerID string
}

// Create writes a payment attempt for in, under idempotency key key
// (unique), and its charge job, in tx. When the order already has an
// attempt, nothing is written and the existing attempt is returned with
// an error matching payment.ErrExists; the one exception is the order's
// customer: when in names one and the existing attempt of the same order
// has none (an operator's API payment made before order.placed arrived),
// it is recorded, so the customer can read their payment. in must have
// passed payment.Validate.
func (s *Service) Create(ctx context.Context, tx pgx.Tx, key string, in CreateInput) (payment.Payment, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return payment.Payment{}, fmt.Errorf("payment id: %w", err)
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	p, err := paymentpg.Insert(ctx, tx, payment.Payment{ID: id.String(), OrderID: in.OrderID, CustomerID: in.CustomerID, IdempotencyKey: key,
		AmountMinor: in.AmountMinor, Currency: in.Currency, PaymentMethod: in.PaymentMethod,
		Status: paymentsapi.StatusPending, CreatedAt: now, UpdatedAt: now})
	if errors.Is(err, payment.ErrExists) && in.CustomerID != "" && p.CustomerID == "" && p.OrderID == in.OrderID {
		filled, ferr := paymentpg.FillCustomer(ctx, tx, p.OrderID, in.CustomerID)
		if ferr != nil {
			return p, ferr
		}
		if filled {
			p.CustomerID = in.CustomerID
		}
		return p, err
	}
	if err != nil {
		return p, err
	}
	body, _ := json.Marshal(chargeJob{PaymentID: p.ID})
	if _, err := s.jobs.Send(ctx, tx, ChargeQueue, jobqueue.SendInput{Body: body, DedupID: "charge:" + p.ID, Attributes: s.traceAttributes(ctx)}); err != nil {
		return p, fmt.Errorf("enqueue charge of %s: %w", p.ID, err)
	}
	return p, nil
}

func (s *Service) traceAttributes(ctx context.Context) map[string]string {
	if s.cfg.Inject == nil {
		return nil
	}
	attrs := map[string]string{}
	s.cfg.Inject(ctx, attrs)
	return attrs
}

// Get reads a payment. customerID "" reads any payment (an operator);
// anything else reads only that customer's: another customer's payment,
// and one whose customer is not known, is payment.ErrNotFound exactly
// like a missing one, so payment ids cannot be probed (ADR 0022).
func (s *Service) Get(ctx context.Context, id, customerID string) (payment.Payment, error) {
	p, err := paymentpg.Get(ctx, s.pool, id)
	if err != nil {
		return p, err
	}
	return owned(p, customerID)
}

// Calls returns the provider calls of a payment already read (and its
// reader checked) by Get or GetByOrder.
func (s *Service) Calls(ctx context.Context, paymentID string) ([]paymentsapi.ProviderCall, error) {
	return paymentpg.Calls(ctx, s.pool, paymentID)
}

// GetByOrder reads an order's payment; customerID as for Get.
func (s *Service) GetByOrder(ctx context.Context, orderID, customerID string) (payment.Payment, error) {
	p, err := paymentpg.GetByOrder(ctx, s.pool, orderID)
	if err != nil {
		return p, err
	}
	return owned(p, customerID)
}

// owned returns p if customerID may read it ("" may read every payment).
func owned(p payment.Payment, customerID string) (payment.Payment, error) {
	if customerID != "" && p.CustomerID != customerID {
		return payment.Payment{}, fmt.Errorf("payment %s of another customer: %w", p.ID, payment.ErrNotFound)
	}
	return p, nil
}

// RequestRefund handles order.refund_required in tx: a refund row (at most
// one per payment) and its job. A payment that was never charged, or is
// already refunded, needs nothing. Errors: payment.ErrNotFound (poison).
func (s *Service) RequestRefund(ctx context.Context, tx pgx.Tx, rr ordersapi.RefundRequired) (created bool, err error) {
	p, err := paymentpg.Get(ctx, tx, rr.PaymentID)
	if err != nil {
		return false, err
	}
	if p.Status != paymentsapi.StatusSucceeded || p.ChargeID == "" {
		s.log.InfoContext(ctx, "refund not needed", "payment", p.ID, "status", p.Status)
		return false, nil
	}
	id, err := uuid.NewV7()
	if err != nil {
		return false, fmt.Errorf("refund id: %w", err)
	}
	created, err = paymentpg.InsertRefund(ctx, tx, payment.Refund{ID: id.String(), PaymentID: p.ID, OrderID: p.OrderID,
		AmountMinor: p.AmountMinor}, s.now().UTC())
	if err != nil || !created {
		return false, err
	}
	body, _ := json.Marshal(refundJob{RefundID: id.String()})
	if _, err := s.jobs.Send(ctx, tx, RefundQueue, jobqueue.SendInput{Body: body, DedupID: refundKeyStart + p.ID, Attributes: s.traceAttributes(ctx)}); err != nil {
		return false, fmt.Errorf("enqueue refund of %s: %w", p.ID, err)
	}
	return true, nil
}

// emit writes a PAYMENTS event for p (keyed by order id) in tx.
func (s *Service) emit(ctx context.Context, tx pgx.Tx, typ string, p payment.Payment, version int64) error {
	ev, err := events.New(paymentsapi.Source, typ, p.OrderID, paymentsapi.SchemaVersion, version, paymentsapi.PaymentResult{
		PaymentID: p.ID, OrderID: p.OrderID, AmountMinor: p.AmountMinor, Currency: p.Currency, ChargeID: p.ChargeID,
		Reason: reasonOf(p)}, s.now())
	if err != nil {
		return fmt.Errorf("%s event: %w", typ, err)
	}
	return s.outbox.Publish(ctx, tx, ev)
}

func reasonOf(p payment.Payment) string {
	if p.DeclineCode != "" {
		return p.DeclineCode
	}
	return p.FailureReason
}

var errNoProvider = errors.New("paymentsvc: no provider configured (the worker role needs PSP_URL)")
