-- +goose Up
-- Every call the workers made to the payment provider for a payment, with
-- its outcome class: the history behind a payment's status (a charge
-- that timed out after charging, the lookup that found it, the 429 that
-- delayed it). Written after each call, outside the job's transaction:
-- a crash between the call and the row loses the row, never the call's
-- effect (the job's own record is the truth). Shown to the payment's
-- customer and to operators (GET /v1/payments, provider_calls); it holds
-- no error text, which could name internal hosts.
CREATE TABLE provider_calls (
    id             bigserial PRIMARY KEY,
    payment_id     uuid NOT NULL REFERENCES payments (id),
    -- The job's receive count: 1 for the first delivery.
    attempt        int NOT NULL CHECK (attempt > 0),
    operation      text NOT NULL CHECK (operation IN ('charge', 'find_charge', 'refund')),
    outcome        text NOT NULL CHECK (outcome IN ('charged', 'declined', 'found', 'not_found', 'refunded',
                                                    'rate_limited', 'transient', 'ambiguous', 'invalid')),
    -- The provider's Retry-After, for rate_limited.
    retry_after_ms bigint CHECK (retry_after_ms >= 0),
    duration_ms    bigint NOT NULL CHECK (duration_ms >= 0),
    at             timestamptz NOT NULL
);
CREATE INDEX provider_calls_payment ON provider_calls (payment_id, id);

-- +goose Down
DROP TABLE provider_calls;
