-- Catalogue and inventory of product-svc (PostgreSQL). Runs inside the service's own schema.

CREATE TABLE categories (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    parent_id   uuid REFERENCES categories (id),
    description text NOT NULL DEFAULT '',
    create_time timestamptz NOT NULL
);
-- Names are unique among siblings (case-insensitive); top-level categories are siblings too.
CREATE UNIQUE INDEX categories_sibling_name
    ON categories (COALESCE(parent_id, '00000000-0000-0000-0000-000000000000'::uuid), lower(name));
CREATE INDEX categories_by_name ON categories ((name COLLATE "C"), id);

CREATE TABLE products (
    id                 uuid PRIMARY KEY,
    sku                text NOT NULL UNIQUE,
    name               text NOT NULL,
    description        text NOT NULL DEFAULT '',
    category_id        uuid NOT NULL REFERENCES categories (id),
    price_amount_minor bigint NOT NULL CHECK (price_amount_minor >= 0),
    price_currency     text NOT NULL CHECK (price_currency ~ '^[A-Z]{3}$'),
    active             boolean NOT NULL,
    attributes         jsonb NOT NULL DEFAULT '{}'::jsonb,
    create_time        timestamptz NOT NULL,
    update_time        timestamptz NOT NULL,
    version            bigint NOT NULL,
    search             tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', translate(sku, '-_', '  ')), 'A')
        || setweight(to_tsvector('english', name), 'A')
        || setweight(to_tsvector('english', description), 'B')
    ) STORED
);
CREATE INDEX products_newest ON products (create_time DESC, id DESC);
CREATE INDEX products_category_newest ON products (category_id, create_time DESC, id DESC);
CREATE INDEX products_search ON products USING GIN (search);

CREATE TABLE stock_levels (
    product_id  uuid PRIMARY KEY REFERENCES products (id),
    on_hand     bigint NOT NULL CHECK (on_hand >= 0),
    reserved    bigint NOT NULL CHECK (reserved >= 0),
    update_time timestamptz NOT NULL,
    -- Never more reserved than on hand: available = on_hand - reserved is never negative.
    CHECK (reserved <= on_hand)
);

CREATE TABLE stock_adjustments (
    id              uuid PRIMARY KEY,
    product_id      uuid NOT NULL REFERENCES products (id),
    delta           bigint NOT NULL,
    reason          text NOT NULL,
    idempotency_key text UNIQUE,
    on_hand_after   bigint,
    reserved_after  bigint,
    create_time     timestamptz NOT NULL
);

CREATE TABLE stock_reservations (
    order_id       uuid PRIMARY KEY,
    status         text NOT NULL CHECK (status IN ('PENDING', 'RESERVED', 'REJECTED', 'RELEASED', 'COMMITTED')),
    lines          jsonb NOT NULL,
    shortfalls     jsonb NOT NULL DEFAULT '[]'::jsonb,
    release_reason text,
    create_time    timestamptz NOT NULL,
    update_time    timestamptz NOT NULL
);
