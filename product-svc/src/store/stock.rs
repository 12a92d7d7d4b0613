//! Stock levels, adjustments and the reservations of the order saga. The reservation functions
//! run in the caller's [`Tx`]: the store's own calls begin one, the `order-events` consumer
//! passes its own (with the inbox row and the answer it publishes).

use chrono::{DateTime, Utc};
use ordermesh_platform::events::Tx;
use ordermesh_platform::{ServiceError, StoreError, StoreResult, on_pool, on_tx};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, QueryBuilder};
use uuid::Uuid;

use super::{Store, push_in, row_lock};
use crate::domain::{
    self, Adjustment, LockedStock, LowStock, Origin, Reservation, ReservationStatus, Settlement, Shortfall, StockLevel,
    StockLine,
};
use crate::events;
use ordermesh_platform::db::columns::{Id, Time};
use ordermesh_platform::db::page::fetch_optional_in;

const STOCK_SELECT: &str = "SELECT s.product_id, p.sku, s.on_hand, s.reserved, s.update_time \
     FROM stock_levels s JOIN products p ON p.id = s.product_id";

/// The stock level an adjustment left behind, by its idempotency key.
const STORED_ADJUSTMENT: &str = "SELECT a.product_id, p.sku, a.on_hand_after AS on_hand, \
     a.reserved_after AS reserved, a.create_time AS update_time \
     FROM stock_adjustments a JOIN products p ON p.id = a.product_id WHERE a.idempotency_key = $1";

#[derive(sqlx::FromRow)]
struct StockRow {
    product_id: Id,
    sku: String,
    on_hand: i64,
    reserved: i64,
    update_time: Time,
}

impl From<StockRow> for StockLevel {
    fn from(row: StockRow) -> Self {
        Self {
            product_id: row.product_id.into(),
            sku: row.sku,
            on_hand: row.on_hand,
            reserved: row.reserved,
            update_time: row.update_time.into(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct LockedRow {
    product_id: Id,
    active: bool,
    available: i64,
}

impl From<LockedRow> for LockedStock {
    fn from(row: LockedRow) -> Self {
        Self {
            product_id: row.product_id.into(),
            active: row.active,
            available: row.available,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ReservationRow {
    order_id: Id,
    status: String,
    lines: Json<Vec<StockLine>>,
    shortfalls: Json<Vec<Shortfall>>,
    create_time: Time,
    update_time: Time,
}

impl TryFrom<ReservationRow> for Reservation {
    type Error = StoreError;

    fn try_from(row: ReservationRow) -> StoreResult<Self> {
        Ok(Self {
            order_id: row.order_id.into(),
            status: ReservationStatus::parse(&row.status).ok_or_else(|| StoreError::corrupt("status", &row.status))?,
            lines: row.lines.0,
            shortfalls: row.shortfalls.0,
            create_time: row.create_time.into(),
            update_time: row.update_time.into(),
        })
    }
}

fn below_reserved() -> ServiceError {
    ServiceError::precondition(
        "STOCK_BELOW_RESERVED",
        "on-hand stock would fall below the reserved quantity",
    )
}

fn concurrent_reservation() -> ServiceError {
    ServiceError::Aborted("concurrent reservation for the same order".into())
}

impl Store {
    /// The stock levels that exist among `ids`.
    pub async fn stock_levels(&self, ids: &[Uuid]) -> StoreResult<Vec<StockLevel>> {
        let rows = on_pool!(&self.db, |pool| {
            let mut q = QueryBuilder::new(format!("{STOCK_SELECT} WHERE s.product_id"));
            push_in(&mut q, ids);
            q.build_query_as::<StockRow>().fetch_all(pool).await
        })?;
        Ok(rows.into_iter().map(StockLevel::from).collect())
    }

    /// The result of the adjustment with idempotency key `key`, if there was one.
    async fn stored_adjustment(&self, key: &str) -> StoreResult<Option<StockLevel>> {
        let row = on_pool!(&self.db, |pool| {
            sqlx::query_as::<_, StockRow>(STORED_ADJUSTMENT)
                .bind(key)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(StockLevel::from))
    }

    /// Adds `delta` to on-hand stock; FAILED_PRECONDITION if on-hand would fall below the
    /// reserved quantity; idempotent per key (a repeat returns the first result and publishes
    /// nothing). Enqueues `StockAdjusted` in the adjustment's transaction.
    pub async fn adjust_stock(&self, adjustment: &Adjustment, origin: &Origin) -> Result<StockLevel, ServiceError> {
        let mut tx = Tx::begin(&self.db).await?;
        if let Some(key) = &adjustment.idempotency_key {
            let stored = on_tx!(tx, |conn| {
                sqlx::query_as::<_, StockRow>(STORED_ADJUSTMENT)
                    .bind(key)
                    .fetch_optional(&mut *conn)
                    .await
            })?;
            if let Some(stored) = stored {
                return Ok(stored.into());
            }
        }
        let now = domain::now();
        let changed = on_tx!(tx, |conn| {
            sqlx::query(
                "UPDATE stock_levels SET on_hand = on_hand + $2, update_time = $3 \
                 WHERE product_id = $1 AND on_hand + $2 >= reserved",
            )
            .bind(Id(adjustment.product_id))
            .bind(adjustment.delta)
            .bind(Time(now))
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
        })?;
        let Some(level) = stock_level_in(&mut tx, adjustment.product_id).await? else {
            return Err(ServiceError::not_found("product", adjustment.product_id));
        };
        if changed == 0 {
            return Err(below_reserved());
        }
        // A concurrent repeat of the same key (PostgreSQL) waits on the stock row above for the
        // first to commit, then records nothing: it rolls back its own change and answers with
        // the stored result.
        let recorded = record_adjustment_in(&mut tx, adjustment, &level, now).await?;
        if !recorded {
            tx.rollback().await?;
            let key = adjustment.idempotency_key.as_deref().unwrap_or_default();
            return self
                .stored_adjustment(key)
                .await?
                .ok_or_else(|| ServiceError::Aborted("concurrent adjustment with the same key".into()));
        }
        tx.enqueue(&events::stock_adjusted(adjustment, &level, self.low_stock, origin))
            .await?;
        let after = level.available();
        if self.low_stock.crossed(after - adjustment.delta, after) {
            announce_low_stock(
                &mut tx,
                &[(level.product_id, after)],
                self.low_stock,
                &origin.correlation_id,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(level)
    }

    /// Reserves every line or none (lines sorted by product id). Idempotent per order id: a
    /// repeat returns the stored outcome and changes nothing (also after a release: a released
    /// order, or a tombstone left by an early release, is never reserved again).
    pub async fn reserve_stock(
        &self,
        order_id: Uuid,
        lines: &[StockLine],
        correlation_id: &str,
    ) -> Result<Reservation, ServiceError> {
        let mut tx = Tx::begin(&self.db).await?;
        let reservation = reserve_stock_in(&mut tx, order_id, lines, self.low_stock, correlation_id).await?;
        tx.commit().await?;
        Ok(reservation)
    }

    /// RESERVED → COMMITTED (on-hand and reserved both drop). Idempotent; NOT_FOUND for an
    /// unknown order; FAILED_PRECONDITION if released or rejected.
    pub async fn commit_stock(&self, order_id: Uuid) -> Result<Reservation, ServiceError> {
        let mut tx = Tx::begin(&self.db).await?;
        let reservation = commit_stock_in(&mut tx, order_id).await?;
        tx.commit().await?;
        Ok(reservation)
    }

    /// RESERVED → RELEASED. Idempotent; FAILED_PRECONDITION if committed. For an unknown order:
    /// `None`, and a tombstone (RELEASED, no lines) is stored so that a later `reserve_stock`
    /// for the order reserves nothing and returns the tombstone (a cancel may be handled before
    /// its order's placement).
    pub async fn release_stock(&self, order_id: Uuid, reason: &str) -> Result<Option<Reservation>, ServiceError> {
        let mut tx = Tx::begin(&self.db).await?;
        let reservation = release_stock_in(&mut tx, order_id, reason).await?;
        tx.commit().await?;
        Ok(reservation)
    }
}

async fn stock_level_in(tx: &mut Tx, product_id: Uuid) -> StoreResult<Option<StockLevel>> {
    let row = on_tx!(tx, |conn| {
        sqlx::query_as::<_, StockRow>(AssertSqlSafe(format!("{STOCK_SELECT} WHERE s.product_id = $1")))
            .bind(Id(product_id))
            .fetch_optional(&mut *conn)
            .await
    })?;
    Ok(row.map(StockLevel::from))
}

/// Records `adjustment` and the level it left; `false` if its idempotency key is taken.
async fn record_adjustment_in(
    tx: &mut Tx,
    adjustment: &Adjustment,
    level: &StockLevel,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let inserted = on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO stock_adjustments (id, product_id, delta, reason, idempotency_key, on_hand_after, \
             reserved_after, create_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(Id(Uuid::now_v7()))
        .bind(Id(adjustment.product_id))
        .bind(adjustment.delta)
        .bind(&adjustment.reason)
        .bind(&adjustment.idempotency_key)
        .bind(level.on_hand)
        .bind(level.reserved)
        .bind(Time(now))
        .execute(&mut *conn)
        .await
        .map(|done| done.rows_affected())
    })?;
    Ok(inserted == 1)
}

/// The reservation of `order_id`, with its row locked if `lock`.
async fn reservation_in(tx: &mut Tx, order_id: Uuid, lock: bool) -> StoreResult<Option<Reservation>> {
    let lock = if lock { row_lock(tx, "r") } else { String::new() };
    let sql = format!(
        "SELECT r.order_id, r.status, r.lines, r.shortfalls, r.create_time, r.update_time \
         FROM stock_reservations r WHERE r.order_id = $1{lock}"
    );
    fetch_optional_in::<ReservationRow, _, _>(tx, sql, Id(order_id)).await
}

/// The stock of `lines`' products, locked in product-id order (so concurrent reservations
/// cannot deadlock).
async fn locked_stock_in(tx: &mut Tx, lines: &[StockLine]) -> StoreResult<Vec<LockedStock>> {
    let ids: Vec<Uuid> = lines.iter().map(|l| l.product_id).collect();
    let lock = row_lock(tx, "s");
    let rows = on_tx!(tx, |conn| {
        let mut q = QueryBuilder::new(
            "SELECT s.product_id, p.active, s.on_hand - s.reserved AS available \
             FROM stock_levels s JOIN products p ON p.id = s.product_id WHERE s.product_id",
        );
        push_in(&mut q, &ids);
        q.push(format_args!(" ORDER BY s.product_id{lock}"));
        q.build_query_as::<LockedRow>().fetch_all(&mut *conn).await
    })?;
    Ok(rows.into_iter().map(LockedStock::from).collect())
}

/// Adds `reserved` to the reserved and `on_hand` to the on-hand stock of each line's product,
/// times the line's quantity.
async fn move_stock_in(
    tx: &mut Tx,
    lines: &[StockLine],
    reserved: i64,
    on_hand: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for line in lines {
        let quantity = i64::from(line.quantity);
        on_tx!(tx, |conn| {
            sqlx::query(
                "UPDATE stock_levels SET reserved = reserved + $2, on_hand = on_hand + $3, update_time = $4 \
                 WHERE product_id = $1",
            )
            .bind(Id(line.product_id))
            .bind(reserved * quantity)
            .bind(on_hand * quantity)
            .bind(Time(now))
            .execute(&mut *conn)
            .await
            .map(drop)
        })?;
    }
    Ok(())
}

/// Enqueues `StockLow` for each product of `crossings` (id, units available).
async fn announce_low_stock(
    tx: &mut Tx,
    crossings: &[(Uuid, i64)],
    low: LowStock,
    correlation_id: &str,
) -> StoreResult<()> {
    if crossings.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = crossings.iter().map(|(id, _)| *id).collect();
    let skus = skus_in(tx, &ids).await?;
    for (product_id, available) in crossings {
        let sku = skus
            .iter()
            .find(|(id, _)| id == product_id)
            .map(|(_, sku)| sku.as_str());
        let event = events::stock_low(*product_id, sku.unwrap_or_default(), *available, low, correlation_id);
        tx.enqueue(&event).await?;
    }
    Ok(())
}

/// [`Store::reserve_stock`] inside `tx`: nothing is committed here. Announces the products the
/// reservation makes low on stock (`StockLow`, in the business flow `correlation_id`).
pub async fn reserve_stock_in(
    tx: &mut Tx,
    order_id: Uuid,
    lines: &[StockLine],
    low: LowStock,
    correlation_id: &str,
) -> Result<Reservation, ServiceError> {
    let now = domain::now();
    // Claim the order id first: a concurrent call for the same order (or a concurrent release
    // leaving a tombstone) waits on this row until the first commits; then the stored outcome is
    // returned and nothing changes.
    let claimed = on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO stock_reservations (order_id, status, lines, create_time, update_time) \
             VALUES ($1, 'PENDING', $2, $3, $3) ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(Id(order_id))
        .bind(Json(lines))
        .bind(Time(now))
        .execute(&mut *conn)
        .await
        .map(|done| done.rows_affected())
    })?;
    if claimed == 0 {
        return reservation_in(tx, order_id, false)
            .await?
            .ok_or_else(concurrent_reservation);
    }
    let stock = locked_stock_in(tx, lines).await?;
    let shortfalls = domain::shortfalls(lines, &stock);
    let status = if shortfalls.is_empty() {
        move_stock_in(tx, lines, 1, 0, now).await?;
        announce_low_stock(tx, &domain::became_low(lines, &stock, low), low, correlation_id).await?;
        ReservationStatus::Reserved
    } else {
        ReservationStatus::Rejected
    };
    on_tx!(tx, |conn| {
        sqlx::query("UPDATE stock_reservations SET status = $2, shortfalls = $3 WHERE order_id = $1")
            .bind(Id(order_id))
            .bind(status.as_str())
            .bind(Json(&shortfalls))
            .execute(&mut *conn)
            .await
            .map(drop)
    })?;
    Ok(Reservation {
        order_id,
        status,
        lines: lines.to_vec(),
        shortfalls,
        create_time: now,
        update_time: now,
    })
}

/// [`Store::release_stock`] inside `tx`.
pub async fn release_stock_in(tx: &mut Tx, order_id: Uuid, reason: &str) -> Result<Option<Reservation>, ServiceError> {
    settle_in(tx, order_id, ReservationStatus::Released, Some(reason)).await
}

/// [`Store::commit_stock`] inside `tx`.
pub async fn commit_stock_in(tx: &mut Tx, order_id: Uuid) -> Result<Reservation, ServiceError> {
    settle_in(tx, order_id, ReservationStatus::Committed, None)
        .await?
        .ok_or_else(|| ServiceError::not_found("reservation", order_id))
}

/// The SKUs of those of `ids` that exist.
pub async fn skus_in(tx: &mut Tx, ids: &[Uuid]) -> StoreResult<Vec<(Uuid, String)>> {
    let rows = on_tx!(tx, |conn| {
        let mut q = QueryBuilder::new("SELECT p.id, p.sku FROM products p WHERE p.id");
        push_in(&mut q, ids);
        q.build_query_as::<(Id, String)>().fetch_all(&mut *conn).await
    })?;
    Ok(rows.into_iter().map(|(id, sku)| (id.into(), sku)).collect())
}

/// Moves the reservation of `order_id` to `to` (COMMITTED or RELEASED) as
/// [`Reservation::settle`] decides, applying the stock change of its lines. `Ok(None)` when the
/// order has no reservation; a release of such an order leaves a tombstone (RELEASED, no lines)
/// so that a later reserve for it is a no-op.
async fn settle_in(
    tx: &mut Tx,
    order_id: Uuid,
    to: ReservationStatus,
    reason: Option<&str>,
) -> Result<Option<Reservation>, ServiceError> {
    let now = domain::now();
    let mut current = match reservation_in(tx, order_id, true).await? {
        Some(current) => current,
        None if to == ReservationStatus::Released => {
            // Released before it was reserved (events of one order may be handled out of
            // order): the tombstone claims the order id, so the late reserve finds it and
            // reserves nothing. If a concurrent reserve claimed it first, we wait for it here,
            // then release what it reserved.
            let inserted = on_tx!(tx, |conn| {
                sqlx::query(
                    "INSERT INTO stock_reservations (order_id, status, lines, release_reason, create_time, update_time) \
                     VALUES ($1, 'RELEASED', $2, $3, $4, $4) ON CONFLICT (order_id) DO NOTHING",
                )
                .bind(Id(order_id))
                .bind(Json(Vec::<StockLine>::new()))
                .bind(reason)
                .bind(Time(now))
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
            })?;
            if inserted == 1 {
                return Ok(None);
            }
            reservation_in(tx, order_id, true)
                .await?
                .ok_or_else(concurrent_reservation)?
        }
        None => return Ok(None),
    };
    match current.settle(to)? {
        Settlement::Tombstone => return Ok(None),
        Settlement::Unchanged => return Ok(Some(current)),
        Settlement::Apply => {}
    }
    // Committed stock leaves the warehouse (on hand drops with reserved); released stock is
    // available again.
    let leaves = i64::from(to == ReservationStatus::Committed);
    move_stock_in(tx, &current.lines, -1, -leaves, now).await?;
    on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE stock_reservations SET status = $2, release_reason = $3, update_time = $4 WHERE order_id = $1",
        )
        .bind(Id(order_id))
        .bind(to.as_str())
        .bind(reason)
        .bind(Time(now))
        .execute(&mut *conn)
        .await
        .map(drop)
    })?;
    current.status = to;
    current.update_time = now;
    Ok(Some(current))
}
