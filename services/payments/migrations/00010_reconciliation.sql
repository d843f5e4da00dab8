-- +goose Up
-- Reconciliation (paymentsvc.Reconciler): a payment whose outcome is
-- unknown stays pending until the provider has been asked for its charge
-- by the payment's idempotency key.
--   outcome_unknown_since: the worker gave the charge up (retries
--     exhausted) without a definite answer; NULL while the worker owns it.
--   reconcile_after: when the reconciler looks it up next; NULL for a
--     pending payment means created_at + the reconciler's pending bound.
--   reconcile_attempts, reconcile_error: lookups so far and the last
--     lookup's error (the provider unreachable), for operators.
ALTER TABLE payments
    ADD COLUMN outcome_unknown_since timestamptz,
    ADD COLUMN reconcile_after timestamptz,
    ADD COLUMN reconcile_attempts int NOT NULL DEFAULT 0,
    ADD COLUMN reconcile_error text;
CREATE INDEX payments_pending ON payments (created_at) WHERE status = 'pending';

-- A refund is retried until it succeeds or an operator abandons it with a
-- reason (payments refund abandon; recorded in audit_log).
ALTER TABLE refunds DROP CONSTRAINT refunds_status_check;
ALTER TABLE refunds ADD CONSTRAINT refunds_status_check CHECK (status IN ('pending', 'succeeded', 'failed', 'abandoned'));
CREATE INDEX refunds_open ON refunds (created_at) WHERE status IN ('pending', 'failed');

-- +goose Down
DROP INDEX refunds_open;
ALTER TABLE refunds DROP CONSTRAINT refunds_status_check;
ALTER TABLE refunds ADD CONSTRAINT refunds_status_check CHECK (status IN ('pending', 'succeeded', 'failed'));
DROP INDEX payments_pending;
ALTER TABLE payments DROP COLUMN outcome_unknown_since, DROP COLUMN reconcile_after,
    DROP COLUMN reconcile_attempts, DROP COLUMN reconcile_error;
