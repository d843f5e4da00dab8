package jobqueue

// Schema creates the queue tables. Put it in a goose migration of the
// service that owns the queues:
//
//	-- +goose Up
//	<jobqueue.Schema>
//	-- +goose Down
//	DROP TABLE jobqueue_dedup, jobqueue_messages, jobqueue_queues;
const Schema = `
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
`

// DeadLetterSchema adds when each dead letter was dead-lettered, from
// which its dead-letter queue's retention counts (Prune). Put it in a
// migration after Schema; services created before it add it as their
// next migration.
const DeadLetterSchema = `
ALTER TABLE jobqueue_messages ADD COLUMN dead_lettered_at timestamptz;
`

// PauseSchema adds the pause switch of each queue (Pause, Resume): a row
// per paused queue, read by every receive in the same statement, so a
// pause holds across restarts and instances. Put it in a migration after
// Schema; services created before it add it as their next migration.
const PauseSchema = `
CREATE TABLE jobqueue_state (
    queue     text PRIMARY KEY REFERENCES jobqueue_queues (name) ON DELETE CASCADE,
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text NOT NULL,
    reason    text NOT NULL
);
`
