-- Analytics (GetOrderAnalytics) read the orders placed in a range: the status and rejection
-- code come from this index alone, and the confirmations from a partial index of the history.
CREATE INDEX orders_placed_figures ON orders (created_at) INCLUDE (status, rejection_code);
CREATE INDEX order_history_confirmed ON order_status_history (order_id) INCLUDE (changed_at)
    WHERE to_status = 'CONFIRMED';
