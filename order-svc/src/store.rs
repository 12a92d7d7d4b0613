//! Persistence of orders, their items and status history on PostgreSQL or SQLite. Every
//! statement is written once (`on_pool!`/`on_tx!` compile it for both backends); the behaviour
//! suite in `tests/store.rs` runs on both. Status changes are compare-and-set on `version`, so
//! concurrent transitions of one order cannot both apply, with no backend-specific row locks.

use chrono::{DateTime, Utc};
use ordermesh_platform::analytics::{DayRange, fold_pending};
use ordermesh_platform::db::{Database, Migrations};
use ordermesh_platform::events::Tx;
use ordermesh_platform::{StoreError, StoreResult, on_pool, on_tx};
use sqlx::{AssertSqlSafe, Connection, Encode, Executor, FromRow, IntoArguments, Type};
use uuid::Uuid;

use crate::domain::analytics::OrderFigures;
use crate::domain::rollup::RollupDelta;
use crate::domain::{HistoryEntry, Order, OrderFilter, OrderStatus, PricedLine, TransitionFields};

mod rollups;

use rollups::RollupConnection;

pub fn migrations() -> Migrations {
    Migrations::with_platform(
        &[
            (1, "orders", include_str!("../migrations/postgres/0001_orders.sql")),
            (
                2,
                "analytics",
                include_str!("../migrations/postgres/0002_analytics.sql"),
            ),
            (3, "rollups", include_str!("../migrations/postgres/0003_rollups.sql")),
            (
                4,
                "rollup pending",
                include_str!("../migrations/postgres/0004_rollup_pending.sql"),
            ),
        ],
        &[
            (1, "orders", include_str!("../migrations/sqlite/0001_orders.sql")),
            (2, "analytics", include_str!("../migrations/sqlite/0002_analytics.sql")),
            (3, "rollups", include_str!("../migrations/sqlite/0003_rollups.sql")),
            (
                4,
                "rollup pending",
                include_str!("../migrations/sqlite/0004_rollup_pending.sql"),
            ),
        ],
    )
}

const SELECT_ORDER: &str = "SELECT id, customer_id, status, total_minor, currency, payment_method_token, \
     idempotency_key, rejection_code, rejection_reason, cancellation_reason, payment_id, shipping_address, carrier, \
     tracking_number, correlation_id, version, created_at, updated_at, shipped_at, delivered_at FROM orders";

const SELECT_ITEMS: &str = "SELECT product_id, sku, name, unit_price_minor, currency, quantity FROM order_items \
     WHERE order_id = $1 ORDER BY line_no";

const SELECT_HISTORY: &str = "SELECT seq, from_status, to_status, reason, actor, cause_event_id, changed_at \
     FROM order_status_history WHERE order_id = $1 ORDER BY seq";

const INSERT_HISTORY: &str = "INSERT INTO order_status_history \
     (order_id, seq, from_status, to_status, reason, actor, cause_event_id, changed_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// The orders of this service's database.
#[derive(Clone, Debug)]
pub struct Store(Database);

impl Store {
    pub fn new(db: &Database) -> Self {
        Self(db.clone())
    }

    /// Inserts a new order with its items and first history entry, and counts it in the
    /// analytics rollups, inside the caller's transaction (which also holds its `OrderPlaced`
    /// event). A duplicate
    /// `(customer_id, idempotency_key)` is a unique violation for the caller to resolve.
    pub async fn insert(&self, tx: &mut Tx, order: &Order) -> StoreResult<()> {
        let product_ids = order
            .items
            .iter()
            .map(|item| Uuid::parse_str(&item.product_id).map_err(|e| sqlx::Error::Encode(e.into())))
            .collect::<Result<Vec<_>, _>>()?;
        on_tx!(tx, |conn| {
            sqlx::query(
                "INSERT INTO orders (id, customer_id, status, total_minor, currency, payment_method_token, \
                 idempotency_key, shipping_address, correlation_id, version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(order.id)
            .bind(order.customer_id)
            .bind(order.status.as_str())
            .bind(order.total_minor)
            .bind(&order.currency)
            .bind(&order.payment_method_token)
            .bind(&order.idempotency_key)
            .bind(&order.shipping_address)
            .bind(&order.correlation_id)
            .bind(order.version)
            .bind(order.created_at)
            .bind(order.updated_at)
            .execute(&mut *conn)
            .await?;
            for (line_no, (item, product_id)) in order.items.iter().zip(product_ids).enumerate() {
                sqlx::query(
                    "INSERT INTO order_items (order_id, line_no, product_id, sku, name, unit_price_minor, currency, \
                     quantity) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(order.id)
                .bind(line_no as i32)
                .bind(product_id)
                .bind(&item.sku)
                .bind(&item.name)
                .bind(item.unit_price_minor)
                .bind(&item.currency)
                .bind(item.quantity)
                .execute(&mut *conn)
                .await?;
            }
            for entry in &order.history {
                conn.insert_history(order.id, entry).await?;
            }
            conn.record_rollups(&RollupDelta::placed(order)).await
        })
    }

    /// The order a customer placed with `key`, if any.
    pub async fn find_by_idempotency_key(&self, customer_id: Uuid, key: &str) -> StoreResult<Option<Uuid>> {
        on_pool!(&self.0, |pool| {
            Ok(
                sqlx::query_scalar("SELECT id FROM orders WHERE customer_id = $1 AND idempotency_key = $2")
                    .bind(customer_id)
                    .bind(key)
                    .fetch_optional(pool)
                    .await?,
            )
        })
    }

    /// The order with its items and history.
    pub async fn get(&self, id: Uuid) -> StoreResult<Option<Order>> {
        on_pool!(&self.0, |pool| pool.acquire().await?.read_order(id).await)
    }

    /// The order as seen inside `tx` (for a transition decided in the same transaction).
    pub async fn get_in_tx(&self, tx: &mut Tx, id: Uuid) -> StoreResult<Option<Order>> {
        on_tx!(tx, |conn| conn.read_order(id).await)
    }

    /// Moves `order` (as read, at its `version`) to `to`, recording the history entry and the
    /// change to the analytics rollups. `false` when the order changed meanwhile (the caller
    /// re-reads and decides again).
    pub async fn apply_transition(
        &self,
        tx: &mut Tx,
        order: &Order,
        to: OrderStatus,
        fields: &TransitionFields,
        entry: &HistoryEntry,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut after = order.clone();
        after.record_transition(to, fields.clone(), entry.clone());
        let delta = RollupDelta::transition(order, &after);
        on_tx!(tx, |conn| {
            let updated = sqlx::query(
                "UPDATE orders SET status = $1, version = version + 1, updated_at = $2, \
                 rejection_code = COALESCE($3, rejection_code), rejection_reason = COALESCE($4, rejection_reason), \
                 cancellation_reason = COALESCE($5, cancellation_reason), payment_id = COALESCE($6, payment_id), \
                 carrier = COALESCE($7, carrier), tracking_number = COALESCE($8, tracking_number), \
                 shipped_at = CASE WHEN $1 = 'SHIPPED' THEN $2 ELSE shipped_at END, \
                 delivered_at = CASE WHEN $1 = 'DELIVERED' THEN $2 ELSE delivered_at END \
                 WHERE id = $9 AND version = $10",
            )
            .bind(to.as_str())
            .bind(now)
            .bind(fields.rejection_code.as_deref())
            .bind(fields.rejection_reason.as_deref())
            .bind(fields.cancellation_reason.as_deref())
            .bind(fields.payment_id.as_deref())
            .bind(fields.carrier.as_deref())
            .bind(fields.tracking_number.as_deref())
            .bind(order.id)
            .bind(order.version)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if updated == 0 {
                return Ok(false);
            }
            conn.insert_history(order.id, entry).await?;
            conn.record_rollups(&delta).await?;
            Ok(true)
        })
    }

    /// Newest first, strictly after `after` (`(created_at, id)` of the last row of the previous
    /// page).
    pub async fn list(
        &self,
        filter: &OrderFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: usize,
    ) -> StoreResult<Vec<Order>> {
        // Optional filters are written as `($n IS NULL OR …)` so one statement serves every
        // combination; the statuses travel as one `,A,B,` text both backends can LIKE.
        let statuses = (!filter.statuses.is_empty()).then(|| format!(",{},", filter.statuses.join(",")));
        let sql = format!(
            "{SELECT_ORDER} WHERE ($1 IS NULL OR customer_id = $1) \
             AND ($2 IS NULL OR $2 LIKE '%,' || status || ',%') \
             AND ($3 IS NULL OR created_at >= $3) AND ($4 IS NULL OR created_at < $4) \
             AND ($5 IS NULL OR created_at < $5 OR (created_at = $5 AND id < $6)) \
             ORDER BY created_at DESC, id DESC LIMIT $7"
        );
        on_pool!(&self.0, |pool| {
            let mut conn = pool.acquire().await?;
            let rows: Vec<OrderRow> = sqlx::query_as(AssertSqlSafe(sql))
                .bind(filter.customer_id)
                .bind(statuses.as_deref())
                .bind(filter.created_after)
                .bind(filter.created_before)
                .bind(after.map(|(at, _)| at))
                .bind(after.map(|(_, id)| id))
                .bind(limit as i64)
                .fetch_all(&mut *conn)
                .await?;
            let mut orders = Vec::with_capacity(rows.len());
            for row in rows {
                orders.push(conn.with_children(row).await?);
            }
            Ok(orders)
        })
    }

    /// The figures of the orders placed in `range`, summed from the analytics rollups (the
    /// recorded deltas folded first, so every write committed before counts) and assembled by
    /// [`crate::domain::analytics`].
    pub async fn analytics(&self, range: &DayRange, top: usize) -> StoreResult<OrderFigures> {
        self.fold_rollups().await?;
        rollups::figures(&self.0, range, top).await
    }

    /// Folds the rollup deltas the writes recorded into the rollups; how many it folded.
    pub async fn fold_rollups(&self) -> StoreResult<u64> {
        fold_pending(&self.0, &rollups::OrderRollups).await
    }

    /// Ids of customer `customer_id`'s orders in `statuses`, inside `tx`.
    pub async fn orders_of_in(
        &self,
        tx: &mut Tx,
        customer_id: Uuid,
        statuses: &[OrderStatus],
    ) -> StoreResult<Vec<Uuid>> {
        let statuses = format!(
            ",{},",
            statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
        );
        on_tx!(tx, |conn| {
            Ok(sqlx::query_scalar(
                "SELECT id FROM orders WHERE customer_id = $1 AND $2 LIKE '%,' || status || ',%' ORDER BY created_at, id",
            )
            .bind(customer_id)
            .bind(&statuses)
            .fetch_all(&mut *conn)
            .await?)
        })
    }

    /// Removes the personal data of customer `customer_id`'s orders inside `tx`: the shipping
    /// address (recipient name and street), the payment-method token, the free-text reason of
    /// a cancellation, and the identity subject of a client in the history. Ids, items, amounts,
    /// statuses and times stay (accounting). How many orders it touched.
    pub async fn anonymise_customer(&self, tx: &mut Tx, customer_id: Uuid) -> StoreResult<u64> {
        on_tx!(tx, |conn| {
            let touched = sqlx::query(
                "UPDATE orders SET shipping_address = NULL, payment_method_token = '', idempotency_key = NULL,                  cancellation_reason = CASE WHEN cancellation_reason IS NULL THEN NULL ELSE $2 END                  WHERE customer_id = $1",
            )
            .bind(customer_id)
            .bind(ERASED_TEXT)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            sqlx::query(
                "UPDATE order_status_history SET                  actor = CASE WHEN actor LIKE 'client:%' THEN 'client:erased' ELSE actor END,                  reason = CASE WHEN to_status = 'CANCELLED' AND reason IS NOT NULL THEN $2 ELSE reason END                  WHERE order_id IN (SELECT id FROM orders WHERE customer_id = $1)",
            )
            .bind(customer_id)
            .bind(ERASED_TEXT)
            .execute(&mut *conn)
            .await?;
            Ok(touched)
        })
    }

    /// A transaction on this store's database, for changes that commit with their events.
    pub async fn begin(&self) -> StoreResult<Tx> {
        Ok(Tx::begin(&self.0).await?)
    }
}

/// What replaces an erased free text.
pub const ERASED_TEXT: &str = "[erased]";

/// An `orders` row.
#[derive(FromRow)]
struct OrderRow {
    id: Uuid,
    customer_id: Uuid,
    status: String,
    total_minor: i64,
    currency: String,
    payment_method_token: String,
    idempotency_key: Option<String>,
    rejection_code: Option<String>,
    rejection_reason: Option<String>,
    cancellation_reason: Option<String>,
    payment_id: Option<String>,
    shipping_address: Option<Vec<u8>>,
    carrier: Option<String>,
    tracking_number: Option<String>,
    correlation_id: String,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
}

/// An `order_items` row.
#[derive(FromRow)]
struct ItemRow {
    product_id: Uuid,
    sku: String,
    name: String,
    unit_price_minor: i64,
    currency: String,
    quantity: i32,
}

/// An `order_status_history` row.
#[derive(FromRow)]
struct HistoryRow {
    seq: i32,
    from_status: Option<String>,
    to_status: String,
    reason: Option<String>,
    actor: String,
    cause_event_id: Option<String>,
    changed_at: DateTime<Utc>,
}

fn status(column: &'static str, value: &str) -> StoreResult<OrderStatus> {
    OrderStatus::parse(value).ok_or_else(|| StoreError::corrupt(column, value))
}

/// The order of `row` with its items and history.
fn order(row: OrderRow, items: Vec<ItemRow>, history: Vec<HistoryRow>) -> StoreResult<Order> {
    let items = items
        .into_iter()
        .map(|item| PricedLine {
            product_id: item.product_id.to_string(),
            sku: item.sku,
            name: item.name,
            unit_price_minor: item.unit_price_minor,
            currency: item.currency,
            quantity: item.quantity,
        })
        .collect();
    let history = history
        .into_iter()
        .map(|entry| {
            Ok(HistoryEntry {
                seq: entry.seq,
                from: entry
                    .from_status
                    .as_deref()
                    .map(|s| status("from_status", s))
                    .transpose()?,
                to: status("to_status", &entry.to_status)?,
                reason: entry.reason,
                actor: entry.actor,
                cause_event_id: entry.cause_event_id,
                changed_at: entry.changed_at,
            })
        })
        .collect::<StoreResult<_>>()?;
    Ok(Order {
        id: row.id,
        customer_id: row.customer_id,
        status: status("status", &row.status)?,
        items,
        total_minor: row.total_minor,
        currency: row.currency,
        payment_method_token: row.payment_method_token,
        idempotency_key: row.idempotency_key,
        rejection_code: row.rejection_code,
        rejection_reason: row.rejection_reason,
        cancellation_reason: row.cancellation_reason,
        payment_id: row.payment_id,
        shipping_address: row.shipping_address,
        carrier: row.carrier,
        tracking_number: row.tracking_number,
        correlation_id: row.correlation_id,
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
        shipped_at: row.shipped_at,
        delivered_at: row.delivered_at,
        history,
    })
}

/// The database of connection type `C`.
type Db<C> = <C as Connection>::Database;
type DbRow<C> = <Db<C> as sqlx::Database>::Row;
type DbArguments<C> = <Db<C> as sqlx::Database>::Arguments;

/// Reads and writes on one connection of either backend: written once, for every connection
/// whose backend encodes and decodes the types below (both do).
trait OrderConnection {
    async fn read_order(&mut self, id: Uuid) -> StoreResult<Option<Order>>;
    /// The order of `row`, with its items and history read.
    async fn with_children(&mut self, row: OrderRow) -> StoreResult<Order>;
    async fn insert_history(&mut self, order_id: Uuid, entry: &HistoryEntry) -> StoreResult<()>;
}

impl<C> OrderConnection for C
where
    C: Connection,
    for<'c> &'c mut C: Executor<'c, Database = Db<C>>,
    DbArguments<C>: IntoArguments<Db<C>>,
    for<'q> Uuid: Encode<'q, Db<C>> + Type<Db<C>>,
    for<'q> i32: Encode<'q, Db<C>> + Type<Db<C>>,
    for<'q> String: Encode<'q, Db<C>> + Type<Db<C>>,
    for<'q> Option<String>: Encode<'q, Db<C>>,
    for<'q> DateTime<Utc>: Encode<'q, Db<C>> + Type<Db<C>>,
    for<'r> OrderRow: FromRow<'r, DbRow<C>>,
    for<'r> ItemRow: FromRow<'r, DbRow<C>>,
    for<'r> HistoryRow: FromRow<'r, DbRow<C>>,
{
    async fn read_order(&mut self, id: Uuid) -> StoreResult<Option<Order>> {
        let row: Option<OrderRow> = sqlx::query_as(AssertSqlSafe(format!("{SELECT_ORDER} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&mut *self)
            .await?;
        match row {
            Some(row) => Ok(Some(self.with_children(row).await?)),
            None => Ok(None),
        }
    }

    async fn with_children(&mut self, row: OrderRow) -> StoreResult<Order> {
        let items = sqlx::query_as(SELECT_ITEMS).bind(row.id).fetch_all(&mut *self).await?;
        let history = sqlx::query_as(SELECT_HISTORY)
            .bind(row.id)
            .fetch_all(&mut *self)
            .await?;
        order(row, items, history)
    }

    async fn insert_history(&mut self, order_id: Uuid, entry: &HistoryEntry) -> StoreResult<()> {
        sqlx::query(INSERT_HISTORY)
            .bind(order_id)
            .bind(entry.seq)
            .bind(entry.from.map(|s| s.as_str().to_owned()))
            .bind(entry.to.as_str().to_owned())
            .bind(entry.reason.clone())
            .bind(entry.actor.clone())
            .bind(entry.cause_event_id.clone())
            .bind(entry.changed_at)
            .execute(&mut *self)
            .await?;
        Ok(())
    }
}
