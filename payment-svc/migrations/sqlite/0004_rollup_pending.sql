-- What each write of a transaction changes in the revenue rollup, recorded in the write's
-- transaction and folded into payment_rollup_revenue (and deleted) by src/store/mod.rs
-- (`fold_revenue`).
CREATE TABLE payment_rollup_pending (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket          INTEGER NOT NULL,
    currency        TEXT NOT NULL,
    captured_minor  INTEGER NOT NULL,
    refunded_minor  INTEGER NOT NULL
);
