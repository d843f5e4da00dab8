-- +goose Up
-- The customer an order belongs to, from the ORDERS events (order.placed
-- and the status changes carry customer_id): a customer reads only the
-- notifications of their own orders (ADR 0022). NULL on rows recorded
-- before this column existed, or from events without a customer: such
-- rows are visible to operators only. A later event of the order (a
-- replay, a rebuild through a new consumer group, the order's next
-- status change) fills it in; it is never changed once set — an order's
-- customer does not change.
ALTER TABLE notifications ADD COLUMN customer_id text CHECK (customer_id <> '');

-- +goose Down
ALTER TABLE notifications DROP COLUMN customer_id;
