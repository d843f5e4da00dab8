-- +goose Up
-- Where the relay stored each outbox row (partition, stream sequence), and
-- an aggregate's events by key (pkg/outbox.PositionSchema).
ALTER TABLE outbox ADD COLUMN published_partition int, ADD COLUMN published_sequence bigint;
-- An aggregate's events (Events: an order's timeline). The relay's UPDATE
-- does not touch key, so marking rows published stays a HOT update.
CREATE INDEX outbox_key ON outbox (key);

-- +goose Down
DROP INDEX outbox_key;
ALTER TABLE outbox DROP COLUMN published_partition, DROP COLUMN published_sequence;
