-- Revenue (GetRevenueAnalytics) sums the captures and refunds that succeeded in a range.
CREATE INDEX transactions_settled ON transactions (update_time) INCLUDE (payment_id, kind, amount_minor)
    WHERE status = 'SUCCEEDED' AND kind IN ('CAPTURE', 'REFUND');
