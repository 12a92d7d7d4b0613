-- Payments of payment-svc (PostgreSQL). Runs inside the service's own schema.
-- Money is bigint minor units; the currency of a payment is the currency of all its operations.

CREATE TABLE payments (
    id                uuid PRIMARY KEY,
    order_id          uuid NOT NULL,
    customer_id       uuid NOT NULL,
    amount_minor      bigint NOT NULL CHECK (amount_minor > 0),
    currency          text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    captured_minor    bigint NOT NULL DEFAULT 0 CHECK (captured_minor >= 0 AND captured_minor <= amount_minor),
    refunded_minor    bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0 AND refunded_minor <= captured_minor),
    status            text NOT NULL CHECK (status IN ('PENDING', 'AUTHORIZED', 'CAPTURED', 'DECLINED', 'FAILED',
                                                      'PARTIALLY_REFUNDED', 'REFUNDED', 'VOIDED')),
    decline_reason    text NOT NULL DEFAULT '',
    gateway_reference text NOT NULL DEFAULT '',
    create_time       timestamptz NOT NULL,
    update_time       timestamptz NOT NULL
);
-- One payment per order that is not DECLINED or FAILED: an order is never charged twice.
CREATE UNIQUE INDEX payments_one_active_per_order ON payments (order_id) WHERE status NOT IN ('DECLINED', 'FAILED');
CREATE INDEX payments_by_order ON payments (order_id, id DESC);
CREATE INDEX payments_by_customer ON payments (customer_id, id DESC);

CREATE TABLE refunds (
    id                uuid PRIMARY KEY,
    payment_id        uuid NOT NULL REFERENCES payments (id),
    amount_minor      bigint NOT NULL CHECK (amount_minor > 0),
    reason            text NOT NULL,
    status            text NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    gateway_reference text NOT NULL DEFAULT '',
    actor_kind        integer NOT NULL,
    actor_id          text NOT NULL,
    actor_roles       text[] NOT NULL DEFAULT '{}',
    create_time       timestamptz NOT NULL,
    update_time       timestamptz NOT NULL
);
CREATE INDEX refunds_by_payment ON refunds (payment_id, id);

-- Every gateway operation. Written PENDING (the intent) before the gateway is called; the
-- idempotency key makes AuthorizePayment, CapturePayment, VoidPayment and RefundPayment
-- idempotent and is also the key sent to the gateway.
CREATE TABLE transactions (
    id                uuid PRIMARY KEY,
    payment_id        uuid NOT NULL REFERENCES payments (id),
    kind              text NOT NULL CHECK (kind IN ('AUTHORIZE', 'CAPTURE', 'REFUND', 'VOID')),
    amount_minor      bigint NOT NULL CHECK (amount_minor > 0),
    status            text NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'DECLINED', 'FAILED')),
    gateway_reference text NOT NULL DEFAULT '',
    failure_reason    text NOT NULL DEFAULT '',
    idempotency_key   text UNIQUE,
    request_hash      text NOT NULL DEFAULT '',
    capture           boolean NOT NULL DEFAULT false,
    refund_id         uuid REFERENCES refunds (id),
    create_time       timestamptz NOT NULL,
    update_time       timestamptz NOT NULL
);
CREATE INDEX transactions_by_payment ON transactions (payment_id, id);
