-- Customers erased (GDPR): no notification is stored for them any more, whatever event arrives
-- after the erasure (e.g. the cancellation of their order in flight). Ids only.
CREATE TABLE erased_customers (
    customer_id UUID PRIMARY KEY,
    erased_at   TIMESTAMPTZ NOT NULL
);
