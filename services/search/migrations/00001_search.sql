-- +goose Up
-- Typo tolerance on product names (similarity of trigrams). A trusted
-- extension: the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- The product index (from CATALOG): one row per product, the guard of the
-- projection. An event changes the row only when its version is newer
-- (INSERT ... ON CONFLICT DO UPDATE ... WHERE version < EXCLUDED.version),
-- so duplicates and overtaken events never move it backward. Archived and
-- draft products stay (their version guards against older events); search
-- returns active ones only.
CREATE TABLE products (
    product_id       text PRIMARY KEY,
    version          bigint NOT NULL CHECK (version > 0),
    status           text NOT NULL,
    category         text NOT NULL,
    sku              text NOT NULL,
    prices           jsonb NOT NULL,
    images           jsonb NOT NULL,
    -- false for events published before catalog carried the text.
    has_text         boolean NOT NULL,
    -- Where this version came from.
    source_stream    text NOT NULL,
    source_partition int NOT NULL,
    source_sequence  bigint NOT NULL,
    event_id         text NOT NULL,
    event_time       timestamptz NOT NULL,
    applied_at       timestamptz NOT NULL
);

-- One searchable document per product and locale, replaced with the
-- product's row. Weights: name and sku A, category B, description C; the
-- locale's text search configuration (english, german, else simple)
-- stems the words.
CREATE TABLE product_texts (
    product_id  text NOT NULL,
    locale      text NOT NULL,
    config      regconfig NOT NULL,
    name        text NOT NULL,
    description text NOT NULL,
    category    text NOT NULL,
    sku         text NOT NULL,
    version     bigint NOT NULL,
    tsv         tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector(config, name), 'A') ||
        setweight(to_tsvector('simple', sku), 'A') ||
        setweight(to_tsvector(config, category), 'B') ||
        setweight(to_tsvector(config, description), 'C')) STORED,
    PRIMARY KEY (product_id, locale)
);
CREATE INDEX product_texts_tsv_idx ON product_texts USING gin (tsv);
CREATE INDEX product_texts_name_idx ON product_texts USING gin (name gin_trgm_ops);

-- The order index (from ORDERS): one row per order, guarded like
-- products. items is NULL until order.placed is applied; status events
-- keep it.
CREATE TABLE orders (
    order_id         text PRIMARY KEY,
    customer_id      text NOT NULL,
    customer_email   text NOT NULL,
    status           text NOT NULL,
    currency         text NOT NULL,
    total_minor      bigint NOT NULL,
    items            jsonb,
    item_text        text NOT NULL,
    version          bigint NOT NULL CHECK (version > 0),
    placed_at        timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    source_stream    text NOT NULL,
    source_partition int NOT NULL,
    source_sequence  bigint NOT NULL,
    event_id         text NOT NULL,
    applied_at       timestamptz NOT NULL,
    tsv              tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', order_id), 'A') ||
        setweight(to_tsvector('simple', item_text), 'B') ||
        setweight(to_tsvector('simple', customer_email), 'C')) STORED
);
CREATE INDEX orders_tsv_idx ON orders USING gin (tsv);
CREATE INDEX orders_customer_id_placed_at_idx ON orders (customer_id, placed_at);

-- How far each projection has got, per partition of its stream: the
-- highest sequence it finished (applied, stale or ignored), written in the
-- transaction of the event's effect. Freshness is read from here; a
-- rebuild swaps in only when its positions are at or past the live ones.
CREATE TABLE catalog_positions (
    partition  int PRIMARY KEY,
    sequence   bigint NOT NULL,
    event_time timestamptz NOT NULL,
    applied_at timestamptz NOT NULL
);
CREATE TABLE orders_positions (
    partition  int PRIMARY KEY,
    sequence   bigint NOT NULL,
    event_time timestamptz NOT NULL,
    applied_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE orders_positions;
DROP TABLE catalog_positions;
DROP TABLE orders;
DROP TABLE product_texts;
DROP TABLE products;
DROP EXTENSION IF EXISTS pg_trgm;
