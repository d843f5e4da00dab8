-- +goose Up
-- Orders and their lines. ids are UUIDv7 (time-ordered), so "newest first"
-- is id order and a page token is the last id seen.
CREATE TABLE orders (
    id             uuid PRIMARY KEY,
    customer_id    text NOT NULL,
    customer_email text NOT NULL,
    status         text NOT NULL CHECK (status IN ('pending_payment', 'paid', 'payment_failed', 'cancelled')),
    version        bigint NOT NULL CHECK (version >= 1),
    currency       text NOT NULL,
    total_minor    bigint NOT NULL CHECK (total_minor >= 0),
    shipping       jsonb NOT NULL,
    -- The payment that paid (or last failed) the order.
    payment_id     text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX orders_customer_id ON orders (customer_id, id DESC);

CREATE TABLE order_items (
    order_id         uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line             int NOT NULL,
    product_id       uuid NOT NULL,
    sku              text NOT NULL,
    name             text NOT NULL,
    quantity         int NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    unit_price_minor bigint NOT NULL CHECK (unit_price_minor >= 0),
    -- The catalog version the price was read from.
    catalog_version  bigint NOT NULL,
    PRIMARY KEY (order_id, line)
);

-- Every payment event the payments consumer handled, and what it did with
-- it: applied (changed the order), ignored (duplicate or stale for the
-- order's state) or refund_required (a payment the order cannot take).
CREATE TABLE order_payment_events (
    event_id      text PRIMARY KEY,
    order_id      uuid NOT NULL REFERENCES orders (id),
    payment_id    text NOT NULL,
    event_type    text NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('applied', 'ignored', 'refund_required')),
    order_status  text NOT NULL,
    order_version bigint NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_payment_events_order ON order_payment_events (order_id);
-- At most one refund request per payment, whatever the number of events.
CREATE UNIQUE INDEX order_payment_events_refund_once ON order_payment_events (payment_id) WHERE outcome = 'refund_required';

-- The transactional outbox (pkg/outbox.Schema).
CREATE TABLE outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     text NOT NULL,
    stream       text NOT NULL,
    key          text NOT NULL,
    event_type   text NOT NULL,
    payload      bytea NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz,
    attempts     int NOT NULL DEFAULT 0,
    last_error   text
);
-- The relay's work list: only unpublished rows, in id order. Marking a row
-- published touches no other index (pruning walks the primary key from the
-- oldest id), which keeps the relay's UPDATE cheap. event_id is not unique
-- here: it is a UUIDv7, and duplicates are the broker's and the inbox's
-- business downstream.
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Idempotency keys (pkg/idempotency.Schema).
CREATE TABLE idempotency_keys (
    scope       text NOT NULL,
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint bytea NOT NULL,
    status      int NOT NULL,
    headers     jsonb NOT NULL DEFAULT '{}',
    body        bytea NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

-- The payments consumer's inbox (pkg/inbox.Schema).
CREATE TABLE inbox (
	group_name   text        NOT NULL,
	event_id     text        NOT NULL,
	processed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (group_name, event_id)
);
CREATE INDEX inbox_processed_at_idx ON inbox (processed_at);

-- +goose Down
DROP TABLE inbox;
DROP TABLE idempotency_keys;
DROP TABLE outbox;
DROP TABLE order_payment_events;
DROP TABLE order_items;
DROP TABLE orders;
