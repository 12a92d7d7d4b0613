-- What each write of an order changes in the analytics rollups (a JSON RollupDelta), recorded
-- in the write's transaction and folded into the rollups (and deleted) by src/store/rollups.rs.
CREATE TABLE order_rollup_pending (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    delta  TEXT NOT NULL
);
