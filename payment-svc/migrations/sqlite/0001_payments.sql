-- Payments of payment-svc (SQLite). Ids are 16-byte UUID blobs (UUIDv7: ordered by creation),
-- times are RFC 3339 text as sqlx writes them, money is integer minor units.

CREATE TABLE payments (
    id                BLOB PRIMARY KEY NOT NULL,
    order_id          BLOB NOT NULL,
    customer_id       BLOB NOT NULL,
    amount_minor      INTEGER NOT NULL CHECK (amount_minor > 0),
    currency          TEXT NOT NULL CHECK (length(currency) = 3),
    captured_minor    INTEGER NOT NULL DEFAULT 0 CHECK (captured_minor >= 0 AND captured_minor <= amount_minor),
    refunded_minor    INTEGER NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0 AND refunded_minor <= captured_minor),
    status            TEXT NOT NULL CHECK (status IN ('PENDING', 'AUTHORIZED', 'CAPTURED', 'DECLINED', 'FAILED',
                                                      'PARTIALLY_REFUNDED', 'REFUNDED', 'VOIDED')),
    decline_reason    TEXT NOT NULL DEFAULT '',
    gateway_reference TEXT NOT NULL DEFAULT '',
    create_time       TEXT NOT NULL,
    update_time       TEXT NOT NULL
);
-- One payment per order that is not DECLINED or FAILED: an order is never charged twice.
CREATE UNIQUE INDEX payments_one_active_per_order ON payments (order_id) WHERE status NOT IN ('DECLINED', 'FAILED');
CREATE INDEX payments_by_order ON payments (order_id, id DESC);
CREATE INDEX payments_by_customer ON payments (customer_id, id DESC);

CREATE TABLE refunds (
    id                BLOB PRIMARY KEY NOT NULL,
    payment_id        BLOB NOT NULL REFERENCES payments (id),
    amount_minor      INTEGER NOT NULL CHECK (amount_minor > 0),
    reason            TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    gateway_reference TEXT NOT NULL DEFAULT '',
    actor_kind        INTEGER NOT NULL,
    actor_id          TEXT NOT NULL,
    -- JSON array of role names.
    actor_roles       TEXT NOT NULL DEFAULT '[]',
    create_time       TEXT NOT NULL,
    update_time       TEXT NOT NULL
);
CREATE INDEX refunds_by_payment ON refunds (payment_id, id);

CREATE TABLE transactions (
    id                BLOB PRIMARY KEY NOT NULL,
    payment_id        BLOB NOT NULL REFERENCES payments (id),
    kind              TEXT NOT NULL CHECK (kind IN ('AUTHORIZE', 'CAPTURE', 'REFUND', 'VOID')),
    amount_minor      INTEGER NOT NULL CHECK (amount_minor > 0),
    status            TEXT NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'DECLINED', 'FAILED')),
    gateway_reference TEXT NOT NULL DEFAULT '',
    failure_reason    TEXT NOT NULL DEFAULT '',
    idempotency_key   TEXT UNIQUE,
    request_hash      TEXT NOT NULL DEFAULT '',
    capture           INTEGER NOT NULL DEFAULT 0,
    refund_id         BLOB REFERENCES refunds (id),
    create_time       TEXT NOT NULL,
    update_time       TEXT NOT NULL
);
CREATE INDEX transactions_by_payment ON transactions (payment_id, id);
