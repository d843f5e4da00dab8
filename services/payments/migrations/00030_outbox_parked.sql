-- +goose Up
-- Outbox rows the broker refuses for good are parked instead of retried
-- forever; the later rows of their key wait behind them
-- (pkg/outbox.ParkSchema; `outbox parked`, `outbox unpark`).
ALTER TABLE outbox ADD COLUMN parked_at timestamptz;
-- Parked rows by key: the relay's read holds a key's rows behind its
-- parked one. Empty unless the broker refused a row for good.
CREATE INDEX outbox_parked ON outbox (key, id) WHERE parked_at IS NOT NULL;

-- +goose Down
DROP INDEX outbox_parked;
ALTER TABLE outbox DROP COLUMN parked_at;
