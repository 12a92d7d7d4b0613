//! The analytics rollups (migration 0003): the figures of the orders placed in each unit of
//! time. Every write of an order records its [`RollupDelta`] in its transaction (migration
//! 0004, see `fold_pending` for why); [`OrderRollups`] folds the recorded deltas to the rollups (the service every second, and every
//! read first), and a range is read by summing the units that make it up. Per 15-minute bucket only the
//! placements (for the count per local day); everything wanted only in total over a range is
//! also kept per UTC day and per 30 UTC days (`SPANS`), so a year is a few hundred rows.

use chrono::NaiveDate;
use ordermesh_platform::analytics::{DayRange, PendingRollup, cover, cover_sql, take_pending_sql, units_of, units_sql};
use ordermesh_platform::db::Database;
use ordermesh_platform::events::Tx;
use ordermesh_platform::{StoreResult, on_pool, on_tx};
use sqlx::{AssertSqlSafe, Connection, Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

use super::{Db, DbArguments};
use crate::domain::OrderStatus;
use crate::domain::analytics::{self, OrderFigures, ProductSales};
use crate::domain::rollup::{self, RollupDelta};

const ADD_PLACED: &str = "INSERT INTO order_rollup_placed (bucket, orders) VALUES ($1, $2) \
     ON CONFLICT (bucket) DO UPDATE SET orders = order_rollup_placed.orders + excluded.orders";

/// The upsert adding to one figure of `table` in every unit of a bucket: the units' `(span,
/// start)` are bound as `$1..$6`, `values` are those of the `keys`, then the `replaced`
/// columns (set to the latest write's), then the `added` ones (summed). SQLite wants the
/// `WHERE` to tell an upsert's `ON CONFLICT` from a join's `ON`.
fn add_to_units(table: &str, keys: &[&str], replaced: &[&str], added: &[&str], values: &str) -> String {
    let columns = [keys, replaced, added].concat().join(", ");
    let keys = keys.join(", ");
    let set: Vec<String> = added
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .chain(replaced.iter().map(|c| format!("{c} = excluded.{c}")))
        .collect();
    format!(
        "INSERT INTO {table} (span, start, {columns}) SELECT u.span, u.start, {values} FROM ({}) u WHERE true \
         ON CONFLICT (span, start, {keys}) DO UPDATE SET {}",
        units_sql(1),
        set.join(", ")
    )
}

/// Records and adds deltas on one connection of either backend.
pub(super) trait RollupConnection {
    /// Records `delta` for [`fold`] (no rollup row is touched: a write never waits on another).
    async fn record_rollups(&mut self, delta: &RollupDelta) -> StoreResult<()>;
    /// Adds `delta` to the rollups.
    async fn add_rollups(&mut self, delta: &RollupDelta) -> StoreResult<()>;
}

/// The order rollups' recorded deltas, each batch added up ([`rollup::merge`]) before it is
/// applied.
pub(super) struct OrderRollups;

impl PendingRollup for OrderRollups {
    const PENDING: &'static str = "order_rollup_pending";

    async fn fold_batch(&self, tx: &mut Tx) -> StoreResult<u64> {
        let take = take_pending_sql(Self::PENDING, "delta");
        on_tx!(tx, |conn| {
            let recorded: Vec<(String,)> = sqlx::query_as(AssertSqlSafe(take)).fetch_all(&mut *conn).await?;
            let deltas = recorded
                .iter()
                .map(|(json,)| serde_json::from_str::<RollupDelta>(json))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| sqlx::Error::Decode(e.into()))?;
            for delta in rollup::merge(deltas) {
                conn.add_rollups(&delta).await?;
            }
            Ok(recorded.len() as u64)
        })
    }
}

impl<C> RollupConnection for C
where
    C: Connection,
    for<'c> &'c mut C: Executor<'c, Database = Db<C>>,
    DbArguments<C>: IntoArguments<Db<C>>,
    for<'q> Uuid: Encode<'q, Db<C>> + Type<Db<C>>,
    for<'q> i64: Encode<'q, Db<C>> + Type<Db<C>>,
    for<'q> String: Encode<'q, Db<C>> + Type<Db<C>>,
{
    async fn record_rollups(&mut self, delta: &RollupDelta) -> StoreResult<()> {
        let recorded = serde_json::to_string(delta).map_err(|e| sqlx::Error::Encode(e.into()))?;
        sqlx::query("INSERT INTO order_rollup_pending (delta) VALUES ($1)")
            .bind(recorded)
            .execute(&mut *self)
            .await?;
        Ok(())
    }

    async fn add_rollups(&mut self, delta: &RollupDelta) -> StoreResult<()> {
        let units = units_of(delta.bucket);
        // The statement of one figure over the bucket's units; its own values follow from $7.
        let unit_query = |sql: String| {
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (span, start) in units {
                query = query.bind(span).bind(start);
            }
            query
        };
        if delta.placed != 0 {
            sqlx::query(ADD_PLACED)
                .bind(delta.bucket)
                .bind(delta.placed)
                .execute(&mut *self)
                .await?;
        }
        for (status, n) in &delta.statuses {
            let sql = add_to_units(
                "order_rollup_status",
                &["status"],
                &[],
                &["orders"],
                "CAST($7 AS text), CAST($8 AS bigint)",
            );
            unit_query(sql)
                .bind(status.as_str().to_owned())
                .bind(*n)
                .execute(&mut *self)
                .await?;
        }
        for (code, n) in &delta.rejections {
            let sql = add_to_units(
                "order_rollup_rejections",
                &["code"],
                &[],
                &["orders"],
                "CAST($7 AS text), CAST($8 AS bigint)",
            );
            unit_query(sql).bind(code.clone()).bind(*n).execute(&mut *self).await?;
        }
        for sale in &delta.sales {
            let product_id = Uuid::parse_str(&sale.product_id).map_err(|e| sqlx::Error::Encode(e.into()))?;
            // The name is the latest sale's (a product renamed shows its new name).
            let sql = add_to_units(
                "order_rollup_sales",
                &["product_id", "sku", "currency"],
                &["name"],
                &["units", "revenue_minor"],
                "$7, CAST($8 AS text), CAST($9 AS text), CAST($10 AS text), CAST($11 AS bigint), CAST($12 AS bigint)",
            );
            unit_query(sql)
                .bind(product_id)
                .bind(sale.sku.clone())
                .bind(sale.currency.clone())
                .bind(sale.name.clone())
                .bind(sale.units)
                .bind(sale.revenue_minor)
                .execute(&mut *self)
                .await?;
        }
        for micros in &delta.confirmations {
            let sql = add_to_units(
                "order_rollup_confirm",
                &["bin"],
                &[],
                &["orders", "micros"],
                "CAST($7 AS bigint), 1, CAST($8 AS bigint)",
            );
            unit_query(sql)
                .bind(analytics::latency_bin(*micros))
                .bind(*micros)
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }
}

/// The figures of the orders placed in `range`, summed from the rollups.
pub(super) async fn figures(db: &Database, range: &DayRange, top: usize) -> StoreResult<OrderFigures> {
    let (first, end) = range.buckets();
    let units = cover_sql(&cover(first, end));
    let placed_sql = "SELECT bucket, orders FROM order_rollup_placed WHERE bucket >= $1 AND bucket < $2";
    let status_sql = format!(
        "SELECT status, CAST(SUM(orders) AS bigint) AS n FROM order_rollup_status WHERE {units} \
         GROUP BY status HAVING SUM(orders) <> 0"
    );
    let rejections_sql = format!(
        "SELECT code, CAST(SUM(orders) AS bigint) FROM order_rollup_rejections WHERE {units} \
         GROUP BY code HAVING SUM(orders) <> 0"
    );
    let sales_sql = format!(
        "SELECT product_id, sku, MAX(name), currency, CAST(SUM(units) AS bigint), CAST(SUM(revenue_minor) AS bigint) \
         FROM order_rollup_sales WHERE {units} GROUP BY product_id, sku, currency HAVING SUM(units) <> 0"
    );
    let confirm_sql = format!(
        "SELECT bin, CAST(SUM(orders) AS bigint), CAST(SUM(micros) AS bigint) FROM order_rollup_confirm \
         WHERE {units} GROUP BY bin"
    );
    type Counts = Vec<(String, i64)>;
    type Sales = Vec<(Uuid, String, String, String, i64, i64)>;
    let (placed, statuses, rejections, sales, bins): (Vec<(i64, i64)>, Counts, Counts, Sales, _) =
        on_pool!(db, |pool| {
            let placed = sqlx::query_as(placed_sql).bind(first).bind(end).fetch_all(pool).await?;
            let statuses = sqlx::query_as(AssertSqlSafe(status_sql)).fetch_all(pool).await?;
            let rejections = sqlx::query_as(AssertSqlSafe(rejections_sql)).fetch_all(pool).await?;
            let sales = sqlx::query_as(AssertSqlSafe(sales_sql)).fetch_all(pool).await?;
            let bins: Vec<(i64, i64, i64)> = sqlx::query_as(AssertSqlSafe(confirm_sql)).fetch_all(pool).await?;
            (placed, statuses, rejections, sales, bins)
        });
    let by_status: Vec<(OrderStatus, i64)> = statuses
        .into_iter()
        .filter_map(|(status, n)| Some((OrderStatus::parse(&status)?, n)))
        .collect();
    let counted: Vec<(NaiveDate, i64)> = placed.into_iter().map(|(b, n)| (range.day_of_bucket(b), n)).collect();
    let sales: Vec<ProductSales> = sales
        .into_iter()
        .map(|(product_id, sku, name, currency, units, revenue_minor)| ProductSales {
            product_id,
            sku,
            name,
            currency,
            units,
            revenue_minor,
        })
        .collect();
    let (top_by_units, top_by_revenue) = analytics::top_sellers(&sales, top);
    Ok(OrderFigures {
        orders: by_status.iter().map(|(_, n)| n).sum(),
        by_status,
        by_day: analytics::every_day(range.days(), &counted),
        top_by_units,
        top_by_revenue,
        time_to_confirm: analytics::confirmation_times(&bins),
        rejections,
    })
}
