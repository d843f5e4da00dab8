-- +goose Up
-- What operators did that leaves no other trace: stream dead letters
-- discarded, dead-letter queues purged, refunds abandoned (pkg/audit.Schema;
-- `<service> audit` lists it).
CREATE TABLE audit_log (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Who: the operator's token subject, or the CLI's --by.
    actor   text NOT NULL CHECK (actor <> ''),
    -- What was done, e.g. stream_dlq.discard, jobqueue.purge, refund.abandon.
    action  text NOT NULL CHECK (action <> ''),
    -- What it was done to, e.g. ORDERS_DLQ/42, charges-dlq, refund <id>.
    target  text NOT NULL,
    -- Why, in the operator's words: required.
    reason  text NOT NULL CHECK (reason <> ''),
    -- Ids, counts and the dead-letter reason; never personal data.
    detail  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);

-- +goose Down
DROP TABLE audit_log;
