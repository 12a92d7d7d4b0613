-- GDPR: erasure requests and their confirmations, export jobs, the ERASING status and the last
-- activity of a customer (PostgreSQL).

ALTER TABLE customers DROP CONSTRAINT customers_status_check;
ALTER TABLE customers ADD CONSTRAINT customers_status_check
    CHECK (status IN ('ACTIVE', 'SUSPENDED', 'ERASING', 'ERASED'));
-- Erased and erasing customers have no e-mail address any more.
DROP INDEX customers_email_unique;
CREATE UNIQUE INDEX customers_email_unique ON customers (email_normalized)
    WHERE status NOT IN ('ERASING', 'ERASED');

-- The last sign-in, order or profile change: customers inactive for 7 years are erased
-- (`ordermesh housekeeping inactive-customers`).
ALTER TABLE customers ADD COLUMN last_activity_time timestamptz;
UPDATE customers SET last_activity_time = update_time;
ALTER TABLE customers ALTER COLUMN last_activity_time SET NOT NULL;
CREATE INDEX customers_by_activity ON customers (last_activity_time) WHERE status IN ('ACTIVE', 'SUSPENDED');

-- One erasure per customer; `reason` carries no personal data (it is in the audit trail too).
CREATE TABLE erasure_requests (
    id            uuid PRIMARY KEY,
    customer_id   uuid NOT NULL UNIQUE REFERENCES customers (id),
    reason        text NOT NULL,
    actor_kind    integer NOT NULL,
    actor_id      text NOT NULL,
    request_time  timestamptz NOT NULL,
    complete_time timestamptz
);

-- Which participant confirmed which erasure (ErasureCompleted).
CREATE TABLE erasure_confirmations (
    erasure_id   uuid NOT NULL REFERENCES erasure_requests (id),
    service      text NOT NULL,
    confirm_time timestamptz NOT NULL,
    PRIMARY KEY (erasure_id, service)
);

-- Export jobs. `document` holds the bundle once READY, until `expire_time`.
CREATE TABLE data_exports (
    id              uuid PRIMARY KEY,
    customer_id     uuid NOT NULL REFERENCES customers (id),
    state           text NOT NULL CHECK (state IN ('PENDING', 'READY')),
    actor_kind      integer NOT NULL,
    actor_id        text NOT NULL,
    actor_roles     jsonb NOT NULL DEFAULT '[]'::jsonb,
    correlation_id  text NOT NULL DEFAULT '',
    create_time     timestamptz NOT NULL,
    complete_time   timestamptz,
    expire_time     timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    document        text
);
-- At most one pending export per customer: a second request returns it.
CREATE UNIQUE INDEX data_exports_one_pending ON data_exports (customer_id) WHERE state = 'PENDING';
CREATE INDEX data_exports_due ON data_exports (next_attempt_at) WHERE state = 'PENDING';
CREATE INDEX data_exports_expiry ON data_exports (expire_time) WHERE state = 'READY';
