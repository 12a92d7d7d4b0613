-- Notifications of customers and staff role groups. `id` is the store-assigned, strictly
-- increasing sequence used as the public notification id and the Subscribe resume point.
-- Inserts take a transaction-level advisory lock (see store.rs), so ids become visible in id
-- order: a reader that has seen id N will never later see a new id below N.
CREATE TABLE notifications (
    id BIGSERIAL PRIMARY KEY,
    recipient_customer_id UUID,
    recipient_role TEXT,
    notification_type TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    data JSONB NOT NULL,
    correlation_id TEXT NOT NULL DEFAULT '',
    sender_id TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    CHECK ((recipient_customer_id IS NULL) <> (recipient_role IS NULL))
);
CREATE INDEX notifications_customer_idx ON notifications (recipient_customer_id, id);
CREATE INDEX notifications_role_idx ON notifications (recipient_role, id);
CREATE UNIQUE INDEX notifications_idempotency_idx ON notifications (sender_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Read state per reader: `customer:<uuid>` (every session of a customer) or `employee:<subject>`.
CREATE TABLE notification_reads (
    reader TEXT NOT NULL,
    notification_id BIGINT NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    read_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (reader, notification_id)
);

-- Preferences per principal (`customer:<uuid>` or `employee:<subject>`); comma-separated enum names.
CREATE TABLE notification_preferences (
    principal TEXT PRIMARY KEY,
    channels TEXT NOT NULL,
    muted_types TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
