-- Customers, their identity link and consents (SQLite). UUIDs as text, times as integer
-- microseconds since the Unix epoch.

CREATE TABLE customers (
    id               TEXT PRIMARY KEY NOT NULL,
    display_name     TEXT NOT NULL,
    sort_name        TEXT NOT NULL,
    email            TEXT NOT NULL,
    email_normalized TEXT NOT NULL,
    phone            TEXT NOT NULL DEFAULT '',
    addresses        TEXT NOT NULL DEFAULT '[]',
    status           TEXT NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED', 'ERASED')),
    identity_issuer  TEXT,
    identity_subject TEXT,
    preferences      TEXT NOT NULL DEFAULT '{}',
    idempotency_key  TEXT,
    create_time      INTEGER NOT NULL,
    update_time      INTEGER NOT NULL,
    erase_time       INTEGER,
    version          INTEGER NOT NULL,
    CHECK ((identity_issuer IS NULL) = (identity_subject IS NULL))
);
CREATE UNIQUE INDEX customers_identity_unique ON customers (identity_issuer, identity_subject)
    WHERE identity_issuer IS NOT NULL;
CREATE UNIQUE INDEX customers_email_unique ON customers (email_normalized) WHERE status <> 'ERASED';
CREATE UNIQUE INDEX customers_idempotency_unique ON customers (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX customers_by_name ON customers (sort_name, id);

CREATE TABLE consents (
    id             TEXT PRIMARY KEY NOT NULL,
    customer_id    TEXT NOT NULL REFERENCES customers (id),
    purpose        TEXT NOT NULL,
    granted        INTEGER NOT NULL,
    policy_version TEXT NOT NULL,
    source         TEXT NOT NULL DEFAULT '',
    actor_kind     INTEGER NOT NULL,
    actor_id       TEXT NOT NULL,
    actor_roles    TEXT NOT NULL DEFAULT '[]',
    record_time    INTEGER NOT NULL
);
CREATE INDEX consents_by_customer ON consents (customer_id, record_time DESC, id DESC);
