//! Persistence of the segments' projection: the customers' sold orders from `order-events`
//! (`customer_sales`, one row per confirmed order) and, per customer and currency, what stands of
//! them (`order_history`), which `ListCustomers` filters on and reads segments from.
//!
//! Each change locks the customer's row first (as an erasure does): changes of one customer's
//! sales, arriving on different consumer lanes, then run one after the other, each rewriting
//! `order_history` from every sale committed before it; and an erasure either runs after a
//! change (and deletes what it wrote) or before it (and the change finds the customer erased and
//! writes nothing).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ordermesh_platform::db::columns::{Id, Time};
use ordermesh_platform::events::Tx;
use ordermesh_platform::{StoreResult, on_pool, on_tx};
use sqlx::{Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::{Store, locked_customer};
use crate::domain::{OrderHistory, Sale, Segment, SegmentBounds};

/// What [`Store::record_sale`] and [`Store::cancel_sale`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleChange {
    /// The customer's sold orders changed.
    Applied,
    /// Nothing to do: the sale was recorded (or cancelled) before.
    Unchanged,
    /// The customer is unknown here, or erased: its orders are not recorded.
    NoCustomer,
}

#[derive(sqlx::FromRow)]
struct HistoryRow {
    customer_id: Id,
    currency_code: String,
    sold_orders: i64,
    sold_minor: i64,
    first_order_time: Time,
    last_order_time: Time,
}

/// The number of a customer's sold orders, for a `customers` row of the query around it.
const SOLD_ORDERS: &str = "(SELECT COALESCE(SUM(h.sold_orders), 0) FROM order_history h \
     WHERE h.customer_id = customers.id)";

/// Appends to `q` (a query over `customers`) the condition that the customer is in every one of
/// `segments` under `bounds`: the rules of [`SegmentBounds::contains`], in SQL (`tests/segments.rs`
/// holds the two to the same answers).
pub(super) fn push_segments<DB>(q: &mut QueryBuilder<DB>, segments: &[Segment], bounds: &SegmentBounds)
where
    DB: sqlx::Database,
    Time: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    if segments.is_empty() {
        return;
    }
    q.push(" AND status IN ('ACTIVE', 'SUSPENDED')");
    for segment in segments {
        match segment {
            Segment::New => {
                q.push(" AND create_time >= ")
                    .push_bind(Time(bounds.new_since))
                    .push(format!(" AND {SOLD_ORDERS} <= 1"));
            }
            Segment::Repeat => {
                q.push(format!(" AND {SOLD_ORDERS} >= 2"));
            }
            Segment::HighValue => {
                q.push(
                    " AND EXISTS (SELECT 1 FROM order_history h WHERE h.customer_id = customers.id \
                     AND h.sold_minor >= ",
                )
                .push_bind(bounds.high_value_minor)
                .push(")");
            }
            Segment::Dormant => {
                q.push(format!(" AND {SOLD_ORDERS} >= 1"))
                    .push(
                        " AND NOT EXISTS (SELECT 1 FROM order_history h WHERE h.customer_id = customers.id \
                         AND h.last_order_time >= ",
                    )
                    .push_bind(Time(bounds.dormant_before))
                    .push(")");
            }
        }
    }
}

impl Store {
    /// Records `sale` (an `OrderConfirmed`) in `tx`. A sale already recorded, even one cancelled
    /// since, changes nothing.
    pub async fn record_sale(&self, tx: &mut Tx, sale: &Sale) -> StoreResult<SaleChange> {
        if !self.lock_live_customer(tx, sale.customer_id).await? {
            return Ok(SaleChange::NoCustomer);
        }
        let inserted = on_tx!(tx, |conn| {
            sqlx::query(
                "INSERT INTO customer_sales (order_id, customer_id, currency_code, amount_minor, sold_time) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(Id(sale.order_id))
            .bind(Id(sale.customer_id))
            .bind(&sale.currency_code)
            .bind(sale.amount_minor)
            .bind(Time(sale.sold_time))
            .execute(&mut *conn)
            .await?
            .rows_affected()
        });
        if inserted == 0 {
            return Ok(SaleChange::Unchanged);
        }
        rewrite_history(tx, sale.customer_id).await?;
        Ok(SaleChange::Applied)
    }

    /// Takes back the sale of order `order_id` of customer `customer_id` (an `OrderCancelled`
    /// after confirmation) in `tx`. An order never sold, or cancelled before, changes nothing.
    pub async fn cancel_sale(
        &self,
        tx: &mut Tx,
        customer_id: Uuid,
        order_id: Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<SaleChange> {
        if !self.lock_live_customer(tx, customer_id).await? {
            return Ok(SaleChange::NoCustomer);
        }
        let cancelled = on_tx!(tx, |conn| {
            sqlx::query(
                "UPDATE customer_sales SET cancel_time = $3 \
                 WHERE order_id = $1 AND customer_id = $2 AND cancel_time IS NULL",
            )
            .bind(Id(order_id))
            .bind(Id(customer_id))
            .bind(Time(at))
            .execute(&mut *conn)
            .await?
            .rows_affected()
        });
        if cancelled == 0 {
            return Ok(SaleChange::Unchanged);
        }
        rewrite_history(tx, customer_id).await?;
        Ok(SaleChange::Applied)
    }

    /// Whether customer `id` exists and is not erased, locking its row for the rest of `tx`.
    async fn lock_live_customer(&self, tx: &mut Tx, id: Uuid) -> StoreResult<bool> {
        Ok(locked_customer(tx, id).await?.is_some_and(|c| !c.status.is_erased()))
    }

    /// The sold orders of each customer of `ids` that has any (the others have none).
    pub async fn order_histories(&self, ids: &[Uuid]) -> StoreResult<HashMap<Uuid, OrderHistory>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = on_pool!(&self.0, |pool| {
            let mut q = QueryBuilder::new(
                "SELECT customer_id, currency_code, sold_orders, sold_minor, first_order_time, last_order_time \
                 FROM order_history WHERE customer_id IN (",
            );
            let mut list = q.separated(", ");
            for id in ids {
                list.push_bind(Id(*id));
            }
            q.push(")");
            q.build_query_as::<HistoryRow>().fetch_all(pool).await
        })?;
        let mut histories: HashMap<Uuid, OrderHistory> = HashMap::new();
        for row in rows {
            let h = histories.entry(row.customer_id.0).or_default();
            h.sold_orders += row.sold_orders;
            h.sold_value.insert(row.currency_code, row.sold_minor);
            let (first, last) = (row.first_order_time.0, row.last_order_time.0);
            h.first_order_time = Some(h.first_order_time.map_or(first, |t| t.min(first)));
            h.last_order_time = Some(h.last_order_time.map_or(last, |t| t.max(last)));
        }
        Ok(histories)
    }
}

/// Rewrites customer `customer_id`'s `order_history` from its sales that stand. From scratch
/// rather than by increments: a cancellation of the latest sale moves the last order time back
/// to the one before, which only the sales know.
async fn rewrite_history(tx: &mut Tx, customer_id: Uuid) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query("DELETE FROM order_history WHERE customer_id = $1")
            .bind(Id(customer_id))
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO order_history (customer_id, currency_code, sold_orders, sold_minor, first_order_time, \
             last_order_time) \
             SELECT customer_id, currency_code, COUNT(*), SUM(amount_minor), MIN(sold_time), MAX(sold_time) \
             FROM customer_sales WHERE customer_id = $1 AND cancel_time IS NULL \
             GROUP BY customer_id, currency_code",
        )
        .bind(Id(customer_id))
        .execute(&mut *conn)
        .await
        .map(drop)
    })?;
    Ok(())
}
