-- +goose Up
CREATE TABLE notes (
    id         uuid PRIMARY KEY,
    text       text NOT NULL CHECK (length(text) BETWEEN 1 AND 500),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- set by the consumer role when the note.created event comes back
    seen_at    timestamptz,
    seen_trace text
);

-- +goose Down
DROP TABLE notes;
