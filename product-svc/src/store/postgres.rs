//! PostgreSQL store: native uuid/timestamptz/jsonb/bigint columns, a GIN full-text index, and
//! row locks taken in product-id order for reservations.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordermesh_platform::ServiceError;
use ordermesh_platform::events::outbox;
use ordermesh_platform::validate::Money;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::{CategoryCursor, ProductStore};
use crate::domain::{
    self, Adjustment, Category, ListCursor, LockedStock, Origin, Product, ProductFilter, ProductPatch, Reservation,
    ReservationStatus, Shortfall, StockLevel, StockLine,
};
use crate::events;

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

const PRODUCT_COLUMNS: &str = "id, sku, name, description, category_id, price_amount_minor, price_currency, active, \
     attributes, create_time, update_time, version";

fn product(row: &PgRow) -> Result<Product, sqlx::Error> {
    let attributes: Json<BTreeMap<String, String>> = row.try_get("attributes")?;
    Ok(Product {
        id: row.try_get("id")?,
        sku: row.try_get("sku")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        category_id: row.try_get("category_id")?,
        price: Money {
            amount_minor: row.try_get("price_amount_minor")?,
            currency_code: row.try_get("price_currency")?,
        },
        active: row.try_get("active")?,
        attributes: attributes.0,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        version: row.try_get("version")?,
    })
}

fn category(row: &PgRow) -> Result<Category, sqlx::Error> {
    Ok(Category {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        parent_id: row.try_get("parent_id")?,
        description: row.try_get("description")?,
        create_time: row.try_get("create_time")?,
    })
}

fn stock(row: &PgRow) -> Result<StockLevel, sqlx::Error> {
    Ok(StockLevel {
        product_id: row.try_get("product_id")?,
        sku: row.try_get("sku")?,
        on_hand: row.try_get("on_hand")?,
        reserved: row.try_get("reserved")?,
        update_time: row.try_get("update_time")?,
    })
}

fn reservation(row: &PgRow) -> Result<Reservation, ServiceError> {
    let status: String = row.try_get("status")?;
    let lines: Json<Vec<StockLine>> = row.try_get("lines")?;
    let shortfalls: Json<Vec<Shortfall>> = row.try_get("shortfalls")?;
    Ok(Reservation {
        order_id: row.try_get("order_id")?,
        status: ReservationStatus::parse(&status)
            .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("unexpected reservation status {status}")))?,
        lines: lines.0,
        shortfalls: shortfalls.0,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
    })
}

fn push_filter(q: &mut QueryBuilder<Postgres>, filter: &ProductFilter, prefix: &str) {
    if let Some(category_id) = filter.category_id {
        q.push(format_args!(" AND {prefix}category_id = "))
            .push_bind(category_id);
    }
    if let Some(active) = filter.active {
        q.push(format_args!(" AND {prefix}active = ")).push_bind(active);
    }
    if let Some(currency) = filter.currency() {
        q.push(format_args!(" AND {prefix}price_currency = "))
            .push_bind(currency.to_owned());
    }
    if let Some(min) = &filter.min_price {
        q.push(format_args!(" AND {prefix}price_amount_minor >= "))
            .push_bind(min.amount_minor);
    }
    if let Some(max) = &filter.max_price {
        q.push(format_args!(" AND {prefix}price_amount_minor <= "))
            .push_bind(max.amount_minor);
    }
}

const RESERVATION_COLUMNS: &str =
    "SELECT order_id, status, lines, shortfalls, create_time, update_time FROM stock_reservations";

impl PgStore {
    async fn stored_adjustment(&self, key: &str) -> Result<Option<StockLevel>, ServiceError> {
        let row = sqlx::query(
            "SELECT a.product_id, p.sku, a.on_hand_after AS on_hand, a.reserved_after AS reserved, a.create_time AS update_time \
             FROM stock_adjustments a JOIN products p ON p.id = a.product_id WHERE a.idempotency_key = $1",
        )
        .bind(key.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(stock).transpose()?)
    }
}

#[async_trait]
impl ProductStore for PgStore {
    async fn create_category(&self, c: &Category) -> Result<(), ServiceError> {
        sqlx::query(
            "INSERT INTO categories (id, name, parent_id, description, create_time) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(c.id)
        .bind(c.name.clone())
        .bind(c.parent_id)
        .bind(c.description.clone())
        .bind(c.create_time)
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
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT id, name, parent_id, description, create_time FROM categories WHERE TRUE",
        );
        if let Some(parent_id) = parent_id {
            q.push(" AND parent_id = ").push_bind(parent_id);
        }
        if let Some((name, id)) = after {
            q.push(" AND (name COLLATE \"C\", id) > (")
                .push_bind(name)
                .push(" COLLATE \"C\", ")
                .push_bind(id)
                .push(")");
        }
        q.push(" ORDER BY name COLLATE \"C\", id LIMIT ")
            .push_bind(limit as i64);
        let rows = q.build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(category).collect::<Result<_, _>>()?)
    }

    async fn create_product(&self, p: &Product, origin: &Origin) -> Result<(), ServiceError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO products (id, sku, name, description, category_id, price_amount_minor, price_currency, active, \
             attributes, create_time, update_time, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(p.id)
        .bind(p.sku.clone())
        .bind(p.name.clone())
        .bind(p.description.clone())
        .bind(p.category_id)
        .bind(p.price.amount_minor)
        .bind(p.price.currency_code.clone())
        .bind(p.active)
        .bind(Json(p.attributes.clone()))
        .bind(p.create_time)
        .bind(p.update_time)
        .bind(p.version)
        .execute(&mut *tx)
        .await
        .map_err(|e| super::write_error(e, super::sku_taken(), super::unknown_category()))?;
        sqlx::query("INSERT INTO stock_levels (product_id, on_hand, reserved, update_time) VALUES ($1, 0, 0, $2)")
            .bind(p.id)
            .bind(p.create_time)
            .execute(&mut *tx)
            .await?;
        outbox::enqueue_pg(&mut tx, &events::product_created(p, origin)).await?;
        tx.commit().await?;
        outbox::notify_committed();
        Ok(())
    }

    async fn get_products(&self, ids: &[Uuid]) -> Result<Vec<Product>, ServiceError> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ANY($1)");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ids.to_vec())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(product).collect::<Result<_, _>>()?)
    }

    async fn update_product(
        &self,
        id: Uuid,
        patch: &ProductPatch,
        expected_version: Option<i64>,
        origin: &Origin,
    ) -> Result<Product, ServiceError> {
        let mut tx = self.pool.begin().await?;
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1 FOR UPDATE");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
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
            "UPDATE products SET sku = $2, name = $3, description = $4, category_id = $5, price_amount_minor = $6, \
             price_currency = $7, active = $8, attributes = $9, update_time = $10, version = $11 WHERE id = $1",
        )
        .bind(id)
        .bind(current.sku.clone())
        .bind(current.name.clone())
        .bind(current.description.clone())
        .bind(current.category_id)
        .bind(current.price.amount_minor)
        .bind(current.price.currency_code.clone())
        .bind(current.active)
        .bind(Json(current.attributes.clone()))
        .bind(current.update_time)
        .bind(current.version)
        .execute(&mut *tx)
        .await
        .map_err(|e| super::write_error(e, super::sku_taken(), super::unknown_category()))?;
        outbox::enqueue_pg(&mut tx, &events::product_updated(&before, &current, origin)).await?;
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
        let mut q = QueryBuilder::<Postgres>::new(format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE TRUE"));
        push_filter(&mut q, filter, "");
        if let Some(after) = after {
            let time = DateTime::<Utc>::from_timestamp_micros(after.create_time_us)
                .ok_or_else(|| ServiceError::invalid("page_token", "is not valid"))?;
            q.push(" AND (create_time, id) < (")
                .push_bind(time)
                .push(", ")
                .push_bind(after.id)
                .push(")");
        }
        q.push(" ORDER BY create_time DESC, id DESC LIMIT ")
            .push_bind(limit as i64);
        let rows = q.build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(product).collect::<Result<_, _>>()?)
    }

    async fn search_products(
        &self,
        words: &[String],
        filter: &ProductFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Product>, ServiceError> {
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT {PRODUCT_COLUMNS}, ts_rank(search, query) AS rank FROM products, plainto_tsquery('english', "
        ));
        q.push_bind(words.join(" ")).push(") AS query WHERE search @@ query");
        push_filter(&mut q, filter, "");
        q.push(" ORDER BY rank DESC, id DESC LIMIT ")
            .push_bind(limit as i64)
            .push(" OFFSET ")
            .push_bind(offset as i64);
        let rows = q.build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(product).collect::<Result<_, _>>()?)
    }

    async fn stock_levels(&self, ids: &[Uuid]) -> Result<Vec<StockLevel>, ServiceError> {
        let rows = sqlx::query(
            "SELECT s.product_id, p.sku, s.on_hand, s.reserved, s.update_time FROM stock_levels s \
             JOIN products p ON p.id = s.product_id WHERE s.product_id = ANY($1)",
        )
        .bind(ids.to_vec())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(stock).collect::<Result<_, _>>()?)
    }

    async fn adjust_stock(&self, a: &Adjustment, origin: &Origin) -> Result<StockLevel, ServiceError> {
        if let Some(key) = &a.idempotency_key
            && let Some(level) = self.stored_adjustment(key).await?
        {
            return Ok(level);
        }
        let now = domain::now();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE stock_levels s SET on_hand = s.on_hand + $2, update_time = $3 FROM products p \
             WHERE s.product_id = $1 AND p.id = s.product_id AND s.on_hand + $2 >= s.reserved \
             RETURNING s.product_id, p.sku, s.on_hand, s.reserved, s.update_time",
        )
        .bind(a.product_id)
        .bind(a.delta)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            drop(tx);
            let exists = !self.stock_levels(&[a.product_id]).await?.is_empty();
            return Err(if exists {
                super::below_reserved()
            } else {
                ServiceError::not_found("product", a.product_id)
            });
        };
        let level = stock(&row)?;
        // A concurrent repeat of the same key waits here for the first to commit, then inserts
        // nothing: it rolls back its own change and answers with the stored result.
        let inserted = sqlx::query(
            "INSERT INTO stock_adjustments (id, product_id, delta, reason, idempotency_key, on_hand_after, reserved_after, create_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(a.product_id)
        .bind(a.delta)
        .bind(a.reason.clone())
        .bind(a.idempotency_key.clone())
        .bind(level.on_hand)
        .bind(level.reserved)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            let key = a.idempotency_key.as_deref().unwrap_or_default();
            return self
                .stored_adjustment(key)
                .await?
                .ok_or_else(|| ServiceError::Aborted("concurrent adjustment with the same key".into()));
        }
        outbox::enqueue_pg(&mut tx, &events::stock_adjusted(a, &level, origin)).await?;
        tx.commit().await?;
        outbox::notify_committed();
        Ok(level)
    }

    async fn reserve_stock(&self, order_id: Uuid, lines: &[StockLine]) -> Result<Reservation, ServiceError> {
        let mut tx = self.pool.begin().await?;
        let outcome = reserve(&mut tx, order_id, lines).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn commit_stock(&self, order_id: Uuid) -> Result<Reservation, ServiceError> {
        let mut tx = self.pool.begin().await?;
        let outcome = finish(&mut tx, order_id, ReservationStatus::Committed, None)
            .await?
            .ok_or_else(|| ServiceError::not_found("reservation", order_id))?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn release_stock(&self, order_id: Uuid, reason: &str) -> Result<Option<Reservation>, ServiceError> {
        let mut tx = self.pool.begin().await?;
        let outcome = finish(&mut tx, order_id, ReservationStatus::Released, Some(reason)).await?;
        tx.commit().await?;
        Ok(outcome)
    }
}

async fn reservation_on(
    conn: &mut PgConnection,
    order_id: Uuid,
    lock: bool,
) -> Result<Option<Reservation>, ServiceError> {
    let sql = format!(
        "{RESERVATION_COLUMNS} WHERE order_id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(order_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(reservation).transpose()
}

/// [`ProductStore::reserve_stock`] inside the caller's transaction (`conn` is in one): nothing is
/// committed here.
pub(super) async fn reserve(
    conn: &mut PgConnection,
    order_id: Uuid,
    lines: &[StockLine],
) -> Result<Reservation, ServiceError> {
    let now = domain::now();
    // Claim the order id first: a concurrent call for the same order (or a concurrent release
    // leaving a tombstone) blocks on this row until the first commits; then the stored outcome
    // is returned and nothing changes.
    let claimed = sqlx::query(
        "INSERT INTO stock_reservations (order_id, status, lines, create_time, update_time) \
         VALUES ($1, 'PENDING', $2, $3, $3) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(Json(lines.to_vec()))
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if claimed == 0 {
        return reservation_on(conn, order_id, false)
            .await?
            .ok_or_else(|| ServiceError::Aborted("concurrent reservation for the same order".into()));
    }
    let ids: Vec<Uuid> = lines.iter().map(|l| l.product_id).collect();
    // Row locks in product-id order, so concurrent reservations cannot deadlock.
    let rows = sqlx::query(
        "SELECT s.product_id, p.active, s.on_hand - s.reserved AS available FROM stock_levels s \
         JOIN products p ON p.id = s.product_id WHERE s.product_id = ANY($1) ORDER BY s.product_id FOR UPDATE OF s",
    )
    .bind(ids.clone())
    .fetch_all(&mut *conn)
    .await?;
    let locked = rows
        .iter()
        .map(|r| {
            Ok(LockedStock {
                product_id: r.try_get("product_id")?,
                active: r.try_get("active")?,
                available: r.try_get("available")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let shortfalls = domain::shortfalls(lines, &locked);
    let status = if shortfalls.is_empty() {
        let quantities: Vec<i64> = lines.iter().map(|l| i64::from(l.quantity)).collect();
        sqlx::query(
            "UPDATE stock_levels s SET reserved = s.reserved + u.qty, update_time = $3 \
             FROM unnest($1::uuid[], $2::bigint[]) AS u(id, qty) WHERE s.product_id = u.id",
        )
        .bind(ids)
        .bind(quantities)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        ReservationStatus::Reserved
    } else {
        ReservationStatus::Rejected
    };
    sqlx::query("UPDATE stock_reservations SET status = $2, shortfalls = $3 WHERE order_id = $1")
        .bind(order_id)
        .bind(status.as_str())
        .bind(Json(shortfalls.clone()))
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

/// Moves the reservation of `order_id` from RESERVED to `to`, applying the stock change of each
/// line, inside the caller's transaction. `Ok(None)` when the order has no reservation; a release
/// of such an order leaves a tombstone (RELEASED, no lines) so that a later reserve for it is a
/// no-op. A reservation already in `to` is returned unchanged.
pub(super) async fn finish(
    conn: &mut PgConnection,
    order_id: Uuid,
    to: ReservationStatus,
    reason: Option<&str>,
) -> Result<Option<Reservation>, ServiceError> {
    let now = domain::now();
    let mut current = match reservation_on(conn, order_id, true).await? {
        Some(current) => current,
        None if to == ReservationStatus::Released => {
            // Released before it was reserved (events of one order may be handled out of
            // order): the tombstone claims the order id, so the late reserve finds it and
            // reserves nothing. If a concurrent reserve claimed it first, we wait for it here,
            // then release what it reserved.
            let inserted = sqlx::query(
                "INSERT INTO stock_reservations (order_id, status, lines, release_reason, create_time, update_time) \
                 VALUES ($1, 'RELEASED', '[]'::jsonb, $2, $3, $3) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(order_id)
            .bind(reason.map(str::to_owned))
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(None);
            }
            reservation_on(conn, order_id, true)
                .await?
                .ok_or_else(|| ServiceError::Aborted("concurrent reservation for the same order".into()))?
        }
        None => return Ok(None),
    };
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
    let ids: Vec<Uuid> = current.lines.iter().map(|l| l.product_id).collect();
    let quantities: Vec<i64> = current.lines.iter().map(|l| i64::from(l.quantity)).collect();
    let on_hand_factor: i64 = if to == ReservationStatus::Committed { 1 } else { 0 };
    sqlx::query(
        "UPDATE stock_levels s SET reserved = s.reserved - u.qty, on_hand = s.on_hand - u.qty * $3, update_time = $4 \
         FROM unnest($1::uuid[], $2::bigint[]) AS u(id, qty) WHERE s.product_id = u.id",
    )
    .bind(ids)
    .bind(quantities)
    .bind(on_hand_factor)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE stock_reservations SET status = $2, release_reason = $3, update_time = $4 WHERE order_id = $1")
        .bind(order_id)
        .bind(to.as_str())
        .bind(reason.map(str::to_owned))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    current.status = to;
    current.update_time = now;
    Ok(Some(current))
}

/// SKU of each of `ids` that exists.
pub(super) async fn skus(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<(Uuid, String)>, ServiceError> {
    let rows = sqlx::query("SELECT id, sku FROM products WHERE id = ANY($1)")
        .bind(ids.to_vec())
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("sku")?)))
        .collect::<Result<_, sqlx::Error>>()?)
}
