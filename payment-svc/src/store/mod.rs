//! Persistence of payments, transactions and refunds: one trait, a PostgreSQL and an SQLite
//! implementation, and the embedded migrations of both (the event outbox and inbox of the
//! platform included). Plain runtime SQL, no query macros.
//!
//! Reads run on the pool. Everything that changes state runs inside a [`Tx`] the caller opens,
//! so the service layer decides what commits together: an intent row on its own before the
//! gateway call, the outcome with its outbox event after it, or everything inside the
//! transaction of an event handler.

mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use ordermesh_platform::ServiceError;
use ordermesh_platform::db::{Database, Migrations};
use ordermesh_platform::events::{Tx, outbox};
use uuid::Uuid;

use crate::domain::{Payment, PaymentFilter, PaymentView, Refund, Transaction};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// The migrations of both backends (the service's own, then the platform's outbox and inbox),
/// embedded in the binary.
pub fn migrations() -> Migrations {
    let mut postgres = vec![(
        1,
        "payments",
        include_str!("../../migrations/postgres/0001_payments.sql"),
    )];
    postgres.extend_from_slice(outbox::POSTGRES_MIGRATIONS);
    let mut sqlite = vec![(1, "payments", include_str!("../../migrations/sqlite/0001_payments.sql"))];
    sqlite.extend_from_slice(outbox::SQLITE_MIGRATIONS);
    Migrations::embedded(&postgres, &sqlite)
}

/// The store of a connected (and migrated) database.
pub fn for_database(db: &Database) -> Arc<dyn PaymentStore> {
    match db {
        Database::Postgres(_) => Arc::new(PgStore::new(db.clone())),
        Database::Sqlite(_) => Arc::new(SqliteStore::new(db.clone())),
    }
}

#[async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    /// The database the store works on (for [`Tx::begin`]).
    fn database(&self) -> &Database;

    /// A payment with its transactions and refunds.
    async fn get_payment(&self, id: Uuid) -> Result<Option<PaymentView>, ServiceError>;
    /// Newest first (by id, UUIDv7), strictly older than `after`; at most `limit` payments.
    async fn list_payments(
        &self,
        filter: &PaymentFilter,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<PaymentView>, ServiceError>;

    /// The transaction that used idempotency key `key`.
    async fn transaction_by_key(&self, tx: &mut Tx, key: &str) -> Result<Option<Transaction>, ServiceError>;
    /// A transaction, locked until `tx` ends (PostgreSQL `FOR UPDATE`; SQLite transactions hold
    /// the database's write lock from their start).
    async fn lock_transaction(&self, tx: &mut Tx, id: Uuid) -> Result<Option<Transaction>, ServiceError>;
    /// A payment, locked until `tx` ends.
    async fn lock_payment(&self, tx: &mut Tx, id: Uuid) -> Result<Option<Payment>, ServiceError>;
    /// The order's payment that is not DECLINED or FAILED (there is at most one), locked.
    async fn active_payment_for_order(&self, tx: &mut Tx, order_id: Uuid) -> Result<Option<Payment>, ServiceError>;
    /// The transactions of a payment, oldest first.
    async fn transactions_of(&self, tx: &mut Tx, payment_id: Uuid) -> Result<Vec<Transaction>, ServiceError>;
    async fn refund(&self, tx: &mut Tx, id: Uuid) -> Result<Option<Refund>, ServiceError>;

    /// ALREADY_EXISTS (`order_id`) when the order already has a payment that is not DECLINED
    /// or FAILED.
    async fn insert_payment(&self, tx: &mut Tx, payment: &Payment) -> Result<(), ServiceError>;
    /// ALREADY_EXISTS (`idempotency_key`) when the key was used before.
    async fn insert_transaction(&self, tx: &mut Tx, transaction: &Transaction) -> Result<(), ServiceError>;
    async fn insert_refund(&self, tx: &mut Tx, refund: &Refund) -> Result<(), ServiceError>;
    /// Writes the mutable fields (amounts, status, reason, reference, update time).
    async fn update_payment(&self, tx: &mut Tx, payment: &Payment) -> Result<(), ServiceError>;
    /// Writes status, reference, failure reason and update time.
    async fn update_transaction(&self, tx: &mut Tx, transaction: &Transaction) -> Result<(), ServiceError>;
    /// Writes status, reference and update time.
    async fn update_refund(&self, tx: &mut Tx, refund: &Refund) -> Result<(), ServiceError>;
}

/// Maps a unique violation of a write to `on_unique`.
fn write_error(error: sqlx::Error, on_unique: ServiceError) -> ServiceError {
    if let sqlx::Error::Database(db) = &error
        && db.kind() == sqlx::error::ErrorKind::UniqueViolation
    {
        return on_unique;
    }
    error.into()
}

fn wrong_backend() -> ServiceError {
    ServiceError::internal(anyhow::anyhow!("transaction of another database backend"))
}

fn bad_column(column: &str, value: &str) -> ServiceError {
    ServiceError::internal(anyhow::anyhow!("unexpected {column} {value:?}"))
}
