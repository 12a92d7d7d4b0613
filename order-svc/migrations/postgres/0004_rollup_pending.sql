-- What each write of an order changes in the analytics rollups (a JSON RollupDelta), recorded
-- in the write's transaction and folded into the rollups (and deleted) by src/store/rollups.rs:
-- adding to the few hot rollup rows in every write made concurrent writers wait for each other.
CREATE TABLE order_rollup_pending (
    id     bigserial PRIMARY KEY,
    delta  text NOT NULL
);
