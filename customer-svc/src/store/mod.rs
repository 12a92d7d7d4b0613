//! Persistence of customers and consents on PostgreSQL or SQLite, and the embedded migrations of
//! both. Each statement is written once and runs on either backend (`on_pool!`/`on_tx!`); the
//! behaviour suite in `tests/store.rs` runs on both.
//!
//! Reads return [`StoreResult`]. Writes document the refusals callers act on (ALREADY_EXISTS,
//! NOT_FOUND, ABORTED, FAILED_PRECONDITION) and return them as [`ServiceError`]; database
//! failures map as everywhere (`From<StoreError>`).

use chrono::{DateTime, Utc};
use ordermesh_platform::db::{Database, Migrations};
use ordermesh_platform::events::Tx;
use ordermesh_platform::{Actor, Origin, ServiceError, StoreError, StoreResult, convert, on_pool, on_tx};
use ordermesh_proto::common;
use sqlx::error::ErrorKind;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, QueryBuilder};
use uuid::Uuid;

use crate::domain::{
    self, Address, Consent, Customer, CustomerFilter, CustomerPatch, CustomerStatus, Identity, Preferences,
    SegmentBounds, normalize_email, sort_name,
};
use crate::events;
use ordermesh_platform::db::columns::{Id, Time};
use ordermesh_platform::db::page::{Keyset, fetch_optional_in};

mod gdpr;
mod segments;

pub use gdpr::Erased;
pub use segments::SaleChange;

pub fn migrations() -> Migrations {
    Migrations::with_platform(
        &[
            (
                1,
                "customers",
                include_str!("../../migrations/postgres/0001_customers.sql"),
            ),
            (2, "gdpr", include_str!("../../migrations/postgres/0002_gdpr.sql")),
            (
                3,
                "segments",
                include_str!("../../migrations/postgres/0003_segments.sql"),
            ),
        ],
        &[
            (
                1,
                "customers",
                include_str!("../../migrations/sqlite/0001_customers.sql"),
            ),
            (2, "gdpr", include_str!("../../migrations/sqlite/0002_gdpr.sql")),
            (3, "segments", include_str!("../../migrations/sqlite/0003_segments.sql")),
        ],
    )
}

/// Position after the last customer of a `ListCustomers` page: (sort name, id).
pub type CustomerCursor = (String, Uuid);
/// Position after the last consent of a `ListConsents` page: (record time, id).
pub type ConsentCursor = (DateTime<Utc>, Uuid);

#[derive(Clone, Debug)]
pub struct Store(Database);

const SELECT_CUSTOMER: &str = "SELECT id, display_name, email, phone, addresses, status, identity_issuer, \
     identity_subject, preferences, create_time, update_time, erase_time, version, last_activity_time FROM customers";

/// Customers by name (in byte order; the index `customers_by_name` is built with the "C"
/// collation on PostgreSQL), then id.
const CUSTOMERS_PAGE: Keyset = Keyset::ascending("sort_name", "id").in_byte_order();
/// Consents newest first.
const CONSENTS_PAGE: Keyset = Keyset::descending("record_time", "id");

const SELECT_CONSENT: &str = "SELECT id, customer_id, purpose, granted, policy_version, source, actor_kind, \
     actor_id, actor_roles, record_time FROM consents";

#[derive(sqlx::FromRow)]
struct CustomerRow {
    id: Id,
    display_name: String,
    email: String,
    phone: String,
    addresses: Json<Vec<Address>>,
    status: String,
    identity_issuer: Option<String>,
    identity_subject: Option<String>,
    preferences: Json<Preferences>,
    create_time: Time,
    update_time: Time,
    erase_time: Option<Time>,
    version: i64,
    last_activity_time: Time,
}

impl TryFrom<CustomerRow> for Customer {
    type Error = StoreError;

    fn try_from(row: CustomerRow) -> StoreResult<Customer> {
        row.into_customer()
    }
}

impl CustomerRow {
    fn into_customer(self) -> StoreResult<Customer> {
        Ok(Customer {
            id: self.id.0,
            display_name: self.display_name,
            email: self.email,
            phone: self.phone,
            addresses: self.addresses.0,
            status: CustomerStatus::parse(&self.status).ok_or_else(|| StoreError::corrupt("status", &self.status))?,
            identity: self
                .identity_issuer
                .zip(self.identity_subject)
                .map(|(issuer, subject)| Identity { issuer, subject }),
            preferences: self.preferences.0,
            create_time: self.create_time.0,
            update_time: self.update_time.0,
            erase_time: self.erase_time.map(|at| at.0),
            version: self.version,
            last_activity_time: self.last_activity_time.0,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ConsentRow {
    id: Id,
    customer_id: Id,
    purpose: String,
    granted: bool,
    policy_version: String,
    source: String,
    /// The API's `ActorKind` number.
    actor_kind: i32,
    actor_id: String,
    actor_roles: Json<Vec<String>>,
    record_time: Time,
}

impl ConsentRow {
    fn into_consent(self) -> Consent {
        Consent {
            id: self.id.0,
            customer_id: self.customer_id.0,
            purpose: self.purpose,
            granted: self.granted,
            policy_version: self.policy_version,
            source: self.source,
            recorded_by: Actor {
                // An unknown (newer) kind reads as unspecified, as the API does.
                kind: convert::actor_kind(self.actor_kind),
                id: self.actor_id,
                roles: self.actor_roles.0,
            },
            record_time: self.record_time.0,
        }
    }
}

impl Store {
    pub fn new(db: &Database) -> Self {
        Self(db.clone())
    }

    /// Inserts the customer, and `CustomerCreated` in the outbox, in one transaction. With an
    /// idempotency key already used, returns the customer created with it instead (and publishes
    /// nothing). ALREADY_EXISTS when the identity or the e-mail is taken.
    pub async fn create_customer(
        &self,
        customer: &Customer,
        idempotency_key: Option<&str>,
        origin: &Origin,
    ) -> Result<Customer, ServiceError> {
        if let Some(key) = idempotency_key
            && let Some(existing) = self.customer_by_idempotency_key(key).await?
        {
            return Ok(existing);
        }
        let c = customer;
        let mut tx = Tx::begin(&self.0).await?;
        let inserted = on_tx!(tx, |conn| {
            sqlx::query(
                "INSERT INTO customers (id, display_name, sort_name, email, email_normalized, phone, addresses, \
                 status, identity_issuer, identity_subject, preferences, idempotency_key, create_time, update_time, \
                 erase_time, version, last_activity_time) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $13)",
            )
            .bind(Id(c.id))
            .bind(&c.display_name)
            .bind(sort_name(&c.display_name))
            .bind(&c.email)
            .bind(normalize_email(&c.email))
            .bind(&c.phone)
            .bind(Json(&c.addresses))
            .bind(c.status.as_str())
            .bind(c.identity.as_ref().map(|i| i.issuer.as_str()))
            .bind(c.identity.as_ref().map(|i| i.subject.as_str()))
            .bind(Json(&c.preferences))
            .bind(idempotency_key)
            .bind(Time(c.create_time))
            .bind(Time(c.update_time))
            .bind(c.erase_time.map(Time))
            .bind(c.version)
            .execute(&mut *conn)
            .await
            .map(drop)
        });
        match inserted {
            Ok(()) => {
                tx.enqueue(&events::customer_created(customer, origin)).await?;
                tx.commit().await?;
                Ok(customer.clone())
            }
            // A concurrent create with the same key won the race: answer with its customer (the
            // failed transaction rolls back as it is dropped).
            Err(e) if unique_field(&e) == Some("idempotency_key") => self
                .customer_by_idempotency_key(idempotency_key.unwrap_or_default())
                .await?
                .ok_or_else(|| ServiceError::Aborted("concurrent create with the same idempotency key".into())),
            Err(e) => Err(write_error(e)),
        }
    }

    pub async fn get_customer(&self, id: Uuid) -> StoreResult<Option<Customer>> {
        let sql = format!("{SELECT_CUSTOMER} WHERE id = $1");
        let row = on_pool!(&self.0, |pool| {
            sqlx::query_as::<_, CustomerRow>(AssertSqlSafe(sql))
                .bind(Id(id))
                .fetch_optional(pool)
                .await
        })?;
        row.map(CustomerRow::into_customer).transpose()
    }

    pub async fn get_customer_by_identity(&self, issuer: &str, subject: &str) -> StoreResult<Option<Customer>> {
        let sql = format!("{SELECT_CUSTOMER} WHERE identity_issuer = $1 AND identity_subject = $2");
        let row = on_pool!(&self.0, |pool| {
            sqlx::query_as::<_, CustomerRow>(AssertSqlSafe(sql))
                .bind(issuer)
                .bind(subject)
                .fetch_optional(pool)
                .await
        })?;
        row.map(CustomerRow::into_customer).transpose()
    }

    async fn customer_by_idempotency_key(&self, key: &str) -> StoreResult<Option<Customer>> {
        let sql = format!("{SELECT_CUSTOMER} WHERE idempotency_key = $1");
        let row = on_pool!(&self.0, |pool| {
            sqlx::query_as::<_, CustomerRow>(AssertSqlSafe(sql))
                .bind(key)
                .fetch_optional(pool)
                .await
        })?;
        row.map(CustomerRow::into_customer).transpose()
    }

    /// Applies `patch` if `allowed(current)` passes (authorization on the stored row) and the
    /// version matches, with `CustomerUpdated` in the outbox when anything changed. NOT_FOUND,
    /// ABORTED, FAILED_PRECONDITION (erased), ALREADY_EXISTS (e-mail).
    pub async fn update_customer(
        &self,
        id: Uuid,
        patch: &CustomerPatch,
        expected_version: Option<i64>,
        allowed: &(dyn for<'c> Fn(&'c Customer) -> bool + Send + Sync),
        origin: &Origin,
    ) -> Result<Customer, ServiceError> {
        let mut tx = Tx::begin(&self.0).await?;
        let mut customer = match locked_customer(&mut tx, id).await? {
            Some(c) if allowed(&c) => c,
            _ => return Err(ServiceError::not_found("customer", id)),
        };
        if expected_version.is_some_and(|v| v != customer.version) {
            return Err(ServiceError::Aborted(format!(
                "customer version is {}, not the expected version",
                customer.version
            )));
        }
        let before = customer.clone();
        patch.apply(&mut customer)?;
        let c = &customer;
        on_tx!(tx, |conn| {
            sqlx::query(
                "UPDATE customers SET display_name = $2, sort_name = $3, email = $4, email_normalized = $5, \
                 phone = $6, addresses = $7, status = $8, preferences = $9, update_time = $10, version = $11, \
                 last_activity_time = $10 WHERE id = $1",
            )
            .bind(Id(id))
            .bind(&c.display_name)
            .bind(sort_name(&c.display_name))
            .bind(&c.email)
            .bind(normalize_email(&c.email))
            .bind(&c.phone)
            .bind(Json(&c.addresses))
            .bind(c.status.as_str())
            .bind(Json(&c.preferences))
            .bind(Time(c.update_time))
            .bind(c.version)
            .execute(&mut *conn)
            .await
            .map(drop)
        })
        .map_err(write_error)?;
        if !domain::changed_fields(&before, &customer).is_empty() {
            tx.enqueue(&events::customer_updated(&before, &customer, origin))
                .await?;
        }
        tx.commit().await?;
        Ok(customer)
    }

    /// Ordered by sort name (byte order) then id, strictly after `after`; segments as they are
    /// under `bounds`.
    pub async fn list_customers(
        &self,
        filter: &CustomerFilter,
        bounds: &SegmentBounds,
        after: Option<CustomerCursor>,
        limit: usize,
    ) -> StoreResult<Vec<Customer>> {
        let rows = on_pool!(&self.0, |pool| {
            let mut q = QueryBuilder::new(format!("{SELECT_CUSTOMER} WHERE 1 = 1"));
            if let Some(query) = &filter.query {
                // Both sides are already case-folded (SQLite's LIKE folds ASCII only).
                let pattern = like_pattern(query);
                q.push(" AND (sort_name LIKE ")
                    .push_bind(pattern.clone())
                    .push(" ESCAPE '\\' OR email_normalized LIKE ")
                    .push_bind(pattern)
                    .push(" ESCAPE '\\')");
            }
            if let Some(status) = filter.status {
                q.push(" AND status = ").push_bind(status.as_str());
            }
            segments::push_segments(&mut q, &filter.segments, bounds);
            CUSTOMERS_PAGE.push(&mut q, after.map(|(name, id)| (name, Id(id))), limit);
            q.build_query_as::<CustomerRow>().fetch_all(pool).await
        })?;
        rows.into_iter().map(CustomerRow::into_customer).collect()
    }

    /// Appends a consent, and `ConsentRecorded` in the outbox, in one transaction. NOT_FOUND when
    /// the customer does not exist.
    pub async fn record_consent(&self, consent: &Consent, correlation_id: &str) -> Result<(), ServiceError> {
        let c = consent;
        let mut tx = Tx::begin(&self.0).await?;
        on_tx!(tx, |conn| {
            sqlx::query(
                "INSERT INTO consents (id, customer_id, purpose, granted, policy_version, source, actor_kind, \
                 actor_id, actor_roles, record_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(Id(c.id))
            .bind(Id(c.customer_id))
            .bind(&c.purpose)
            .bind(c.granted)
            .bind(&c.policy_version)
            .bind(&c.source)
            .bind(common::ActorKind::from(c.recorded_by.kind) as i32)
            .bind(&c.recorded_by.id)
            .bind(Json(&c.recorded_by.roles))
            .bind(Time(c.record_time))
            .execute(&mut *conn)
            .await
            .map(drop)
        })
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.kind() == ErrorKind::ForeignKeyViolation => {
                ServiceError::not_found("customer", c.customer_id)
            }
            _ => e.into(),
        })?;
        tx.enqueue(&events::consent_recorded(consent, correlation_id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Newest first, strictly after `after`.
    pub async fn list_consents(
        &self,
        customer_id: Uuid,
        purpose: Option<&str>,
        after: Option<ConsentCursor>,
        limit: usize,
    ) -> StoreResult<Vec<Consent>> {
        let rows = on_pool!(&self.0, |pool| {
            let mut q = QueryBuilder::new(format!("{SELECT_CONSENT} WHERE customer_id = "));
            q.push_bind(Id(customer_id));
            if let Some(purpose) = purpose {
                q.push(" AND purpose = ").push_bind(purpose.to_owned());
            }
            CONSENTS_PAGE.push(&mut q, after.map(|(time, id)| (Time(time), Id(id))), limit);
            q.build_query_as::<ConsentRow>().fetch_all(pool).await
        })?;
        Ok(rows.into_iter().map(ConsentRow::into_consent).collect())
    }
}

/// Reads customer `id` in `tx` and keeps others from changing it until `tx` ends.
async fn locked_customer(tx: &mut Tx, id: Uuid) -> StoreResult<Option<Customer>> {
    // PostgreSQL locks the row; SQLite has no row locks, and its transaction (BEGIN IMMEDIATE)
    // already holds the database's write lock.
    let lock = if tx.is_postgres() { " FOR UPDATE" } else { "" };
    let sql = format!("{SELECT_CUSTOMER} WHERE id = $1{lock}");
    fetch_optional_in::<CustomerRow, _, _>(tx, sql, Id(id)).await
}

/// Which unique index of `customers` a failed write hit: `identity`, `email` or
/// `idempotency_key`. PostgreSQL names the index; SQLite names only the columns, in its message,
/// which [`StoreError`] does not keep (so this reads the raw error).
fn unique_field(error: &sqlx::Error) -> Option<&'static str> {
    let sqlx::Error::Database(db) = error else {
        return None;
    };
    if db.kind() != ErrorKind::UniqueViolation {
        return None;
    }
    let index = db.constraint().unwrap_or_else(|| db.message());
    [
        ("idempotency", "idempotency_key"),
        ("identity", "identity"),
        ("email", "email"),
    ]
    .into_iter()
    .find(|(name, _)| index.contains(name))
    .map(|(_, field)| field)
}

/// ALREADY_EXISTS for a taken identity or e-mail; any other failure as usual.
fn write_error(error: sqlx::Error) -> ServiceError {
    let field = unique_field(&error);
    let error = StoreError::from(error);
    match field {
        Some(field @ ("identity" | "email")) => error.or_on_unique(ServiceError::AlreadyExists {
            resource: "customer",
            field,
        }),
        _ => error.into(),
    }
}

/// `%q%` for LIKE with `\` escaping the wildcards of the query.
fn like_pattern(query: &str) -> String {
    let escaped = query.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}
