-- +goose Up
-- The customer the payment's order belongs to (the token subject of the
-- customer who placed it), from order.placed: a customer reads only the
-- payments of their own orders (ADR 0022). NULL for a payment an operator
-- created through the API before the order's order.placed arrived, and for
-- rows recorded before this column existed: such payments are visible to
-- operators only, until order.placed of the order is applied (a later
-- delivery, a replay past the inbox's retention, a new consumer group)
-- and fills it in. Never changed once set: an order's customer does not
-- change.
ALTER TABLE payments ADD COLUMN customer_id text CHECK (customer_id <> '');

-- +goose Down
ALTER TABLE payments DROP COLUMN customer_id;
