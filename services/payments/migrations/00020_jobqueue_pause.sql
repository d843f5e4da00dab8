-- +goose Up
-- The pause switch of each job queue (pkg/jobqueue.PauseSchema): a row per
-- paused queue; `payments queue pause charges --reason ...` writes it and
-- every receive reads it. No queue is paused by this migration.
CREATE TABLE jobqueue_state (
    queue     text PRIMARY KEY REFERENCES jobqueue_queues (name) ON DELETE CASCADE,
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text NOT NULL,
    reason    text NOT NULL
);

-- +goose Down
DROP TABLE jobqueue_state;
