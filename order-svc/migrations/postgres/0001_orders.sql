CREATE TABLE orders (
    id                    uuid PRIMARY KEY,
    customer_id           uuid NOT NULL,
    status                text NOT NULL,
    total_minor           bigint NOT NULL CHECK (total_minor >= 0),
    currency              text NOT NULL,
    -- A provider's tokenised reference (no card data); needed to charge once stock is reserved.
    payment_method_token  text NOT NULL,
    idempotency_key       text,
    rejection_code        text,
    rejection_reason      text,
    cancellation_reason   text,
    payment_id            text,
    shipping_address      bytea,
    carrier               text,
    tracking_number       text,
    correlation_id        text NOT NULL,
    version               bigint NOT NULL DEFAULT 1,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    shipped_at            timestamptz,
    delivered_at          timestamptz
);
CREATE UNIQUE INDEX orders_idempotency ON orders (customer_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX orders_customer ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_created ON orders (created_at DESC, id DESC);
CREATE INDEX orders_status ON orders (status);

CREATE TABLE order_items (
    order_id          uuid NOT NULL REFERENCES orders (id),
    line_no           integer NOT NULL,
    product_id        uuid NOT NULL,
    sku               text NOT NULL,
    name              text NOT NULL,
    unit_price_minor  bigint NOT NULL CHECK (unit_price_minor >= 0),
    currency          text NOT NULL,
    quantity          integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE order_status_history (
    order_id        uuid NOT NULL REFERENCES orders (id),
    seq             integer NOT NULL,
    from_status     text,
    to_status       text NOT NULL,
    reason          text,
    actor           text NOT NULL,
    cause_event_id  text,
    changed_at      timestamptz NOT NULL,
    PRIMARY KEY (order_id, seq)
);
