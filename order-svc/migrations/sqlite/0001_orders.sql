CREATE TABLE orders (
    id                    TEXT PRIMARY KEY,
    customer_id           TEXT NOT NULL,
    status                TEXT NOT NULL,
    total_minor           INTEGER NOT NULL CHECK (total_minor >= 0),
    currency              TEXT NOT NULL,
    -- A provider's tokenised reference (no card data); needed to charge once stock is reserved.
    payment_method_token  TEXT NOT NULL,
    idempotency_key       TEXT,
    rejection_code        TEXT,
    rejection_reason      TEXT,
    cancellation_reason   TEXT,
    payment_id            TEXT,
    shipping_address      BLOB,
    carrier               TEXT,
    tracking_number       TEXT,
    correlation_id        TEXT NOT NULL,
    version               INTEGER NOT NULL DEFAULT 1,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    shipped_at            TEXT,
    delivered_at          TEXT
);
CREATE UNIQUE INDEX orders_idempotency ON orders (customer_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX orders_customer ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_created ON orders (created_at DESC, id DESC);
CREATE INDEX orders_status ON orders (status);

CREATE TABLE order_items (
    order_id          TEXT NOT NULL REFERENCES orders (id),
    line_no           INTEGER NOT NULL,
    product_id        TEXT NOT NULL,
    sku               TEXT NOT NULL,
    name              TEXT NOT NULL,
    unit_price_minor  INTEGER NOT NULL CHECK (unit_price_minor >= 0),
    currency          TEXT NOT NULL,
    quantity          INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE order_status_history (
    order_id        TEXT NOT NULL REFERENCES orders (id),
    seq             INTEGER NOT NULL,
    from_status     TEXT,
    to_status       TEXT NOT NULL,
    reason          TEXT,
    actor           TEXT NOT NULL,
    cause_event_id  TEXT,
    changed_at      TEXT NOT NULL,
    PRIMARY KEY (order_id, seq)
);
