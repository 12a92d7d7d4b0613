//! Persistence of the catalogue and inventory on PostgreSQL or SQLite: one [`Store`] whose every
//! statement is written once and runs on either backend (`on_pool!` / `on_tx!`, with the column
//! types of [`ordermesh_platform::db::columns`]). The backends differ only where their SQL does — full-text search
//! (`Store::search_products`), row locks (`row_lock`) and the byte-order collation of category
//! names — each in one commented place.
//!
//! Reads return [`StoreResult`]. Writes that can be refused (a taken SKU, a stale version, a
//! reservation in the wrong state) return the refusal as the [`ServiceError`] they document.

mod catalog;
mod stock;

use ordermesh_platform::db::{Database, Migrations};
use ordermesh_platform::events::Tx;
use ordermesh_platform::{ServiceError, StoreError};
use sqlx::{Encode, QueryBuilder, Type};
use uuid::Uuid;

pub use catalog::CategoryCursor;
use ordermesh_platform::db::columns::Id;

use crate::domain::LowStock;
pub use stock::{commit_stock_in, release_stock_in, reserve_stock_in, skus_in};

/// The migrations of both backends, embedded in the binary: the catalogue, then the platform's
/// event outbox and inbox.
pub fn migrations() -> Migrations {
    Migrations::with_platform(
        &[(1, "catalog", include_str!("../../migrations/postgres/0001_catalog.sql"))],
        &[(1, "catalog", include_str!("../../migrations/sqlite/0001_catalog.sql"))],
    )
}

/// The catalogue and inventory of a connected (and migrated) database.
#[derive(Clone, Debug)]
pub struct Store {
    db: Database,
    /// When a reservation or an adjustment makes a product low on stock (`StockLow`).
    low_stock: LowStock,
}

impl Store {
    pub fn new(db: &Database) -> Self {
        Self::with_low_stock(db, LowStock::default())
    }

    pub fn with_low_stock(db: &Database, low_stock: LowStock) -> Self {
        Self {
            db: db.clone(),
            low_stock,
        }
    }

    pub fn low_stock(&self) -> LowStock {
        self.low_stock
    }
}

/// The row-lock clause of a statement that reads rows (of the table aliased `alias`) which the
/// transaction then changes. PostgreSQL locks them (`FOR UPDATE`); an SQLite write transaction
/// already holds the database's single write lock (`BEGIN IMMEDIATE`, see [`Tx::begin`]), and
/// SQLite has no `FOR UPDATE`.
fn row_lock(tx: &Tx, alias: &str) -> String {
    if tx.is_postgres() {
        format!(" FOR UPDATE OF {alias}")
    } else {
        String::new()
    }
}

/// Appends ` IN (…)` with one bind per id. An empty list matches nothing (PostgreSQL has no
/// `IN ()`).
fn push_in<DB: sqlx::Database>(q: &mut QueryBuilder<DB>, ids: &[Uuid])
where
    Id: Encode<'static, DB> + Type<DB>,
{
    if ids.is_empty() {
        q.push(" IN (NULL)");
        return;
    }
    q.push(" IN (");
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(Id(*id));
    }
    list.push_unseparated(")");
}

/// A write's failure, with the constraint violations the store documents mapped to their
/// refusals.
fn refusal(error: sqlx::Error, on_unique: ServiceError, on_foreign_key: ServiceError) -> ServiceError {
    let foreign_key = matches!(
        &error,
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation
    );
    if foreign_key {
        on_foreign_key
    } else {
        StoreError::from(error).or_on_unique(on_unique)
    }
}
