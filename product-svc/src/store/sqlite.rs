//! SQLite store (embedded profile): UUIDs as text, times as integer microseconds, FTS5 for
//! search. Writes that read first run in `BEGIN IMMEDIATE` transactions behind one in-process
//! writer lock, so concurrent reservations are serialised and never oversell.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordermesh_platform::ServiceError;
use ordermesh_platform::events::outbox;
use ordermesh_platform::validate::Money;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{CategoryCursor, ProductStore};
use crate::domain::{
    self, Adjustment, Category, ListCursor, LockedStock, Origin, Product, ProductFilter, ProductPatch, Reservation,
    ReservationStatus, StockLevel, StockLine,
};
use crate::events;

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: Arc<Mutex<()>>,
}

impl SqliteStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            writer: Arc::default(),
        }
    }
}

const PRODUCT_COLUMNS: &str = "p.id, p.sku, p.name, p.description, p.category_id, p.price_amount_minor, p.price_currency, \
     p.active, p.attributes, p.create_time, p.update_time, p.version";

fn id(row: &SqliteRow, column: &str) -> Result<Uuid, ServiceError> {
    let text: String = row.try_get(column)?;
    Uuid::parse_str(&text).map_err(ServiceError::internal)
}

fn time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, ServiceError> {
    let micros: i64 = row.try_get(column)?;
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("bad time in {column}")))
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn product(row: &SqliteRow) -> Result<Product, ServiceError> {
    let attributes: String = row.try_get("attributes")?;
    Ok(Product {
        id: id(row, "id")?,
        sku: row.try_get("sku")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        category_id: id(row, "category_id")?,
        price: Money {
            amount_minor: row.try_get("price_amount_minor")?,
            currency_code: row.try_get("price_currency")?,
        },
        active: row.try_get("active")?,
        attributes: super::json::<BTreeMap<String, String>>(&attributes)?,
        create_time: time(row, "create_time")?,
        update_time: time(row, "update_time")?,
        version: row.try_get("version")?,
    })
}

fn category(row: &SqliteRow) -> Result<Category, ServiceError> {
    let parent: Option<String> = row.try_get("parent_id")?;
    Ok(Category {
        id: id(row, "id")?,
        name: row.try_get("name")?,
        parent_id: parent
            .map(|p| Uuid::parse_str(&p))
            .transpose()
            .map_err(ServiceError::internal)?,
        description: row.try_get("description")?,
        create_time: time(row, "create_time")?,
    })
}

fn stock(row: &SqliteRow) -> Result<StockLevel, ServiceError> {
    Ok(StockLevel {
        product_id: id(row, "product_id")?,
        sku: row.try_get("sku")?,
        on_hand: row.try_get("on_hand")?,
        reserved: row.try_get("reserved")?,
        update_time: time(row, "update_time")?,
    })
}

fn reservation(row: &SqliteRow) -> Result<Reservation, ServiceError> {
    let status: String = row.try_get("status")?;
    let lines: String = row.try_get("lines")?;
    let shortfalls: String = row.try_get("shortfalls")?;
    Ok(Reservation {
        order_id: id(row, "order_id")?,
        status: ReservationStatus::parse(&status)
            .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("unexpected reservation status {status}")))?,
        lines: super::json(&lines)?,
        shortfalls: super::json(&shortfalls)?,
        create_time: time(row, "create_time")?,
        update_time: time(row, "update_time")?,
    })
}

fn to_json(value: &impl serde::Serialize) -> Result<String, ServiceError> {
    serde_json::to_string(value).map_err(ServiceError::internal)
}

fn push_filter(q: &mut QueryBuilder<Sqlite>, filter: &ProductFilter) {
    if let Some(category_id) = filter.category_id {
        q.push(" AND p.category_id = ").push_bind(category_id.to_string());
    }
    if let Some(active) = filter.active {
        q.push(" AND p.active = ").push_bind(active);
    }
    if let Some(currency) = filter.currency() {
        q.push(" AND p.price_currency = ").push_bind(currency.to_owned());
    }
    if let Some(min) = &filter.min_price {
        q.push(" AND p.price_amount_minor >= ").push_bind(min.amount_minor);
    }
    if let Some(max) = &filter.max_price {
        q.push(" AND p.price_amount_minor <= ").push_bind(max.amount_minor);
    }
}

const STOCK_SELECT: &str = "SELECT s.product_id, p.sku, s.on_hand, s.reserved, s.update_time FROM stock_levels s JOIN products p ON p.id = s.product_id";
const RESERVATION_SELECT: &str =
    "SELECT order_id, status, lines, shortfalls, create_time, update_time FROM stock_reservations WHERE order_id = ?";

impl SqliteStore {
    async fn stock_level<'c>(
        &self,
        conn: impl sqlx::SqliteExecutor<'c>,
        product_id: Uuid,
    ) -> Result<Option<StockLevel>, ServiceError> {
        let sql = format!("{STOCK_SELECT} WHERE s.product_id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(product_id.to_string())
            .fetch_optional(conn)
            .await?;
        row.as_ref().map(stock).transpose()
    }
}

#[async_trait]
impl ProductStore for SqliteStore {
    async fn create_category(&self, c: &Category) -> Result<(), ServiceError> {
        sqlx::query("INSERT INTO categories (id, name, parent_id, description, create_time) VALUES (?, ?, ?, ?, ?)")
            .bind(c.id.to_string())
            .bind(c.name.clone())
            .bind(c.parent_id.map(|p| p.to_string()))
            .bind(c.description.clone())
            .bind(micros(c.create_time))
            .execute(&self.pool)
            .await
            .map_err(|e| {
                super::write_error(
                    e,
                    ServiceError::AlreadyExists {
                        resource: "category",
                        field: "name",
                    },
                    ServiceError::invalid("parent_id", "no such category"),
                )
            })?;
        Ok(())
    }

    async fn list_categories(
        &self,
        parent_id: Option<Uuid>,
        after: Option<CategoryCursor>,
        limit: usize,
    ) -> Result<Vec<Category>, ServiceError> {
        let mut q =
            QueryBuilder::<Sqlite>::new("SELECT id, name, parent_id, description, create_time FROM categories WHERE 1");
        if let Some(parent_id) = parent_id {
            q.push(" AND parent_id = ").push_bind(parent_id.to_string());
        }
        if let Some((name, id)) = after {
            q.push(" AND (name, id) > (")
                .push_bind(name)
                .push(", ")
                .push_bind(id.to_string())
                .push(")");
        }
        q.push(" ORDER BY name, id LIMIT ").push_bind(limit as i64);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(category).collect()
    }

    async fn create_product(&self, p: &Product, origin: &Origin) -> Result<(), ServiceError> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO products (id, sku, name, description, category_id, price_amount_minor, price_currency, active, \
             attributes, create_time, update_time, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(p.id.to_string())
        .bind(p.sku.clone())
        .bind(p.name.clone())
        .bind(p.description.clone())
        .bind(p.category_id.to_string())
        .bind(p.price.amount_minor)
        .bind(p.price.currency_code.clone())
        .bind(p.active)
        .bind(to_json(&p.attributes)?)
        .bind(micros(p.create_time))
        .bind(micros(p.update_time))
        .bind(p.version)
        .execute(&mut *tx)
        .await
        .map_err(|e| super::write_error(e, super::sku_taken(), super::unknown_category()))?;
        sqlx::query("INSERT INTO stock_levels (product_id, on_hand, reserved, update_time) VALUES (?, 0, 0, ?)")
            .bind(p.id.to_string())
            .bind(micros(p.create_time))
            .execute(&mut *tx)
            .await?;
        outbox::enqueue_sqlite(&mut tx, &events::product_created(p, origin)).await?;
        tx.commit().await?;
        outbox::notify_committed();
        Ok(())
    }

    async fn get_products(&self, ids: &[Uuid]) -> Result<Vec<Product>, ServiceError> {
        let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {PRODUCT_COLUMNS} FROM products p WHERE p.id IN ("));
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(id.to_string());
        }
        q.push(")");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(product).collect()
    }

    async fn update_product(
        &self,
        id: Uuid,
        patch: &ProductPatch,
        expected_version: Option<i64>,
        origin: &Origin,
    ) -> Result<Product, ServiceError> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products p WHERE p.id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let mut current = match row {
            Some(row) => product(&row)?,
            None => return Err(ServiceError::not_found("product", id)),
        };
        if expected_version.is_some_and(|v| v != current.version) {
            return Err(super::version_mismatch(current.version));
        }
        let before = current.clone();
        patch.apply(&mut current);
        current.version += 1;
        current.update_time = domain::now().max(current.update_time);
        sqlx::query(
            "UPDATE products SET sku = ?2, name = ?3, description = ?4, category_id = ?5, price_amount_minor = ?6, \
             price_currency = ?7, active = ?8, attributes = ?9, update_time = ?10, version = ?11 WHERE id = ?1",
        )
        .bind(id.to_string())
        .bind(current.sku.clone())
        .bind(current.name.clone())
        .bind(current.description.clone())
        .bind(current.category_id.to_string())
        .bind(current.price.amount_minor)
        .bind(current.price.currency_code.clone())
        .bind(current.active)
        .bind(to_json(&current.attributes)?)
        .bind(micros(current.update_time))
        .bind(current.version)
        .execute(&mut *tx)
        .await
        .map_err(|e| super::write_error(e, super::sku_taken(), super::unknown_category()))?;
        outbox::enqueue_sqlite(&mut tx, &events::product_updated(&before, &current, origin)).await?;
        tx.commit().await?;
        outbox::notify_committed();
        Ok(current)
    }

    async fn list_products(
        &self,
        filter: &ProductFilter,
        after: Option<ListCursor>,
        limit: usize,
    ) -> Result<Vec<Product>, ServiceError> {
        let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {PRODUCT_COLUMNS} FROM products p WHERE 1"));
        push_filter(&mut q, filter);
        if let Some(after) = after {
            q.push(" AND (p.create_time, p.id) < (")
                .push_bind(after.create_time_us)
                .push(", ")
                .push_bind(after.id.to_string())
                .push(")");
        }
        q.push(" ORDER BY p.create_time DESC, p.id DESC LIMIT ")
            .push_bind(limit as i64);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(product).collect()
    }

    async fn search_products(
        &self,
        words: &[String],
        filter: &ProductFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Product>, ServiceError> {
        // Every word quoted: FTS5 query syntax in the input is never interpreted.
        let expression = words
            .iter()
            .map(|w| format!("\"{}\"", w.replace('"', "")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {PRODUCT_COLUMNS} FROM products_fts f JOIN products p ON p.seq = f.rowid WHERE products_fts MATCH "
        ));
        q.push_bind(expression);
        push_filter(&mut q, filter);
        q.push(" ORDER BY f.rank, p.id DESC LIMIT ")
            .push_bind(limit as i64)
            .push(" OFFSET ")
            .push_bind(offset as i64);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(product).collect()
    }

    async fn stock_levels(&self, ids: &[Uuid]) -> Result<Vec<StockLevel>, ServiceError> {
        let mut q = QueryBuilder::<Sqlite>::new(format!("{STOCK_SELECT} WHERE s.product_id IN ("));
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(id.to_string());
        }
        q.push(")");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(stock).collect()
    }

    async fn adjust_stock(&self, a: &Adjustment, origin: &Origin) -> Result<StockLevel, ServiceError> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(key) = &a.idempotency_key {
            let row = sqlx::query(
                "SELECT a.product_id, p.sku, a.on_hand_after AS on_hand, a.reserved_after AS reserved, a.create_time AS update_time \
                 FROM stock_adjustments a JOIN products p ON p.id = a.product_id WHERE a.idempotency_key = ?",
            )
            .bind(key.clone())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                return stock(&row);
            }
        }
        let now = domain::now();
        let changed = sqlx::query(
            "UPDATE stock_levels SET on_hand = on_hand + ?2, update_time = ?3 WHERE product_id = ?1 AND on_hand + ?2 >= reserved",
        )
        .bind(a.product_id.to_string())
        .bind(a.delta)
        .bind(micros(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let level = self.stock_level(&mut *tx, a.product_id).await?;
        let Some(level) = level else {
            return Err(ServiceError::not_found("product", a.product_id));
        };
        if changed == 0 {
            return Err(super::below_reserved());
        }
        sqlx::query(
            "INSERT INTO stock_adjustments (id, product_id, delta, reason, idempotency_key, on_hand_after, reserved_after, create_time) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(a.product_id.to_string())
        .bind(a.delta)
        .bind(a.reason.clone())
        .bind(a.idempotency_key.clone())
        .bind(level.on_hand)
        .bind(level.reserved)
        .bind(micros(now))
        .execute(&mut *tx)
        .await?;
        outbox::enqueue_sqlite(&mut tx, &events::stock_adjusted(a, &level, origin)).await?;
        tx.commit().await?;
        outbox::notify_committed();
        Ok(level)
    }

    async fn reserve_stock(&self, order_id: Uuid, lines: &[StockLine]) -> Result<Reservation, ServiceError> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let outcome = reserve(&mut tx, order_id, lines).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn commit_stock(&self, order_id: Uuid) -> Result<Reservation, ServiceError> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let outcome = finish(&mut tx, order_id, ReservationStatus::Committed, None)
            .await?
            .ok_or_else(|| ServiceError::not_found("reservation", order_id))?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn release_stock(&self, order_id: Uuid, reason: &str) -> Result<Option<Reservation>, ServiceError> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let outcome = finish(&mut tx, order_id, ReservationStatus::Released, Some(reason)).await?;
        tx.commit().await?;
        Ok(outcome)
    }
}

/// [`ProductStore::reserve_stock`] inside the caller's transaction, which must hold the write
/// lock (`BEGIN IMMEDIATE`): nothing is committed here.
pub(super) async fn reserve(
    conn: &mut SqliteConnection,
    order_id: Uuid,
    lines: &[StockLine],
) -> Result<Reservation, ServiceError> {
    let existing = sqlx::query(RESERVATION_SELECT)
        .bind(order_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = existing {
        return reservation(&row);
    }
    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT s.product_id, p.active, s.on_hand - s.reserved AS available FROM stock_levels s \
         JOIN products p ON p.id = s.product_id WHERE s.product_id IN (",
    );
    let mut list = q.separated(", ");
    for line in lines {
        list.push_bind(line.product_id.to_string());
    }
    q.push(")");
    let rows = q.build().fetch_all(&mut *conn).await?;
    let locked = rows
        .iter()
        .map(|r| {
            Ok(LockedStock {
                product_id: id(r, "product_id")?,
                active: r.try_get("active")?,
                available: r.try_get("available")?,
            })
        })
        .collect::<Result<Vec<_>, ServiceError>>()?;
    let shortfalls = domain::shortfalls(lines, &locked);
    let now = domain::now();
    let status = if shortfalls.is_empty() {
        for line in lines {
            sqlx::query("UPDATE stock_levels SET reserved = reserved + ?2, update_time = ?3 WHERE product_id = ?1")
                .bind(line.product_id.to_string())
                .bind(i64::from(line.quantity))
                .bind(micros(now))
                .execute(&mut *conn)
                .await?;
        }
        ReservationStatus::Reserved
    } else {
        ReservationStatus::Rejected
    };
    sqlx::query(
        "INSERT INTO stock_reservations (order_id, status, lines, shortfalls, create_time, update_time) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(order_id.to_string())
    .bind(status.as_str())
    .bind(to_json(&lines)?)
    .bind(to_json(&shortfalls)?)
    .bind(micros(now))
    .bind(micros(now))
    .execute(&mut *conn)
    .await?;
    Ok(Reservation {
        order_id,
        status,
        lines: lines.to_vec(),
        shortfalls,
        create_time: now,
        update_time: now,
    })
}

/// Moves the reservation of `order_id` from RESERVED to `to` inside the caller's transaction
/// (holding the write lock). `Ok(None)` when the order has no reservation; a release of such an
/// order leaves a tombstone (RELEASED, no lines) so that a later reserve for it is a no-op.
pub(super) async fn finish(
    conn: &mut SqliteConnection,
    order_id: Uuid,
    to: ReservationStatus,
    reason: Option<&str>,
) -> Result<Option<Reservation>, ServiceError> {
    let row = sqlx::query(RESERVATION_SELECT)
        .bind(order_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let now = domain::now();
    let Some(row) = row else {
        if to == ReservationStatus::Released {
            // Released before it was reserved (events of one order may be handled out of order).
            sqlx::query(
                "INSERT INTO stock_reservations (order_id, status, lines, shortfalls, release_reason, create_time, update_time) \
                 VALUES (?1, 'RELEASED', '[]', '[]', ?2, ?3, ?3)",
            )
            .bind(order_id.to_string())
            .bind(reason.map(str::to_owned))
            .bind(micros(now))
            .execute(&mut *conn)
            .await?;
        }
        return Ok(None);
    };
    let mut current = reservation(&row)?;
    if current.is_tombstone() {
        return match to {
            ReservationStatus::Released => Ok(None),
            _ => Err(super::reservation_precondition(current.status, "committed")),
        };
    }
    match (current.status, to) {
        (ReservationStatus::Reserved, _) => {}
        (status, to) if status == to => return Ok(Some(current)),
        (ReservationStatus::Rejected | ReservationStatus::Released, ReservationStatus::Released) => {
            return Ok(Some(current));
        }
        (status, ReservationStatus::Committed) => {
            return Err(super::reservation_precondition(status, "committed"));
        }
        (status, _) => return Err(super::reservation_precondition(status, "released")),
    }
    let on_hand_factor: i64 = if to == ReservationStatus::Committed { 1 } else { 0 };
    for line in &current.lines {
        sqlx::query(
            "UPDATE stock_levels SET reserved = reserved - ?2, on_hand = on_hand - ?2 * ?3, update_time = ?4 WHERE product_id = ?1",
        )
        .bind(line.product_id.to_string())
        .bind(i64::from(line.quantity))
        .bind(on_hand_factor)
        .bind(micros(now))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("UPDATE stock_reservations SET status = ?2, release_reason = ?3, update_time = ?4 WHERE order_id = ?1")
        .bind(order_id.to_string())
        .bind(to.as_str())
        .bind(reason.map(str::to_owned))
        .bind(micros(now))
        .execute(&mut *conn)
        .await?;
    current.status = to;
    current.update_time = now;
    Ok(Some(current))
}

/// SKU of each of `ids` that exists.
pub(super) async fn skus(conn: &mut SqliteConnection, ids: &[Uuid]) -> Result<Vec<(Uuid, String)>, ServiceError> {
    let mut q = QueryBuilder::<Sqlite>::new("SELECT id, sku FROM products WHERE id IN (");
    let mut list = q.separated(", ");
    for product_id in ids {
        list.push_bind(product_id.to_string());
    }
    q.push(")");
    let rows = q.build().fetch_all(&mut *conn).await?;
    rows.iter().map(|r| Ok((id(r, "id")?, r.try_get("sku")?))).collect()
}
