-- The last status change of each order this service has applied, so that changes are told in
-- the order they happened even when several replicas consume them (an early one waits for its
-- turn). Ids and status names only.
CREATE TABLE order_progress (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
