-- +goose Up
-- When each dead letter was dead-lettered: its dead-letter queue's
-- retention counts from then (pkg/jobqueue.DeadLetterSchema). Dead letters
-- already there count from when they were sent, as before.
ALTER TABLE jobqueue_messages ADD COLUMN dead_lettered_at timestamptz;

-- +goose Down
ALTER TABLE jobqueue_messages DROP COLUMN dead_lettered_at;
