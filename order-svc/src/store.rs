//! Persistence of orders, their items and status history on PostgreSQL or SQLite. One SQL text
//! serves both backends (`on_pool!`/`on_tx!` compile it once per backend); the behaviour suite in
//! `tests/store.rs` runs on both. Status changes are compare-and-set on `version`, so concurrent
//! transitions of one order cannot both apply, with no backend-specific row locks.

use chrono::{DateTime, Utc};
use ordermesh_platform::db::{Database, Migrations};
use ordermesh_platform::events::Tx;
use ordermesh_platform::events::outbox;
use ordermesh_platform::{on_pool, on_tx};
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{HistoryEntry, Order, OrderFilter, OrderStatus, PricedLine, TransitionFields};

pub fn migrations() -> Migrations {
    Migrations::embedded(
        &[
            &[(1, "orders", include_str!("../migrations/postgres/0001_orders.sql"))][..],
            outbox::POSTGRES_MIGRATIONS,
        ]
        .concat(),
        &[
            &[(1, "orders", include_str!("../migrations/sqlite/0001_orders.sql"))][..],
            outbox::SQLITE_MIGRATIONS,
        ]
        .concat(),
    )
}

const ORDER_COLUMNS: &str = "id, customer_id, status, total_minor, currency, payment_method_token, idempotency_key, \
     rejection_code, rejection_reason, cancellation_reason, payment_id, shipping_address, carrier, tracking_number, \
     correlation_id, version, created_at, updated_at, shipped_at, delivered_at";

/// Maps an `orders` row (any backend) to an [`Order`] without items and history.
macro_rules! order_from_row {
    ($row:expr) => {{
        let row = $row;
        let status: String = row.try_get("status")?;
        Order {
            id: row.try_get("id")?,
            customer_id: row.try_get("customer_id")?,
            status: OrderStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
            items: Vec::new(),
            total_minor: row.try_get("total_minor")?,
            currency: row.try_get("currency")?,
            payment_method_token: row.try_get("payment_method_token")?,
            idempotency_key: row.try_get("idempotency_key")?,
            rejection_code: row.try_get("rejection_code")?,
            rejection_reason: row.try_get("rejection_reason")?,
            cancellation_reason: row.try_get("cancellation_reason")?,
            payment_id: row.try_get("payment_id")?,
            shipping_address: row.try_get("shipping_address")?,
            carrier: row.try_get("carrier")?,
            tracking_number: row.try_get("tracking_number")?,
            correlation_id: row.try_get("correlation_id")?,
            version: row.try_get("version")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            shipped_at: row.try_get("shipped_at")?,
            delivered_at: row.try_get("delivered_at")?,
            history: Vec::new(),
        }
    }};
}

/// Loads the items and history of `$order` through executor `$conn`.
macro_rules! load_children {
    ($conn:expr, $order:expr) => {{
        let order: &mut Order = $order;
        let items = sqlx::query(
            "SELECT product_id, sku, name, unit_price_minor, currency, quantity FROM order_items \
             WHERE order_id = $1 ORDER BY line_no",
        )
        .bind(order.id)
        .fetch_all(&mut *$conn)
        .await?;
        for row in items {
            order.items.push(PricedLine {
                product_id: row.try_get::<Uuid, _>("product_id")?.to_string(),
                sku: row.try_get("sku")?,
                name: row.try_get("name")?,
                unit_price_minor: row.try_get("unit_price_minor")?,
                currency: row.try_get("currency")?,
                quantity: row.try_get("quantity")?,
            });
        }
        let history = sqlx::query(
            "SELECT seq, from_status, to_status, reason, actor, cause_event_id, changed_at \
             FROM order_status_history WHERE order_id = $1 ORDER BY seq",
        )
        .bind(order.id)
        .fetch_all(&mut *$conn)
        .await?;
        for row in history {
            let from: Option<String> = row.try_get("from_status")?;
            let to: String = row.try_get("to_status")?;
            order.history.push(HistoryEntry {
                seq: row.try_get("seq")?,
                from: match from {
                    Some(from) => Some(OrderStatus::parse(&from).ok_or_else(|| corrupt("from_status", &from))?),
                    None => None,
                },
                to: OrderStatus::parse(&to).ok_or_else(|| corrupt("to_status", &to))?,
                reason: row.try_get("reason")?,
                actor: row.try_get("actor")?,
                cause_event_id: row.try_get("cause_event_id")?,
                changed_at: row.try_get("changed_at")?,
            });
        }
    }};
}

fn corrupt(column: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected {column} {value:?}").into())
}

/// Inserts one history row through executor `$conn` (a macro, so it compiles for both backends).
macro_rules! insert_history {
    ($conn:expr, $order_id:expr, $entry:expr) => {{
        let entry: &HistoryEntry = $entry;
        sqlx::query(
            "INSERT INTO order_status_history (order_id, seq, from_status, to_status, reason, actor, cause_event_id, changed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind($order_id)
        .bind(entry.seq)
        .bind(entry.from.map(|s| s.as_str()))
        .bind(entry.to.as_str())
        .bind(entry.reason.as_deref())
        .bind(entry.actor.as_str())
        .bind(entry.cause_event_id.as_deref())
        .bind(entry.changed_at)
        .execute($conn)
        .await?;
    }};
}

/// Inserts a new order with its items and first history entry, inside the caller's transaction
/// (which also holds its `OrderPlaced` event). A duplicate `(customer_id, idempotency_key)` is a
/// unique violation for the caller to resolve.
pub async fn insert(tx: &mut Tx, order: &Order) -> Result<(), sqlx::Error> {
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
        for (line_no, item) in order.items.iter().enumerate() {
            let product_id = Uuid::parse_str(&item.product_id).map_err(|e| sqlx::Error::Encode(e.into()))?;
            sqlx::query(
                "INSERT INTO order_items (order_id, line_no, product_id, sku, name, unit_price_minor, currency, quantity) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
            insert_history!(&mut *conn, order.id, entry);
        }
        Ok(())
    })
}

/// The order a customer placed with `key`, if any.
pub async fn find_by_idempotency_key(db: &Database, customer_id: Uuid, key: &str) -> Result<Option<Uuid>, sqlx::Error> {
    on_pool!(db, |pool| {
        sqlx::query("SELECT id FROM orders WHERE customer_id = $1 AND idempotency_key = $2")
            .bind(customer_id)
            .bind(key)
            .fetch_optional(pool)
            .await?
            .map(|row| row.try_get("id"))
            .transpose()
    })
}

/// The order with its items and history.
pub async fn get(db: &Database, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    on_pool!(db, |pool| {
        let mut conn = pool.acquire().await?;
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let mut order = order_from_row!(&row);
        load_children!(&mut *conn, &mut order);
        Ok(Some(order))
    })
}

/// The order as seen inside `tx` (for a transition decided in the same transaction).
pub async fn get_in_tx(tx: &mut Tx, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    on_tx!(tx, |conn| {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let mut order = order_from_row!(&row);
        load_children!(&mut *conn, &mut order);
        Ok(Some(order))
    })
}

/// Moves `order` (as read, at its `version`) to `to`, recording the history entry. `false` when
/// the order changed meanwhile (the caller re-reads and decides again).
pub async fn apply_transition(
    tx: &mut Tx,
    order: &Order,
    to: OrderStatus,
    fields: &TransitionFields,
    entry: &HistoryEntry,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
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
        insert_history!(&mut *conn, order.id, entry);
        Ok(true)
    })
}

/// Newest first, strictly after `after` (`(created_at, id)` of the last row of the previous page).
pub async fn list(
    db: &Database,
    filter: &OrderFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: usize,
) -> Result<Vec<Order>, sqlx::Error> {
    // Optional filters are written as `($n IS NULL OR …)` so one statement serves every combination.
    let statuses = (!filter.statuses.is_empty()).then(|| format!(",{},", filter.statuses.join(",")));
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE ($1 IS NULL OR customer_id = $1) \
         AND ($2 IS NULL OR $2 LIKE '%,' || status || ',%') \
         AND ($3 IS NULL OR created_at >= $3) AND ($4 IS NULL OR created_at < $4) \
         AND ($5 IS NULL OR created_at < $5 OR (created_at = $5 AND id < $6)) \
         ORDER BY created_at DESC, id DESC LIMIT $7"
    );
    on_pool!(db, |pool| {
        let mut conn = pool.acquire().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
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
        for row in &rows {
            let mut order = order_from_row!(row);
            load_children!(&mut *conn, &mut order);
            orders.push(order);
        }
        Ok(orders)
    })
}
