-- Analytics rollups (GetOrderAnalytics): the figures of the orders placed in each unit of time,
-- changed by the store in the transaction of every write of an order (src/store/rollups.rs), so
-- a range is read from a few hundred rows instead of every order in it. Times are 15-minute UTC
-- buckets (epoch seconds / 900); a unit is `span` buckets from bucket `start`, with the spans
-- of ordermesh_platform::analytics::SPANS (a quarter hour, a UTC day, 30 UTC days). Counts of
-- statuses no order is in any more stay as zero rows. The tables with many rows per unit
-- (sales, confirmation bins) are partitioned by span, so a read of the few wide units does not
-- wade through the many narrow ones' pages, and the backfill writes in time order.
CREATE TABLE order_rollup_placed (
    bucket  bigint PRIMARY KEY,
    orders  bigint NOT NULL
);
CREATE TABLE order_rollup_status (
    span    bigint NOT NULL,
    start   bigint NOT NULL,
    status  text NOT NULL,
    orders  bigint NOT NULL,
    PRIMARY KEY (span, start, status)
);
-- Orders REJECTED, by rejection code ('' when none was stored).
CREATE TABLE order_rollup_rejections (
    span    bigint NOT NULL,
    start   bigint NOT NULL,
    code    text NOT NULL,
    orders  bigint NOT NULL,
    PRIMARY KEY (span, start, code)
);
-- Lines of orders CONFIRMED, SHIPPED or DELIVERED; `name` is the latest sale's.
CREATE TABLE order_rollup_sales (
    span           bigint NOT NULL,
    start          bigint NOT NULL,
    product_id     uuid NOT NULL,
    sku            text NOT NULL,
    currency       text NOT NULL,
    name           text NOT NULL,
    units          bigint NOT NULL,
    revenue_minor  bigint NOT NULL,
    PRIMARY KEY (span, start, product_id, sku, currency)
) PARTITION BY LIST (span);
CREATE TABLE order_rollup_sales_quarters PARTITION OF order_rollup_sales FOR VALUES IN (1);
CREATE TABLE order_rollup_sales_days PARTITION OF order_rollup_sales FOR VALUES IN (96);
CREATE TABLE order_rollup_sales_months PARTITION OF order_rollup_sales FOR VALUES IN (2880);
-- Confirmations by time from placement: a histogram of bins (lower bound in microseconds, see
-- domain::analytics::latency_bin) with the exact sum of the times in each.
CREATE TABLE order_rollup_confirm (
    span    bigint NOT NULL,
    start   bigint NOT NULL,
    bin     bigint NOT NULL,
    orders  bigint NOT NULL,
    micros  bigint NOT NULL,
    PRIMARY KEY (span, start, bin)
) PARTITION BY LIST (span);
CREATE TABLE order_rollup_confirm_quarters PARTITION OF order_rollup_confirm FOR VALUES IN (1);
CREATE TABLE order_rollup_confirm_days PARTITION OF order_rollup_confirm FOR VALUES IN (96);
CREATE TABLE order_rollup_confirm_months PARTITION OF order_rollup_confirm FOR VALUES IN (2880);

-- The analytics read the rollups now; these indexes only served the old per-order queries.
DROP INDEX orders_placed_figures;
DROP INDEX order_history_confirmed;

-- Backfill: the existing orders, counted as the store counts them.
CREATE TEMPORARY TABLE rollup_spans (span bigint NOT NULL);
INSERT INTO rollup_spans VALUES (1), (96), (2880);
-- The bins' lower bounds: 0, then each the last plus max(1, last / 50), to 1e14 µs.
CREATE TEMPORARY TABLE rollup_bins (lower bigint PRIMARY KEY);
INSERT INTO rollup_bins
WITH RECURSIVE bins (lower) AS (
    SELECT CAST(0 AS bigint)
    UNION ALL
    SELECT lower + GREATEST(1, lower / 50) FROM bins WHERE lower < 100000000000000
)
SELECT lower FROM bins;
CREATE TEMPORARY TABLE placed AS
SELECT id, status, rejection_code, created_at,
       CAST(floor(extract(epoch FROM created_at) / 900) AS bigint) AS bucket
FROM orders;

INSERT INTO order_rollup_placed (bucket, orders)
SELECT bucket, COUNT(*) FROM placed GROUP BY bucket ORDER BY bucket;

INSERT INTO order_rollup_status (span, start, status, orders)
SELECT s.span, b.bucket - mod(mod(b.bucket, s.span) + s.span, s.span) AS start, b.status, SUM(b.n)
FROM (SELECT bucket, status, COUNT(*) AS n FROM placed GROUP BY bucket, status) b CROSS JOIN rollup_spans s
GROUP BY s.span, start, b.status ORDER BY s.span, start;

INSERT INTO order_rollup_rejections (span, start, code, orders)
SELECT s.span, b.bucket - mod(mod(b.bucket, s.span) + s.span, s.span) AS start, b.code, SUM(b.n)
FROM (SELECT bucket, COALESCE(rejection_code, '') AS code, COUNT(*) AS n FROM placed
      WHERE status = 'REJECTED' GROUP BY bucket, code) b CROSS JOIN rollup_spans s
GROUP BY s.span, start, b.code ORDER BY s.span, start;

INSERT INTO order_rollup_sales (span, start, product_id, sku, currency, name, units, revenue_minor)
SELECT s.span, b.bucket - mod(mod(b.bucket, s.span) + s.span, s.span) AS start, b.product_id, b.sku, b.currency,
       MAX(b.name), SUM(b.units), SUM(b.revenue_minor)
FROM (SELECT p.bucket, i.product_id, i.sku, i.currency, MAX(i.name) AS name, SUM(i.quantity) AS units,
             SUM(i.quantity * i.unit_price_minor) AS revenue_minor
      FROM order_items i JOIN placed p ON p.id = i.order_id
      WHERE p.status IN ('CONFIRMED', 'SHIPPED', 'DELIVERED')
      GROUP BY p.bucket, i.product_id, i.sku, i.currency) b CROSS JOIN rollup_spans s
GROUP BY s.span, start, b.product_id, b.sku, b.currency ORDER BY s.span, start;

INSERT INTO order_rollup_confirm (span, start, bin, orders, micros)
SELECT s.span, b.bucket - mod(mod(b.bucket, s.span) + s.span, s.span) AS start, b.bin, SUM(b.n), SUM(b.micros)
FROM (SELECT c.bucket, (SELECT MAX(lower) FROM rollup_bins WHERE lower <= GREATEST(c.micros, 0)) AS bin,
             COUNT(*) AS n, SUM(c.micros) AS micros
      FROM (SELECT p.bucket, CAST(extract(epoch FROM h.changed_at - p.created_at) * 1000000 AS bigint) AS micros
            FROM order_status_history h JOIN placed p ON p.id = h.order_id
            WHERE h.to_status = 'CONFIRMED') c
      GROUP BY c.bucket, c.micros) b CROSS JOIN rollup_spans s
GROUP BY s.span, start, b.bin ORDER BY s.span, start;

DROP TABLE rollup_spans, rollup_bins, placed;
