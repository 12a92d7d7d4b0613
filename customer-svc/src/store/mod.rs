//! Persistence of customers and consents: one trait, a PostgreSQL and an SQLite implementation,
//! and the embedded migrations of both. Plain runtime SQL, no query macros.

mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use ordermesh_platform::ServiceError;
use ordermesh_platform::db::{Database, Migrations};
use uuid::Uuid;

use crate::domain::{Consent, Customer, CustomerFilter, CustomerPatch};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

pub fn migrations() -> Migrations {
    Migrations::with_platform(
        &[(
            1,
            "customers",
            include_str!("../../migrations/postgres/0001_customers.sql"),
        )],
        &[(
            1,
            "customers",
            include_str!("../../migrations/sqlite/0001_customers.sql"),
        )],
    )
}

pub fn for_database(db: &Database) -> Arc<dyn CustomerStore> {
    match db {
        Database::Postgres(pool) => Arc::new(PgStore::new(pool.clone())),
        Database::Sqlite(pool) => Arc::new(SqliteStore::new(pool.clone())),
    }
}

/// Position after the last customer of a `ListCustomers` page: (sort name, id).
pub type CustomerCursor = (String, Uuid);
/// Position after the last consent of a `ListConsents` page: (record time in µs, id).
pub type ConsentCursor = (i64, Uuid);

#[async_trait]
pub trait CustomerStore: Send + Sync + 'static {
    /// Inserts the customer. With an idempotency key already used, returns the customer created
    /// with it instead. ALREADY_EXISTS when the identity or the e-mail is taken.
    async fn create_customer(
        &self,
        customer: &Customer,
        idempotency_key: Option<&str>,
    ) -> Result<Customer, ServiceError>;
    async fn get_customer(&self, id: Uuid) -> Result<Option<Customer>, ServiceError>;
    async fn get_customer_by_identity(&self, issuer: &str, subject: &str) -> Result<Option<Customer>, ServiceError>;
    /// Applies `patch` if `allowed(current)` passes (authorization on the stored row) and the
    /// version matches. NOT_FOUND, ABORTED, FAILED_PRECONDITION (erased), ALREADY_EXISTS (e-mail).
    async fn update_customer(
        &self,
        id: Uuid,
        patch: &CustomerPatch,
        expected_version: Option<i64>,
        allowed: &(dyn for<'c> Fn(&'c Customer) -> bool + Send + Sync),
    ) -> Result<Customer, ServiceError>;
    /// Ordered by sort name then id, strictly after `after`.
    async fn list_customers(
        &self,
        filter: &CustomerFilter,
        after: Option<CustomerCursor>,
        limit: usize,
    ) -> Result<Vec<Customer>, ServiceError>;
    async fn record_consent(&self, consent: &Consent) -> Result<(), ServiceError>;
    /// Newest first, strictly after `after`.
    async fn list_consents(
        &self,
        customer_id: Uuid,
        purpose: Option<&str>,
        after: Option<ConsentCursor>,
        limit: usize,
    ) -> Result<Vec<Consent>, ServiceError>;
}

/// Which unique index a violation hit, from the constraint name (PostgreSQL) or the message
/// (SQLite names the columns). `None` for other errors.
fn unique_violation(error: &sqlx::Error) -> Option<&'static str> {
    let sqlx::Error::Database(db) = error else {
        return None;
    };
    if db.kind() != sqlx::error::ErrorKind::UniqueViolation {
        return None;
    }
    let what = db.constraint().unwrap_or_else(|| db.message());
    Some(if what.contains("idempotency") {
        "idempotency_key"
    } else if what.contains("identity") {
        "identity"
    } else if what.contains("email") {
        "email"
    } else {
        "id"
    })
}

fn write_error(error: sqlx::Error) -> ServiceError {
    match unique_violation(&error) {
        Some(field @ ("identity" | "email")) => ServiceError::AlreadyExists {
            resource: "customer",
            field,
        },
        _ => error.into(),
    }
}

fn version_mismatch(current: i64) -> ServiceError {
    ServiceError::Aborted(format!("customer version is {current}, not the expected version"))
}

/// `%q%` for LIKE with `\` escaping the wildcards of the query.
fn like_pattern(query: &str) -> String {
    let escaped = query.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

fn internal<E: Into<anyhow::Error>>(e: E) -> ServiceError {
    ServiceError::internal(e)
}
