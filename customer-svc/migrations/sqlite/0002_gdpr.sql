-- GDPR: erasure requests and their confirmations, export jobs, the ERASING status and the last
-- activity of a customer (SQLite). A CHECK constraint cannot be altered in SQLite: `customers` is rebuilt.

CREATE TABLE customers_new (
    id               TEXT PRIMARY KEY NOT NULL,
    display_name     TEXT NOT NULL,
    sort_name        TEXT NOT NULL,
    email            TEXT NOT NULL,
    email_normalized TEXT NOT NULL,
    phone            TEXT NOT NULL DEFAULT '',
    addresses        TEXT NOT NULL DEFAULT '[]',
    status           TEXT NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED', 'ERASING', 'ERASED')),
    identity_issuer  TEXT,
    identity_subject TEXT,
    preferences      TEXT NOT NULL DEFAULT '{}',
    idempotency_key  TEXT,
    create_time      INTEGER NOT NULL,
    update_time      INTEGER NOT NULL,
    erase_time       INTEGER,
    version          INTEGER NOT NULL,
    -- The last sign-in, order or profile change (`ordermesh housekeeping inactive-customers`).
    last_activity_time INTEGER NOT NULL,
    CHECK ((identity_issuer IS NULL) = (identity_subject IS NULL))
);
INSERT INTO customers_new SELECT id, display_name, sort_name, email, email_normalized, phone, addresses, status,
    identity_issuer, identity_subject, preferences, idempotency_key, create_time, update_time, erase_time, version,
    update_time FROM customers;
-- `consents` references `customers`: it is rebuilt against the new table first, so dropping the
-- old one breaks no reference (the reference follows the rename).
CREATE TABLE consents_new (
    id             TEXT PRIMARY KEY NOT NULL,
    customer_id    TEXT NOT NULL REFERENCES customers_new (id),
    purpose        TEXT NOT NULL,
    granted        INTEGER NOT NULL,
    policy_version TEXT NOT NULL,
    source         TEXT NOT NULL DEFAULT '',
    actor_kind     INTEGER NOT NULL,
    actor_id       TEXT NOT NULL,
    actor_roles    TEXT NOT NULL DEFAULT '[]',
    record_time    INTEGER NOT NULL
);
INSERT INTO consents_new SELECT id, customer_id, purpose, granted, policy_version, source, actor_kind, actor_id,
    actor_roles, record_time FROM consents;
DROP TABLE consents;
DROP TABLE customers;
ALTER TABLE customers_new RENAME TO customers;
ALTER TABLE consents_new RENAME TO consents;
CREATE INDEX consents_by_customer ON consents (customer_id, record_time DESC, id DESC);
CREATE UNIQUE INDEX customers_identity_unique ON customers (identity_issuer, identity_subject)
    WHERE identity_issuer IS NOT NULL;
CREATE UNIQUE INDEX customers_email_unique ON customers (email_normalized)
    WHERE status NOT IN ('ERASING', 'ERASED');
CREATE UNIQUE INDEX customers_idempotency_unique ON customers (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX customers_by_name ON customers (sort_name, id);
CREATE INDEX customers_by_activity ON customers (last_activity_time) WHERE status IN ('ACTIVE', 'SUSPENDED');

CREATE TABLE erasure_requests (
    id            TEXT PRIMARY KEY NOT NULL,
    customer_id   TEXT NOT NULL UNIQUE REFERENCES customers (id),
    reason        TEXT NOT NULL,
    actor_kind    INTEGER NOT NULL,
    actor_id      TEXT NOT NULL,
    request_time  INTEGER NOT NULL,
    complete_time INTEGER
);

CREATE TABLE erasure_confirmations (
    erasure_id   TEXT NOT NULL REFERENCES erasure_requests (id),
    service      TEXT NOT NULL,
    confirm_time INTEGER NOT NULL,
    PRIMARY KEY (erasure_id, service)
);

CREATE TABLE data_exports (
    id              TEXT PRIMARY KEY NOT NULL,
    customer_id     TEXT NOT NULL REFERENCES customers (id),
    state           TEXT NOT NULL CHECK (state IN ('PENDING', 'READY')),
    actor_kind      INTEGER NOT NULL,
    actor_id        TEXT NOT NULL,
    actor_roles     TEXT NOT NULL DEFAULT '[]',
    correlation_id  TEXT NOT NULL DEFAULT '',
    create_time     INTEGER NOT NULL,
    complete_time   INTEGER,
    expire_time     INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    document        TEXT
);
CREATE UNIQUE INDEX data_exports_one_pending ON data_exports (customer_id) WHERE state = 'PENDING';
CREATE INDEX data_exports_due ON data_exports (next_attempt_at) WHERE state = 'PENDING';
CREATE INDEX data_exports_expiry ON data_exports (expire_time) WHERE state = 'READY';
