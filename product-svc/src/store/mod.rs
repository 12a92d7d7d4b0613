//! Persistence of the catalogue and inventory: one trait, a PostgreSQL and an SQLite
//! implementation, and the embedded migrations of both. Plain runtime SQL, no query macros.

mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use ordermesh_platform::ServiceError;
use ordermesh_platform::db::{Database, Migrations};
use ordermesh_platform::events::Tx;
use ordermesh_platform::events::outbox;
use ordermesh_platform::events::tx::TxConn;
use uuid::Uuid;

use crate::domain::{
    Adjustment, Category, ListCursor, Origin, Product, ProductFilter, ProductPatch, Reservation, ReservationStatus,
    StockLevel, StockLine,
};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// The migrations of both backends, embedded in the binary: the catalogue, then the platform's
/// event outbox and inbox (versions 9000 and up).
pub fn migrations() -> Migrations {
    let postgres = [
        &[(1, "catalog", include_str!("../../migrations/postgres/0001_catalog.sql"))][..],
        outbox::POSTGRES_MIGRATIONS,
    ]
    .concat();
    let sqlite = [
        &[(1, "catalog", include_str!("../../migrations/sqlite/0001_catalog.sql"))][..],
        outbox::SQLITE_MIGRATIONS,
    ]
    .concat();
    Migrations::embedded(&postgres, &sqlite)
}

/// [`ProductStore::reserve_stock`] inside `tx` (the event consumer's transaction, with its inbox
/// row and outgoing events): the reservation, the inbox row and the answer commit together.
pub async fn reserve_stock_in(tx: &mut Tx, order_id: Uuid, lines: &[StockLine]) -> Result<Reservation, ServiceError> {
    match tx.conn() {
        TxConn::Postgres(c) => postgres::reserve(c, order_id, lines).await,
        TxConn::Sqlite(c) => sqlite::reserve(c, order_id, lines).await,
    }
}

/// [`ProductStore::release_stock`] inside `tx`. Like it, a release of an order without a
/// reservation leaves a tombstone and returns `None`.
pub async fn release_stock_in(tx: &mut Tx, order_id: Uuid, reason: &str) -> Result<Option<Reservation>, ServiceError> {
    match tx.conn() {
        TxConn::Postgres(c) => postgres::finish(c, order_id, ReservationStatus::Released, Some(reason)).await,
        TxConn::Sqlite(c) => sqlite::finish(c, order_id, ReservationStatus::Released, Some(reason)).await,
    }
}

/// [`ProductStore::commit_stock`] inside `tx`.
pub async fn commit_stock_in(tx: &mut Tx, order_id: Uuid) -> Result<Reservation, ServiceError> {
    let outcome = match tx.conn() {
        TxConn::Postgres(c) => postgres::finish(c, order_id, ReservationStatus::Committed, None).await?,
        TxConn::Sqlite(c) => sqlite::finish(c, order_id, ReservationStatus::Committed, None).await?,
    };
    outcome.ok_or_else(|| ServiceError::not_found("reservation", order_id))
}

/// The SKUs of those of `ids` that exist, inside `tx`.
pub async fn skus_in(tx: &mut Tx, ids: &[Uuid]) -> Result<Vec<(Uuid, String)>, ServiceError> {
    match tx.conn() {
        TxConn::Postgres(c) => postgres::skus(c, ids).await,
        TxConn::Sqlite(c) => sqlite::skus(c, ids).await,
    }
}

/// The store of a connected (and migrated) database.
pub fn for_database(db: &Database) -> Arc<dyn ProductStore> {
    match db {
        Database::Postgres(pool) => Arc::new(PgStore::new(pool.clone())),
        Database::Sqlite(pool) => Arc::new(SqliteStore::new(pool.clone())),
    }
}

/// Position after the last category of a `ListCategories` page (ordered by name, then id).
pub type CategoryCursor = (String, Uuid);

#[async_trait]
pub trait ProductStore: Send + Sync + 'static {
    /// ALREADY_EXISTS when a sibling has the same name; INVALID_ARGUMENT for an unknown parent.
    async fn create_category(&self, category: &Category) -> Result<(), ServiceError>;
    async fn list_categories(
        &self,
        parent_id: Option<Uuid>,
        after: Option<CategoryCursor>,
        limit: usize,
    ) -> Result<Vec<Category>, ServiceError>;

    /// Inserts the product with a zero stock level, and `ProductCreated` in the outbox, in one
    /// transaction. ALREADY_EXISTS for a taken SKU; INVALID_ARGUMENT for an unknown category.
    async fn create_product(&self, product: &Product, origin: &Origin) -> Result<(), ServiceError>;
    /// The products that exist among `ids`, in no particular order.
    async fn get_products(&self, ids: &[Uuid]) -> Result<Vec<Product>, ServiceError>;
    /// Applies `patch`, bumps the version and enqueues `ProductUpdated`, in one transaction.
    /// NOT_FOUND, ABORTED on a version mismatch, ALREADY_EXISTS for a taken SKU.
    async fn update_product(
        &self,
        id: Uuid,
        patch: &ProductPatch,
        expected_version: Option<i64>,
        origin: &Origin,
    ) -> Result<Product, ServiceError>;
    /// Newest first, strictly after `after`; at most `limit` rows.
    async fn list_products(
        &self,
        filter: &ProductFilter,
        after: Option<ListCursor>,
        limit: usize,
    ) -> Result<Vec<Product>, ServiceError>;
    /// Products matching every word (stemmed) in SKU, name or description, best match first.
    async fn search_products(
        &self,
        words: &[String],
        filter: &ProductFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Product>, ServiceError>;

    /// The stock levels that exist among `ids`.
    async fn stock_levels(&self, ids: &[Uuid]) -> Result<Vec<StockLevel>, ServiceError>;
    /// Adds `delta` to on-hand stock; FAILED_PRECONDITION if on-hand would fall below the
    /// reserved quantity; idempotent per key (a repeat returns the first result and publishes
    /// nothing). Enqueues `StockAdjusted` in the adjustment's transaction.
    async fn adjust_stock(&self, adjustment: &Adjustment, origin: &Origin) -> Result<StockLevel, ServiceError>;
    /// Reserves every line or none (lines sorted by product id). Idempotent per order id: a
    /// repeat returns the stored outcome and changes nothing (also after a release: a released
    /// order, or a tombstone left by an early release, is never reserved again).
    async fn reserve_stock(&self, order_id: Uuid, lines: &[StockLine]) -> Result<Reservation, ServiceError>;
    /// RESERVED → COMMITTED (on-hand and reserved both drop). Idempotent; NOT_FOUND for an unknown
    /// order; FAILED_PRECONDITION if released or rejected.
    async fn commit_stock(&self, order_id: Uuid) -> Result<Reservation, ServiceError>;
    /// RESERVED → RELEASED. Idempotent; FAILED_PRECONDITION if committed. For an unknown order:
    /// `None`, and a tombstone (RELEASED, no lines) is stored so that a later `reserve_stock` for
    /// the order reserves nothing and returns the tombstone (a cancel may be handled before its
    /// order's placement).
    async fn release_stock(&self, order_id: Uuid, reason: &str) -> Result<Option<Reservation>, ServiceError>;
}

/// Maps constraint violations of a write to the caller-facing error.
fn write_error(error: sqlx::Error, on_unique: ServiceError, on_foreign_key: ServiceError) -> ServiceError {
    if let sqlx::Error::Database(db) = &error {
        match db.kind() {
            sqlx::error::ErrorKind::UniqueViolation => return on_unique,
            sqlx::error::ErrorKind::ForeignKeyViolation => return on_foreign_key,
            _ => {}
        }
    }
    error.into()
}

fn sku_taken() -> ServiceError {
    ServiceError::AlreadyExists {
        resource: "product",
        field: "sku",
    }
}

fn unknown_category() -> ServiceError {
    ServiceError::invalid("product.category_id", "no such category")
}

fn version_mismatch(current: i64) -> ServiceError {
    ServiceError::Aborted(format!("product version is {current}, not the expected version"))
}

fn reservation_precondition(status: crate::domain::ReservationStatus, action: &str) -> ServiceError {
    ServiceError::precondition(
        "RESERVATION_STATE",
        format!(
            "the reservation is {} and cannot be {action}",
            status.as_str().to_lowercase()
        ),
    )
}

fn below_reserved() -> ServiceError {
    ServiceError::precondition(
        "STOCK_BELOW_RESERVED",
        "on-hand stock would fall below the reserved quantity",
    )
}

fn json<T: serde::de::DeserializeOwned>(value: &str) -> Result<T, ServiceError> {
    serde_json::from_str(value).map_err(ServiceError::internal)
}
