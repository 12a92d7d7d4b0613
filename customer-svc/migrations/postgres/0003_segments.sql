-- Customer segments (PostgreSQL): customer-svc's projection of the customers' sold orders, built
-- from `order-events`. It holds counts, amounts and times keyed by ids, no personal data; an
-- erasure deletes a customer's rows.

-- One row per confirmed order: OrderCancelled carries no total, so what a cancellation takes
-- back is read here. A cancelled sale keeps its row (cancel_time set), so a late or replayed
-- OrderConfirmed of the same order cannot count it again.
CREATE TABLE customer_sales (
    order_id      uuid PRIMARY KEY,
    customer_id   uuid NOT NULL REFERENCES customers (id),
    currency_code text NOT NULL,
    amount_minor  bigint NOT NULL,
    sold_time     timestamptz NOT NULL,
    cancel_time   timestamptz
);
CREATE INDEX customer_sales_by_customer ON customer_sales (customer_id);

-- Per customer and currency, the sales that stand (not cancelled): what the segments are read
-- from. Rewritten from `customer_sales` on every change of the customer's sales; no row for a
-- customer without any.
CREATE TABLE order_history (
    customer_id      uuid NOT NULL REFERENCES customers (id),
    currency_code    text NOT NULL,
    sold_orders      bigint NOT NULL,
    sold_minor       bigint NOT NULL,
    first_order_time timestamptz NOT NULL,
    last_order_time  timestamptz NOT NULL,
    PRIMARY KEY (customer_id, currency_code)
);
