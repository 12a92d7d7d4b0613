-- What each write of a transaction changes in the revenue rollup, recorded in the write's
-- transaction and folded into payment_rollup_revenue (and deleted) by src/store/mod.rs
-- (`fold_revenue`): adding to the hot rollup row of the quarter hour in every write made
-- concurrent charges wait for each other.
CREATE TABLE payment_rollup_pending (
    id              bigserial PRIMARY KEY,
    bucket          bigint NOT NULL,
    currency        text NOT NULL,
    captured_minor  bigint NOT NULL,
    refunded_minor  bigint NOT NULL
);
