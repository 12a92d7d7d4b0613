-- See the PostgreSQL migration. On SQLite every write transaction holds the single write lock
-- (BEGIN IMMEDIATE), so AUTOINCREMENT ids also become visible in id order.
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient_customer_id BLOB,
    recipient_role TEXT,
    notification_type TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    data TEXT NOT NULL,
    correlation_id TEXT NOT NULL DEFAULT '',
    sender_id TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT,
    created_at TEXT NOT NULL,
    CHECK ((recipient_customer_id IS NULL) <> (recipient_role IS NULL))
);
CREATE INDEX notifications_customer_idx ON notifications (recipient_customer_id, id);
CREATE INDEX notifications_role_idx ON notifications (recipient_role, id);
CREATE UNIQUE INDEX notifications_idempotency_idx ON notifications (sender_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE notification_reads (
    reader TEXT NOT NULL,
    notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    read_at TEXT NOT NULL,
    PRIMARY KEY (reader, notification_id)
);

CREATE TABLE notification_preferences (
    principal TEXT PRIMARY KEY,
    channels TEXT NOT NULL,
    muted_types TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
