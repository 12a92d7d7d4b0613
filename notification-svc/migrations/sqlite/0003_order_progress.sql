-- See the PostgreSQL migration.
CREATE TABLE order_progress (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
