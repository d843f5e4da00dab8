package idempotency

// Schema creates the table that holds idempotency keys and the responses
// they replay. Put it in a goose migration of the service that owns the
// business tables, so the key and the business rows live in one database and
// commit in one transaction:
//
//	-- +goose Up
//	<idempotency.Schema>
//	-- +goose Down
//	DROP TABLE idempotency_keys;
//
// Columns: scope is the client identity the key belongs to (keys of
// different clients never meet); fingerprint is the SHA-256 of the request's
// method, path and body; status, headers and body are the stored response.
// A committed row always holds a complete response: the row is claimed with
// status 0 and filled in by the same transaction that writes the business
// rows, so status 0 is only ever seen by that transaction. created_at and
// expires_at come from the Store's clock; a row whose expires_at has passed
// is treated as absent and deleted by Prune (the index serves both).
const Schema = `
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
`
