-- +goose Up
-- Stuck-order repair (ordersvc.Repairer): an order pending_payment longer
-- than the bound is looked up in payments and repaired from there.
--   repair_after: the next look (NULL: updated_at + the bound);
--   repair_attempts: looks that could not repair it (payments unreachable,
--     or no payment: order.placed published again).
ALTER TABLE orders
    ADD COLUMN repair_after timestamptz,
    ADD COLUMN repair_attempts int NOT NULL DEFAULT 0;
CREATE INDEX orders_pending_payment ON orders (updated_at) WHERE status = 'pending_payment';

-- +goose Down
DROP INDEX orders_pending_payment;
ALTER TABLE orders DROP COLUMN repair_after, DROP COLUMN repair_attempts;
