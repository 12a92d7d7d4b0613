-- See the PostgreSQL migration.
CREATE TABLE erased_customers (
    customer_id BLOB PRIMARY KEY,
    erased_at   TEXT NOT NULL
);
