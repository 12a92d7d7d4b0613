//! PostgreSQL store of customers: native uuid/timestamptz/jsonb columns.

use async_trait::async_trait;
use chrono::DateTime;
use ordermesh_platform::ServiceError;
use ordermesh_proto::common::ActorKind;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::{ConsentCursor, CustomerCursor, CustomerStore};
use crate::domain::{
    Actor, Address, Consent, Customer, CustomerFilter, CustomerPatch, CustomerStatus, Identity, Preferences,
};

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

const CUSTOMER_COLUMNS: &str = "SELECT id, display_name, email, phone, addresses, status, identity_issuer, identity_subject, \
     preferences, create_time, update_time, erase_time, version FROM customers";

fn customer(row: &PgRow) -> Result<Customer, ServiceError> {
    let status: String = row.try_get("status")?;
    let issuer: Option<String> = row.try_get("identity_issuer")?;
    let subject: Option<String> = row.try_get("identity_subject")?;
    let addresses: Json<Vec<Address>> = row.try_get("addresses")?;
    let preferences: Json<Preferences> = row.try_get("preferences")?;
    Ok(Customer {
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        email: row.try_get("email")?,
        phone: row.try_get("phone")?,
        addresses: addresses.0,
        status: CustomerStatus::parse(&status)
            .ok_or_else(|| super::internal(anyhow::anyhow!("bad status {status}")))?,
        identity: issuer
            .zip(subject)
            .map(|(issuer, subject)| Identity { issuer, subject }),
        preferences: preferences.0,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        erase_time: row.try_get("erase_time")?,
        version: row.try_get("version")?,
    })
}

fn consent(row: &PgRow) -> Result<Consent, ServiceError> {
    let kind: i32 = row.try_get("actor_kind")?;
    let roles: Json<Vec<String>> = row.try_get("actor_roles")?;
    Ok(Consent {
        id: row.try_get("id")?,
        customer_id: row.try_get("customer_id")?,
        purpose: row.try_get("purpose")?,
        granted: row.try_get("granted")?,
        policy_version: row.try_get("policy_version")?,
        source: row.try_get("source")?,
        recorded_by: Actor {
            kind: ActorKind::try_from(kind).unwrap_or(ActorKind::Unspecified),
            id: row.try_get("actor_id")?,
            roles: roles.0,
        },
        record_time: row.try_get("record_time")?,
    })
}

impl PgStore {
    async fn by_idempotency_key(&self, key: &str) -> Result<Option<Customer>, ServiceError> {
        let sql = format!("{CUSTOMER_COLUMNS} WHERE idempotency_key = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(customer).transpose()
    }
}

#[async_trait]
impl CustomerStore for PgStore {
    async fn create_customer(&self, c: &Customer, idempotency_key: Option<&str>) -> Result<Customer, ServiceError> {
        if let Some(key) = idempotency_key
            && let Some(existing) = self.by_idempotency_key(key).await?
        {
            return Ok(existing);
        }
        let result = sqlx::query(
            "INSERT INTO customers (id, display_name, sort_name, email, email_normalized, phone, addresses, status, \
             identity_issuer, identity_subject, preferences, idempotency_key, create_time, update_time, erase_time, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(c.id)
        .bind(c.display_name.clone())
        .bind(crate::domain::sort_name(&c.display_name))
        .bind(c.email.clone())
        .bind(crate::domain::normalize_email(&c.email))
        .bind(c.phone.clone())
        .bind(Json(c.addresses.clone()))
        .bind(c.status.as_str())
        .bind(c.identity.as_ref().map(|i| i.issuer.clone()))
        .bind(c.identity.as_ref().map(|i| i.subject.clone()))
        .bind(Json(c.preferences.clone()))
        .bind(idempotency_key.map(str::to_owned))
        .bind(c.create_time)
        .bind(c.update_time)
        .bind(c.erase_time)
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
        let sql = format!("{CUSTOMER_COLUMNS} WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(customer).transpose()
    }

    async fn get_customer_by_identity(&self, issuer: &str, subject: &str) -> Result<Option<Customer>, ServiceError> {
        let sql = format!("{CUSTOMER_COLUMNS} WHERE identity_issuer = $1 AND identity_subject = $2");
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
        let mut tx = self.pool.begin().await?;
        let sql = format!("{CUSTOMER_COLUMNS} WHERE id = $1 FOR UPDATE");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
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
            "UPDATE customers SET display_name = $2, sort_name = $3, email = $4, email_normalized = $5, phone = $6, \
             addresses = $7, status = $8, preferences = $9, update_time = $10, version = $11 WHERE id = $1",
        )
        .bind(id)
        .bind(current.display_name.clone())
        .bind(crate::domain::sort_name(&current.display_name))
        .bind(current.email.clone())
        .bind(crate::domain::normalize_email(&current.email))
        .bind(current.phone.clone())
        .bind(Json(current.addresses.clone()))
        .bind(current.status.as_str())
        .bind(Json(current.preferences.clone()))
        .bind(current.update_time)
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
        let mut q = QueryBuilder::<Postgres>::new(format!("{CUSTOMER_COLUMNS} WHERE TRUE"));
        if let Some(query) = &filter.query {
            let pattern = super::like_pattern(query);
            q.push(" AND (sort_name LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\' OR email_normalized LIKE ");
            q.push_bind(pattern).push(" ESCAPE '\\')");
        }
        if let Some(status) = filter.status {
            q.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some((name, id)) = after {
            q.push(" AND (sort_name COLLATE \"C\", id) > (")
                .push_bind(name)
                .push(" COLLATE \"C\", ")
                .push_bind(id)
                .push(")");
        }
        q.push(" ORDER BY sort_name COLLATE \"C\", id LIMIT ")
            .push_bind(limit as i64);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(customer).collect()
    }

    async fn record_consent(&self, c: &Consent) -> Result<(), ServiceError> {
        sqlx::query(
            "INSERT INTO consents (id, customer_id, purpose, granted, policy_version, source, actor_kind, actor_id, actor_roles, record_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(c.id)
        .bind(c.customer_id)
        .bind(c.purpose.clone())
        .bind(c.granted)
        .bind(c.policy_version.clone())
        .bind(c.source.clone())
        .bind(c.recorded_by.kind as i32)
        .bind(c.recorded_by.id.clone())
        .bind(Json(c.recorded_by.roles.clone()))
        .bind(c.record_time)
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
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT id, customer_id, purpose, granted, policy_version, source, actor_kind, actor_id, actor_roles, record_time \
             FROM consents WHERE customer_id = ",
        );
        q.push_bind(customer_id);
        if let Some(purpose) = purpose {
            q.push(" AND purpose = ").push_bind(purpose.to_owned());
        }
        if let Some((micros, id)) = after {
            let time = DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| ServiceError::invalid("page_token", "is not valid"))?;
            q.push(" AND (record_time, id) < (")
                .push_bind(time)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        q.push(" ORDER BY record_time DESC, id DESC LIMIT ")
            .push_bind(limit as i64);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(consent).collect()
    }
}
