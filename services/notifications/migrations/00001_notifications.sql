-- +goose Up
-- One e-mail decided per (order, kind), ever: the unique key is what makes
-- a redelivery, a replay of ORDERS or a rebuild through a new consumer
-- group send nothing twice. Never delete rows to rebuild: they are the
-- ledger of what was decided and sent. Everything the e-mail says is
-- stored here, so every attempt renders the same message; message_id is
-- derived from id and never changes.
CREATE TABLE notifications (
    id            uuid PRIMARY KEY,
    order_id      uuid NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('order_received', 'receipt', 'payment_failed', 'cancelled')),
    recipient     text NOT NULL CHECK (length(recipient) BETWEEN 3 AND 254),
    status        text NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
    attempts      int NOT NULL DEFAULT 0,
    last_error    text,
    message_id    text NOT NULL UNIQUE,
    event_id      text NOT NULL,
    order_version bigint NOT NULL,
    currency      text NOT NULL,
    total_minor   bigint NOT NULL CHECK (total_minor >= 0),
    reason        text,
    items         jsonb NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    sent_at       timestamptz,
    UNIQUE (order_id, kind)
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
DROP TABLE jobqueue_dedup, jobqueue_messages, jobqueue_queues;
DROP TABLE notifications;
