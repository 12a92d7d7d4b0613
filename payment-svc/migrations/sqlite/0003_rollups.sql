-- Revenue rollup (GetRevenueAnalytics): the captures and refunds that succeeded, summed per
-- 15-minute UTC bucket of their update time (epoch seconds / 900) and payment currency. The
-- store changes it in the transaction of every write of a transaction (src/store/mod.rs,
-- `count_revenue`), so a year is read from at most 35,040 rows per currency.
CREATE TABLE payment_rollup_revenue (
    bucket          INTEGER NOT NULL,
    currency        TEXT NOT NULL,
    captured_minor  INTEGER NOT NULL,
    refunded_minor  INTEGER NOT NULL,
    PRIMARY KEY (bucket, currency)
);

-- The revenue reads the rollup now; this index only served the old per-transaction query.
DROP INDEX transactions_settled;

-- Backfill: the existing transactions, counted as the store counts them.
INSERT INTO payment_rollup_revenue (bucket, currency, captured_minor, refunded_minor)
SELECT (CAST(strftime('%s', substr(t.update_time, 1, 19)) AS INTEGER) / 900) AS b, p.currency,
       SUM(CASE WHEN t.kind = 'CAPTURE' THEN t.amount_minor ELSE 0 END),
       SUM(CASE WHEN t.kind = 'REFUND' THEN t.amount_minor ELSE 0 END)
FROM transactions t JOIN payments p ON p.id = t.payment_id
WHERE t.status = 'SUCCEEDED' AND t.kind IN ('CAPTURE', 'REFUND')
GROUP BY b, p.currency;
