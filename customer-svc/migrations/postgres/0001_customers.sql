-- Customers, their identity link and consents (PostgreSQL). Runs inside the service's schema.

CREATE TABLE customers (
    id               uuid PRIMARY KEY,
    display_name     text NOT NULL,
    -- Case-folded display name: the ListCustomers order and the name search.
    sort_name        text NOT NULL,
    email            text NOT NULL,
    email_normalized text NOT NULL,
    phone            text NOT NULL DEFAULT '',
    addresses        jsonb NOT NULL DEFAULT '[]'::jsonb,
    status           text NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED', 'ERASED')),
    identity_issuer  text,
    identity_subject text,
    preferences      jsonb NOT NULL DEFAULT '{}'::jsonb,
    idempotency_key  text,
    create_time      timestamptz NOT NULL,
    update_time      timestamptz NOT NULL,
    erase_time       timestamptz,
    version          bigint NOT NULL,
    CHECK ((identity_issuer IS NULL) = (identity_subject IS NULL))
);
CREATE UNIQUE INDEX customers_identity_unique ON customers (identity_issuer, identity_subject)
    WHERE identity_issuer IS NOT NULL;
CREATE UNIQUE INDEX customers_email_unique ON customers (email_normalized) WHERE status <> 'ERASED';
CREATE UNIQUE INDEX customers_idempotency_unique ON customers (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX customers_by_name ON customers ((sort_name COLLATE "C"), id);

CREATE TABLE consents (
    id             uuid PRIMARY KEY,
    customer_id    uuid NOT NULL REFERENCES customers (id),
    purpose        text NOT NULL,
    granted        boolean NOT NULL,
    policy_version text NOT NULL,
    source         text NOT NULL DEFAULT '',
    actor_kind     integer NOT NULL,
    actor_id       text NOT NULL,
    actor_roles    jsonb NOT NULL DEFAULT '[]'::jsonb,
    record_time    timestamptz NOT NULL
);
CREATE INDEX consents_by_customer ON consents (customer_id, record_time DESC, id DESC);
