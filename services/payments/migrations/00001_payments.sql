-- +goose Up
-- A payment attempt: at most one per order (unique order_id), created by
-- the API or by the ORDERS consumer under a unique idempotency key. Its id
-- is the provider's idempotency key for the charge.
CREATE TABLE payments (
    id              uuid PRIMARY KEY,
    order_id        uuid NOT NULL UNIQUE,
    idempotency_key text NOT NULL UNIQUE,
    amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
    currency        text NOT NULL,
    -- A provider token (tok_…, pm_…), never card data.
    payment_method  text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'refunded')),
    charge_id       text,
    decline_code    text,
    failure_reason  text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- At most one refund per payment (unique payment_id); its provider
-- idempotency key is refund:<payment id>.
CREATE TABLE refunds (
    id                 uuid PRIMARY KEY,
    payment_id         uuid NOT NULL UNIQUE REFERENCES payments (id),
    order_id           uuid NOT NULL,
    amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
    status             text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    provider_refund_id text,
    failure_reason     text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);

-- The job queue (pkg/jobqueue.Schema).
CREATE TABLE jobqueue_queues (
    name                 text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_-]{1,80}$'),
    visibility_timeout   interval NOT NULL,
    max_receive_count    int NOT NULL,
    dead_letter_queue    text REFERENCES jobqueue_queues (name),
    retention            interval NOT NULL,
    delivery_delay       interval NOT NULL,
    max_message_bytes    int NOT NULL
);

CREATE TABLE jobqueue_messages (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue             text NOT NULL REFERENCES jobqueue_queues (name),
    body              bytea NOT NULL,
    attributes        jsonb NOT NULL DEFAULT '{}',
    sent_at           timestamptz NOT NULL DEFAULT now(),
    visible_at        timestamptz NOT NULL,
    receive_count     int NOT NULL DEFAULT 0,
    first_received_at timestamptz,
    -- The current delivery's receipt; a new one per receive.
    receipt           uuid,
    -- Set while the message sits in a dead-letter queue.
    source_queue      text,
    dead_letter_reason text
);
-- Receive: the oldest visible messages of a queue.
CREATE INDEX jobqueue_messages_visible ON jobqueue_messages (queue, visible_at, id);

-- MessageDeduplicationId window (5 minutes).
CREATE TABLE jobqueue_dedup (
    queue      text NOT NULL,
    dedup_id   text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (queue, dedup_id)
);

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

-- The ORDERS consumer's inbox (pkg/inbox.Schema).
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
DROP TABLE jobqueue_dedup, jobqueue_messages, jobqueue_queues;
DROP TABLE refunds;
DROP TABLE payments;
