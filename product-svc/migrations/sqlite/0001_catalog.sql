-- Catalogue and inventory of product-svc (SQLite). Ids are hyphenated UUID text, times are
-- integer microseconds since the Unix epoch (exact, and ordered like the PostgreSQL timestamps).

CREATE TABLE categories (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    parent_id   TEXT REFERENCES categories (id),
    description TEXT NOT NULL DEFAULT '',
    create_time INTEGER NOT NULL
);
CREATE UNIQUE INDEX categories_sibling_name ON categories (COALESCE(parent_id, ''), lower(name));
CREATE INDEX categories_by_name ON categories (name, id);

CREATE TABLE products (
    -- Integer key for the FTS5 external-content table (stable across VACUUM).
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 TEXT NOT NULL UNIQUE,
    sku                TEXT NOT NULL UNIQUE,
    name               TEXT NOT NULL,
    description        TEXT NOT NULL DEFAULT '',
    category_id        TEXT NOT NULL REFERENCES categories (id),
    price_amount_minor INTEGER NOT NULL CHECK (price_amount_minor >= 0),
    price_currency     TEXT NOT NULL,
    active             INTEGER NOT NULL,
    attributes         TEXT NOT NULL DEFAULT '{}',
    create_time        INTEGER NOT NULL,
    update_time        INTEGER NOT NULL,
    version            INTEGER NOT NULL
);
CREATE INDEX products_newest ON products (create_time DESC, id DESC);
CREATE INDEX products_category_newest ON products (category_id, create_time DESC, id DESC);

CREATE VIRTUAL TABLE products_fts USING fts5(
    sku, name, description,
    content = 'products', content_rowid = 'seq', tokenize = 'porter unicode61'
);
CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
    INSERT INTO products_fts (rowid, sku, name, description) VALUES (new.seq, new.sku, new.name, new.description);
END;
CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, sku, name, description)
        VALUES ('delete', old.seq, old.sku, old.name, old.description);
END;
CREATE TRIGGER products_fts_update AFTER UPDATE OF sku, name, description ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, sku, name, description)
        VALUES ('delete', old.seq, old.sku, old.name, old.description);
    INSERT INTO products_fts (rowid, sku, name, description) VALUES (new.seq, new.sku, new.name, new.description);
END;

CREATE TABLE stock_levels (
    product_id  TEXT PRIMARY KEY NOT NULL REFERENCES products (id),
    on_hand     INTEGER NOT NULL CHECK (on_hand >= 0),
    reserved    INTEGER NOT NULL CHECK (reserved >= 0),
    update_time INTEGER NOT NULL,
    CHECK (reserved <= on_hand)
);

CREATE TABLE stock_adjustments (
    id              TEXT PRIMARY KEY NOT NULL,
    product_id      TEXT NOT NULL REFERENCES products (id),
    delta           INTEGER NOT NULL,
    reason          TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    on_hand_after   INTEGER,
    reserved_after  INTEGER,
    create_time     INTEGER NOT NULL
);

CREATE TABLE stock_reservations (
    order_id       TEXT PRIMARY KEY NOT NULL,
    status         TEXT NOT NULL,
    lines          TEXT NOT NULL,
    shortfalls     TEXT NOT NULL DEFAULT '[]',
    release_reason TEXT,
    create_time    INTEGER NOT NULL,
    update_time    INTEGER NOT NULL
);
