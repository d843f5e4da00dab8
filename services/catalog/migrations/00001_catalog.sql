-- +goose Up
CREATE TABLE products (
    id           uuid PRIMARY KEY,
    sku          text NOT NULL UNIQUE,
    category     text NOT NULL,
    images       jsonb NOT NULL DEFAULT '[]',
    status       text NOT NULL CHECK (status IN ('draft', 'active', 'archived')),
    version      bigint NOT NULL CHECK (version >= 1),
    -- {"en-US": {"name": "...", "description": "..."}, ...}
    translations jsonb NOT NULL,
    -- {"EUR": 1999, ...} in minor units
    prices       jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- Category listing with a stable cursor (id order).
CREATE INDEX products_category_id ON products (category, id) WHERE status = 'active';
CREATE INDEX products_active_id ON products (id) WHERE status = 'active';

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

-- +goose Down
DROP TABLE outbox;
DROP TABLE products;
