//! SQLite store of customers: UUIDs as text, times as integer microseconds, JSON as text.
//! Read-modify-write updates run in `BEGIN IMMEDIATE` transactions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordermesh_platform::ServiceError;
use ordermesh_proto::common::ActorKind;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use uuid::Uuid;

use super::{ConsentCursor, CustomerCursor, CustomerStore};
use crate::domain::{self, Actor, Consent, Customer, CustomerFilter, CustomerPatch, CustomerStatus, Identity};

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

const CUSTOMER_COLUMNS: &str = "SELECT id, display_name, email, phone, addresses, status, identity_issuer, identity_subject, \
     preferences, create_time, update_time, erase_time, version FROM customers";

fn uuid(row: &SqliteRow, column: &str) -> Result<Uuid, ServiceError> {
    let text: String = row.try_get(column)?;
    Uuid::parse_str(&text).map_err(super::internal)
}

fn time(micros: i64) -> Result<DateTime<Utc>, ServiceError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| super::internal(anyhow::anyhow!("time out of range")))
}

fn json<T: serde::de::DeserializeOwned>(row: &SqliteRow, column: &str) -> Result<T, ServiceError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(super::internal)
}

fn to_json(value: &impl serde::Serialize) -> Result<String, ServiceError> {
    serde_json::to_string(value).map_err(super::internal)
}

fn customer(row: &SqliteRow) -> Result<Customer, ServiceError> {
    let status: String = row.try_get("status")?;
    let issuer: Option<String> = row.try_get("identity_issuer")?;
    let subject: Option<String> = row.try_get("identity_subject")?;
    let erase_time: Option<i64> = row.try_get("erase_time")?;
    Ok(Customer {
        id: uuid(row, "id")?,
        display_name: row.try_get("display_name")?,
        email: row.try_get("email")?,
        phone: row.try_get("phone")?,
        addresses: json(row, "addresses")?,
        status: CustomerStatus::parse(&status)
            .ok_or_else(|| super::internal(anyhow::anyhow!("bad status {status}")))?,
        identity: issuer
            .zip(subject)
            .map(|(issuer, subject)| Identity { issuer, subject }),
        preferences: json(row, "preferences")?,
        create_time: time(row.try_get("create_time")?)?,
        update_time: time(row.try_get("update_time")?)?,
        erase_time: erase_time.map(time).transpose()?,
        version: row.try_get("version")?,
    })
}

fn consent(row: &SqliteRow) -> Result<Consent, ServiceError> {
    let kind: i32 = row.try_get("actor_kind")?;
    Ok(Consent {
        id: uuid(row, "id")?,
        customer_id: uuid(row, "customer_id")?,
        purpose: row.try_get("purpose")?,
        granted: row.try_get("granted")?,
        policy_version: row.try_get("policy_version")?,
        source: row.try_get("source")?,
        recorded_by: Actor {
            kind: ActorKind::try_from(kind).unwrap_or(ActorKind::Unspecified),
            id: row.try_get("actor_id")?,
            roles: json(row, "actor_roles")?,
        },
        record_time: time(row.try_get("record_time")?)?,
    })
}

impl SqliteStore {
    async fn by_idempotency_key(&self, key: &str) -> Result<Option<Customer>, ServiceError> {
        let sql = format!("{CUSTOMER_COLUMNS} WHERE idempotency_key = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(customer).transpose()
    }
}

#[async_trait]
impl CustomerStore for SqliteStore {
    async fn create_customer(&self, c: &Customer, idempotency_key: Option<&str>) -> Result<Customer, ServiceError> {
        if let Some(key) = idempotency_key
            && let Some(existing) = self.by_idempotency_key(key).await?
        {
            return Ok(existing);
        }
        let result = sqlx::query(
            "INSERT INTO customers (id, display_name, sort_name, email, email_normalized, phone, addresses, status, \
             identity_issuer, identity_subject, preferences, idempotency_key, create_time, update_time, erase_time, version) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(c.id.to_string())
        .bind(c.display_name.clone())
        .bind(domain::sort_name(&c.display_name))
        .bind(c.email.clone())
        .bind(domain::normalize_email(&c.email))
        .bind(c.phone.clone())
        .bind(to_json(&c.addresses)?)
        .bind(c.status.as_str())
        .bind(c.identity.as_ref().map(|i| i.issuer.clone()))
        .bind(c.identity.as_ref().map(|i| i.subject.clone()))
        .bind(to_json(&c.preferences)?)
        .bind(idempotency_key.map(str::to_owned))
        .bind(c.create_time.timestamp_micros())
        .bind(c.update_time.timestamp_micros())
        .bind(c.erase_time.map(|t| t.timestamp_micros()))
        .bind(c.version)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(c.clone()),
            Err(e) if super::unique_violation(&e) == Some("idempotency_key") => self
                .by_idempotency_key(idempotency_key.unwrap_or_default())
                .await?
                .ok_or_else(|| ServiceError::Aborted("concurrent create with the same idempotency key".into())),
            Err(e) => Err(super::write_error(e)),
        }
    }

    async fn get_customer(&self, id: Uuid) -> Result<Option<Customer>, ServiceError> {
        let sql = format!("{CUSTOMER_COLUMNS} WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(customer).transpose()
    }

    async fn get_customer_by_identity(&self, issuer: &str, subject: &str) -> Result<Option<Customer>, ServiceError> {
        let sql = format!("{CUSTOMER_COLUMNS} WHERE identity_issuer = ? AND identity_subject = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(issuer.to_owned())
            .bind(subject.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(customer).transpose()
    }

    async fn update_customer(
        &self,
        id: Uuid,
        patch: &CustomerPatch,
        expected_version: Option<i64>,
        allowed: &(dyn for<'c> Fn(&'c Customer) -> bool + Send + Sync),
    ) -> Result<Customer, ServiceError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let sql = format!("{CUSTOMER_COLUMNS} WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let mut current = match row.as_ref().map(customer).transpose()? {
            Some(c) if allowed(&c) => c,
            _ => return Err(ServiceError::not_found("customer", id)),
        };
        if expected_version.is_some_and(|v| v != current.version) {
            return Err(super::version_mismatch(current.version));
        }
        patch.apply(&mut current)?;
        sqlx::query(
            "UPDATE customers SET display_name = ?2, sort_name = ?3, email = ?4, email_normalized = ?5, phone = ?6, \
             addresses = ?7, status = ?8, preferences = ?9, update_time = ?10, version = ?11 WHERE id = ?1",
        )
        .bind(id.to_string())
        .bind(current.display_name.clone())
        .bind(domain::sort_name(&current.display_name))
        .bind(current.email.clone())
        .bind(domain::normalize_email(&current.email))
        .bind(current.phone.clone())
        .bind(to_json(&current.addresses)?)
        .bind(current.status.as_str())
        .bind(to_json(&current.preferences)?)
        .bind(current.update_time.timestamp_micros())
        .bind(current.version)
        .execute(&mut *tx)
        .await
        .map_err(super::write_error)?;
        tx.commit().await?;
        Ok(current)
    }

    async fn list_customers(
        &self,
        filter: &CustomerFilter,
        after: Option<CustomerCursor>,
        limit: usize,
    ) -> Result<Vec<Customer>, ServiceError> {
        let mut q = QueryBuilder::<Sqlite>::new(format!("{CUSTOMER_COLUMNS} WHERE 1"));
        if let Some(query) = &filter.query {
            let pattern = super::like_pattern(query);
            // LIKE is case-insensitive for ASCII only in SQLite; both sides are already folded.
            q.push(" AND (sort_name LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\' OR email_normalized LIKE ");
            q.push_bind(pattern).push(" ESCAPE '\\')");
        }
        if let Some(status) = filter.status {
            q.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some((name, id)) = after {
            q.push(" AND (sort_name, id) > (")
                .push_bind(name)
                .push(", ")
                .push_bind(id.to_string())
                .push(")");
        }
        q.push(" ORDER BY sort_name, id LIMIT ").push_bind(limit as i64);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(customer).collect()
    }

    async fn record_consent(&self, c: &Consent) -> Result<(), ServiceError> {
        sqlx::query(
            "INSERT INTO consents (id, customer_id, purpose, granted, policy_version, source, actor_kind, actor_id, actor_roles, record_time) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(c.id.to_string())
        .bind(c.customer_id.to_string())
        .bind(c.purpose.clone())
        .bind(c.granted)
        .bind(c.policy_version.clone())
        .bind(c.source.clone())
        .bind(c.recorded_by.kind as i32)
        .bind(c.recorded_by.id.clone())
        .bind(to_json(&c.recorded_by.roles)?)
        .bind(c.record_time.timestamp_micros())
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation => {
                ServiceError::not_found("customer", c.customer_id)
            }
            _ => e.into(),
        })?;
        Ok(())
    }

    async fn list_consents(
        &self,
        customer_id: Uuid,
        purpose: Option<&str>,
        after: Option<ConsentCursor>,
        limit: usize,
    ) -> Result<Vec<Consent>, ServiceError> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT id, customer_id, purpose, granted, policy_version, source, actor_kind, actor_id, actor_roles, record_time \
             FROM consents WHERE customer_id = ",
        );
        q.push_bind(customer_id.to_string());
        if let Some(purpose) = purpose {
            q.push(" AND purpose = ").push_bind(purpose.to_owned());
        }
        if let Some((micros, id)) = after {
            q.push(" AND (record_time, id) < (")
                .push_bind(micros)
                .push(", ")
                .push_bind(id.to_string())
                .push(")");
        }
        q.push(" ORDER BY record_time DESC, id DESC LIMIT ")
            .push_bind(limit as i64);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(consent).collect()
    }
}
