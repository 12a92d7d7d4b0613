-- Analytics rollups (GetOrderAnalytics): the figures of the orders placed in each unit of time,
-- changed by the store in the transaction of every write of an order (src/store/rollups.rs), so
-- a range is read from a few hundred rows instead of every order in it. Times are 15-minute UTC
-- buckets (epoch seconds / 900); a unit is `span` buckets from bucket `start`, with the spans
-- of ordermesh_platform::analytics::SPANS (a quarter hour, a UTC day, 30 UTC days). Counts of
-- statuses no order is in any more stay as zero rows.
CREATE TABLE order_rollup_placed (
    bucket  INTEGER PRIMARY KEY,
    orders  INTEGER NOT NULL
);
CREATE TABLE order_rollup_status (
    span    INTEGER NOT NULL,
    start   INTEGER NOT NULL,
    status  TEXT NOT NULL,
    orders  INTEGER NOT NULL,
    PRIMARY KEY (span, start, status)
);
-- Orders REJECTED, by rejection code ('' when none was stored).
CREATE TABLE order_rollup_rejections (
    span    INTEGER NOT NULL,
    start   INTEGER NOT NULL,
    code    TEXT NOT NULL,
    orders  INTEGER NOT NULL,
    PRIMARY KEY (span, start, code)
);
-- Lines of orders CONFIRMED, SHIPPED or DELIVERED; `name` is the latest sale's.
CREATE TABLE order_rollup_sales (
    span           INTEGER NOT NULL,
    start          INTEGER NOT NULL,
    product_id     TEXT NOT NULL,
    sku            TEXT NOT NULL,
    currency       TEXT NOT NULL,
    name           TEXT NOT NULL,
    units          INTEGER NOT NULL,
    revenue_minor  INTEGER NOT NULL,
    PRIMARY KEY (span, start, product_id, sku, currency)
);
-- Confirmations by time from placement: a histogram of bins (lower bound in microseconds, see
-- domain::analytics::latency_bin) with the exact sum of the times in each.
CREATE TABLE order_rollup_confirm (
    span    INTEGER NOT NULL,
    start   INTEGER NOT NULL,
    bin     INTEGER NOT NULL,
    orders  INTEGER NOT NULL,
    micros  INTEGER NOT NULL,
    PRIMARY KEY (span, start, bin)
);

-- The analytics read the rollups now; these indexes only served the old per-order queries.
DROP INDEX orders_placed_figures;
DROP INDEX order_history_confirmed;

-- Backfill: the existing orders, counted as the store counts them.
CREATE TEMP TABLE rollup_spans (span INTEGER NOT NULL);
INSERT INTO rollup_spans VALUES (1), (96), (2880);
-- The bins' lower bounds: 0, then each the last plus max(1, last / 50), to 1e14 µs.
CREATE TEMP TABLE rollup_bins (lower INTEGER PRIMARY KEY);
INSERT INTO rollup_bins
WITH RECURSIVE bins (lower) AS (
    SELECT 0
    UNION ALL
    SELECT lower + MAX(1, lower / 50) FROM bins WHERE lower < 100000000000000
)
SELECT lower FROM bins;
CREATE TEMP TABLE placed AS
SELECT id, status, rejection_code, created_at,
       (CAST(strftime('%s', substr(created_at, 1, 19)) AS INTEGER) / 900) AS bucket,
       -- Microseconds since the epoch of sqlx's text (`2026-01-31T12:00:00.123456789+00:00`).
       CAST(strftime('%s', substr(created_at, 1, 19)) AS INTEGER) * 1000000 + CASE WHEN substr(created_at, 20, 1) = '.'
           THEN CAST(substr(substr(created_at, 21, instr(substr(created_at, 21), '+') - 1) || '000000', 1, 6) AS INTEGER)
           ELSE 0 END AS placed_micros
FROM orders;

INSERT INTO order_rollup_placed (bucket, orders)
SELECT bucket, COUNT(*) FROM placed GROUP BY bucket;

INSERT INTO order_rollup_status (span, start, status, orders)
SELECT s.span, b.bucket - ((b.bucket % s.span) + s.span) % s.span AS start, b.status, SUM(b.n)
FROM (SELECT bucket, status, COUNT(*) AS n FROM placed GROUP BY bucket, status) b CROSS JOIN rollup_spans s
GROUP BY s.span, start, b.status;

INSERT INTO order_rollup_rejections (span, start, code, orders)
SELECT s.span, b.bucket - ((b.bucket % s.span) + s.span) % s.span AS start, b.code, SUM(b.n)
FROM (SELECT bucket, COALESCE(rejection_code, '') AS code, COUNT(*) AS n FROM placed
      WHERE status = 'REJECTED' GROUP BY bucket, code) b CROSS JOIN rollup_spans s
GROUP BY s.span, start, b.code;

INSERT INTO order_rollup_sales (span, start, product_id, sku, currency, name, units, revenue_minor)
SELECT s.span, b.bucket - ((b.bucket % s.span) + s.span) % s.span AS start, b.product_id, b.sku, b.currency,
       MAX(b.name), SUM(b.units), SUM(b.revenue_minor)
FROM (SELECT p.bucket, i.product_id, i.sku, i.currency, MAX(i.name) AS name, SUM(i.quantity) AS units,
             SUM(i.quantity * i.unit_price_minor) AS revenue_minor
      FROM order_items i JOIN placed p ON p.id = i.order_id
      WHERE p.status IN ('CONFIRMED', 'SHIPPED', 'DELIVERED')
      GROUP BY p.bucket, i.product_id, i.sku, i.currency) b CROSS JOIN rollup_spans s
GROUP BY s.span, start, b.product_id, b.sku, b.currency;

INSERT INTO order_rollup_confirm (span, start, bin, orders, micros)
SELECT s.span, b.bucket - ((b.bucket % s.span) + s.span) % s.span AS start, b.bin, SUM(b.n), SUM(b.micros)
FROM (SELECT c.bucket, (SELECT MAX(lower) FROM rollup_bins WHERE lower <= MAX(c.micros, 0)) AS bin,
             COUNT(*) AS n, SUM(c.micros) AS micros
      FROM (SELECT p.bucket, CAST(strftime('%s', substr(h.changed_at, 1, 19)) AS INTEGER) * 1000000
                   + CASE WHEN substr(h.changed_at, 20, 1) = '.'
                     THEN CAST(substr(substr(h.changed_at, 21, instr(substr(h.changed_at, 21), '+') - 1) || '000000', 1, 6) AS INTEGER)
                     ELSE 0 END - p.placed_micros AS micros
            FROM order_status_history h JOIN placed p ON p.id = h.order_id
            WHERE h.to_status = 'CONFIRMED') c
      GROUP BY c.bucket, c.micros) b CROSS JOIN rollup_spans s
GROUP BY s.span, start, b.bin;

DROP TABLE rollup_spans;
DROP TABLE rollup_bins;
DROP TABLE placed;
