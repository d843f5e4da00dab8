-- +goose Up
-- The relay's leader lease for OUTBOX_LEADER=lease, the election that
-- works through PgBouncer in transaction mode (pkg/outbox.LeaseSchema,
-- ADR 0042). Unused under the default advisory lock.
CREATE TABLE outbox_leader (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    epoch      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE outbox_leader;
