//! Persistence of the GDPR rights: erasure requests with their confirmations, and export jobs.
//! Each write and the event it publishes commit together, as everywhere.

use chrono::{DateTime, TimeDelta, Utc};
use ordermesh_platform::db::columns::{Id, Time};
use ordermesh_platform::db::page::fetch_optional_in;
use ordermesh_platform::events::{OutgoingEvent, Tx};
use ordermesh_platform::{Actor, Origin, ServiceError, StoreError, StoreResult, convert, on_pool, on_tx};
use ordermesh_proto::common;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, FromRow};
use uuid::Uuid;

use super::{Store, locked_customer};
use crate::domain::{self, Customer, CustomerStatus, DataExport, Erasure, ExportState};
use crate::events;

#[derive(FromRow)]
struct ErasureRow {
    id: Id,
    customer_id: Id,
    reason: String,
    actor_kind: i32,
    actor_id: String,
    request_time: Time,
    complete_time: Option<Time>,
}

const SELECT_ERASURE: &str =
    "SELECT id, customer_id, reason, actor_kind, actor_id, request_time, complete_time FROM erasure_requests";

impl TryFrom<ErasureRow> for Erasure {
    type Error = StoreError;

    fn try_from(row: ErasureRow) -> StoreResult<Erasure> {
        Ok(Erasure {
            id: row.id.0,
            customer_id: row.customer_id.0,
            reason: row.reason,
            requested_by: Actor {
                kind: convert::actor_kind(row.actor_kind),
                id: row.actor_id,
                roles: Vec::new(),
            },
            request_time: row.request_time.0,
            confirmed: Vec::new(),
            complete_time: row.complete_time.map(|t| t.0),
        })
    }
}

#[derive(FromRow)]
struct ExportRow {
    id: Id,
    customer_id: Id,
    state: String,
    actor_kind: i32,
    actor_id: String,
    actor_roles: Json<Vec<String>>,
    correlation_id: String,
    create_time: Time,
    complete_time: Option<Time>,
    expire_time: Option<Time>,
    attempts: i32,
    document: Option<String>,
}

const EXPORT_COLUMNS: &str = "id, customer_id, state, actor_kind, actor_id, actor_roles, correlation_id, create_time, \
     complete_time, expire_time, attempts, document";

impl TryFrom<ExportRow> for DataExport {
    type Error = StoreError;

    fn try_from(row: ExportRow) -> StoreResult<DataExport> {
        Ok(DataExport {
            id: row.id.0,
            customer_id: row.customer_id.0,
            state: ExportState::parse(&row.state).ok_or_else(|| StoreError::corrupt("state", &row.state))?,
            requested_by: Actor {
                kind: convert::actor_kind(row.actor_kind),
                id: row.actor_id,
                roles: row.actor_roles.0,
            },
            correlation_id: row.correlation_id,
            create_time: row.create_time.0,
            complete_time: row.complete_time.map(|t| t.0),
            expire_time: row.expire_time.map(|t| t.0),
            attempts: row.attempts,
            document: row.document,
        })
    }
}

fn actor_kind(actor: &Actor) -> i32 {
    common::ActorKind::from(actor.kind) as i32
}

const TOUCH_ACTIVITY: &str = "UPDATE customers SET last_activity_time = $2 WHERE id = $1 AND last_activity_time < $3 AND status IN ('ACTIVE', 'SUSPENDED')";

/// What [`Store::erase_customer`] did.
#[derive(Debug)]
pub struct Erased {
    /// The customer after the request.
    pub customer: Customer,
    pub erasure: Erasure,
    /// False when the customer had been erased (or was being erased) before: nothing changed.
    pub now: bool,
}

/// How long a claimed export is left to the replica that claimed it before another may retry it.
const EXPORT_LEASE: TimeDelta = TimeDelta::minutes(2);

impl Store {
    /// Clears customer `id`'s personal data (the profile, every export bundle, the record of its
    /// sold orders) and records the erasure request with `ErasureRequested` in the outbox, in one
    /// transaction, if `allowed(current)` passes.
    /// A customer already erased (or being erased) is answered with its existing request and
    /// nothing changes. NOT_FOUND for an unknown or not allowed customer.
    pub async fn erase_customer(
        &self,
        id: Uuid,
        reason: String,
        allowed: &(dyn for<'c> Fn(&'c Customer) -> bool + Send + Sync),
        origin: &Origin,
    ) -> Result<Erased, ServiceError> {
        let mut tx = Tx::begin(&self.0).await?;
        let mut customer = match locked_customer(&mut tx, id).await? {
            Some(c) if allowed(&c) => c,
            _ => return Err(ServiceError::not_found("customer", id)),
        };
        if customer.status.is_erased() {
            drop(tx);
            let erasure = self
                .erasure_of(id)
                .await?
                .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("erased customer without erasure request")))?;
            return Ok(Erased {
                customer,
                erasure,
                now: false,
            });
        }
        let now = domain::now();
        customer.erase(now);
        let erasure = Erasure::new(id, reason, origin.actor.clone(), now);
        let c = &customer;
        on_tx!(tx, |conn| {
            sqlx::query(
                "UPDATE customers SET display_name = '', sort_name = '', email = '', email_normalized = '', \
                 phone = '', addresses = $2, status = $3, identity_issuer = NULL, identity_subject = NULL, \
                 preferences = $4, idempotency_key = NULL, update_time = $5, erase_time = $6, version = $7 \
                 WHERE id = $1",
            )
            .bind(Id(id))
            .bind(Json(&c.addresses))
            .bind(c.status.as_str())
            .bind(Json(&c.preferences))
            .bind(Time(c.update_time))
            .bind(c.erase_time.map(Time))
            .bind(c.version)
            .execute(&mut *conn)
            .await?;
            // Export bundles are copies of the personal data; one being built is dropped too (its
            // completion finds no pending job).
            sqlx::query("DELETE FROM data_exports WHERE customer_id = $1")
                .bind(Id(id))
                .execute(&mut *conn)
                .await?;
            // The record of the customer's sold orders (the segments): no personal data, but
            // nothing is left to segment either. Order events still to come find the customer
            // erased and record nothing (see `store::segments`).
            sqlx::query("DELETE FROM order_history WHERE customer_id = $1")
                .bind(Id(id))
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM customer_sales WHERE customer_id = $1")
                .bind(Id(id))
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT INTO erasure_requests (id, customer_id, reason, actor_kind, actor_id, request_time) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(Id(erasure.id))
            .bind(Id(id))
            .bind(&erasure.reason)
            .bind(actor_kind(&erasure.requested_by))
            .bind(&erasure.requested_by.id)
            .bind(Time(erasure.request_time))
            .execute(&mut *conn)
            .await
            .map(drop)
        })?;
        tx.enqueue(&events::erasure_requested(&erasure, &origin.correlation_id))
            .await?;
        let db = self.0.clone();
        tx.after_commit(move || {
            tokio::spawn(async move { db.purge_freed().await });
        });
        tx.commit().await?;
        Ok(Erased {
            customer,
            erasure,
            now: true,
        })
    }

    /// Records activity of customer `id` at `at` (a sign-in), at most once a day: nothing changes
    /// while the last activity is less than [`domain::ACTIVITY_GRANULARITY`] old.
    pub async fn touch_activity(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()> {
        on_pool!(&self.0, |pool| {
            sqlx::query(TOUCH_ACTIVITY)
                .bind(Id(id))
                .bind(Time(at))
                .bind(Time(at - domain::ACTIVITY_GRANULARITY))
                .execute(pool)
                .await
                .map(drop)
        })?;
        Ok(())
    }

    /// [`Store::touch_activity`] inside `tx` (an event's transaction).
    pub async fn touch_activity_in(&self, tx: &mut Tx, id: Uuid, at: DateTime<Utc>) -> StoreResult<()> {
        on_tx!(tx, |conn| {
            sqlx::query(TOUCH_ACTIVITY)
                .bind(Id(id))
                .bind(Time(at))
                .bind(Time(at - domain::ACTIVITY_GRANULARITY))
                .execute(&mut *conn)
                .await
                .map(drop)
        })?;
        Ok(())
    }

    /// Up to `limit` active or suspended customers whose last activity was before `before`.
    pub async fn inactive_since(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<Vec<Uuid>> {
        let ids: Vec<Id> = on_pool!(&self.0, |pool| {
            sqlx::query_scalar(
                "SELECT id FROM customers WHERE status IN ('ACTIVE', 'SUSPENDED') AND last_activity_time < $1 \
                 ORDER BY last_activity_time LIMIT $2",
            )
            .bind(Time(before))
            .bind(limit)
            .fetch_all(pool)
            .await
        })?;
        Ok(ids.into_iter().map(|id| id.0).collect())
    }

    /// The erasure request of customer `customer_id`, with its confirmations.
    pub async fn erasure_of(&self, customer_id: Uuid) -> StoreResult<Option<Erasure>> {
        let sql = format!("{SELECT_ERASURE} WHERE customer_id = $1");
        let row: Option<ErasureRow> = on_pool!(&self.0, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(Id(customer_id))
                .fetch_optional(pool)
                .await
        })?;
        let Some(mut erasure) = row.map(Erasure::try_from).transpose()? else {
            return Ok(None);
        };
        erasure.confirmed = on_pool!(&self.0, |pool| {
            sqlx::query_scalar("SELECT service FROM erasure_confirmations WHERE erasure_id = $1 ORDER BY service")
                .bind(Id(erasure.id))
                .fetch_all(pool)
                .await
        })?;
        Ok(Some(erasure))
    }

    /// Records in `tx` that `service` erased its copy for erasure `erasure_id` (repeats change
    /// nothing). When every participant in `participants` has confirmed, the customer becomes
    /// ERASED and `CustomerErased` is enqueued. `None` for an unknown erasure request.
    pub async fn confirm_erasure(
        &self,
        tx: &mut Tx,
        erasure_id: Uuid,
        service: &str,
        participants: &[&str],
        correlation_id: &str,
    ) -> StoreResult<Option<Erasure>> {
        let sql = format!("{SELECT_ERASURE} WHERE id = $1");
        let Some(mut erasure) = fetch_optional_in::<ErasureRow, Erasure, _>(tx, sql, Id(erasure_id)).await? else {
            return Ok(None);
        };
        let now = domain::now();
        erasure.confirmed = on_tx!(tx, |conn| {
            sqlx::query(
                "INSERT INTO erasure_confirmations (erasure_id, service, confirm_time) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(Id(erasure_id))
            .bind(service)
            .bind(Time(now))
            .execute(&mut *conn)
            .await?;
            sqlx::query_scalar("SELECT service FROM erasure_confirmations WHERE erasure_id = $1 ORDER BY service")
                .bind(Id(erasure_id))
                .fetch_all(&mut *conn)
                .await?
        });
        if erasure.complete_time.is_some() || !erasure.pending(participants).is_empty() {
            return Ok(Some(erasure));
        }
        erasure.complete_time = Some(now);
        on_tx!(tx, |conn| {
            sqlx::query("UPDATE erasure_requests SET complete_time = $2 WHERE id = $1")
                .bind(Id(erasure_id))
                .bind(Time(now))
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "UPDATE customers SET status = $2, update_time = $3, version = version + 1 \
                 WHERE id = $1 AND status = $4",
            )
            .bind(Id(erasure.customer_id))
            .bind(CustomerStatus::Erased.as_str())
            .bind(Time(now))
            .bind(CustomerStatus::Erasing.as_str())
            .execute(&mut *conn)
            .await
            .map(drop)
        })?;
        tx.enqueue(&events::customer_erased(&erasure, correlation_id)).await?;
        Ok(Some(erasure))
    }

    /// Stores a new export job, or returns the customer's pending one (at most one pends per
    /// customer). NOT_FOUND if the customer does not exist.
    pub async fn request_export(&self, export: &DataExport) -> Result<DataExport, ServiceError> {
        let e = export;
        let inserted = on_pool!(&self.0, |pool| {
            sqlx::query(
                "INSERT INTO data_exports (id, customer_id, state, actor_kind, actor_id, actor_roles, correlation_id, \
                 create_time, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .bind(Id(e.id))
            .bind(Id(e.customer_id))
            .bind(e.state.as_str())
            .bind(actor_kind(&e.requested_by))
            .bind(&e.requested_by.id)
            .bind(Json(&e.requested_by.roles))
            .bind(&e.correlation_id)
            .bind(Time(e.create_time))
            .execute(pool)
            .await
            .map(drop)
        });
        match inserted {
            Ok(()) => Ok(export.clone()),
            Err(error) if is_unique_violation(&error) => {
                let sql =
                    format!("SELECT {EXPORT_COLUMNS} FROM data_exports WHERE customer_id = $1 AND state = 'PENDING'");
                self.fetch_export(sql, e.customer_id)
                    .await?
                    .ok_or_else(|| ServiceError::Aborted("the pending export just finished; ask again".into()))
            }
            Err(sqlx::Error::Database(db)) if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation => {
                Err(ServiceError::not_found("customer", e.customer_id))
            }
            Err(error) => Err(StoreError::from(error).into()),
        }
    }

    /// Export `id`, unless it has expired.
    pub async fn get_export(&self, id: Uuid) -> StoreResult<Option<DataExport>> {
        let sql = format!("SELECT {EXPORT_COLUMNS} FROM data_exports WHERE id = $1");
        let export = self.fetch_export(sql, id).await?;
        let now = domain::now();
        Ok(export.filter(|e| e.expire_time.is_none_or(|at| at > now)))
    }

    async fn fetch_export(&self, sql: String, key: Uuid) -> StoreResult<Option<DataExport>> {
        let row: Option<ExportRow> = on_pool!(&self.0, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(Id(key))
                .fetch_optional(pool)
                .await
        })?;
        row.map(DataExport::try_from).transpose()
    }

    /// Claims up to `limit` pending exports that are due at `now`: each is leased to the caller
    /// for [`EXPORT_LEASE`], so replicas running the exporter side by side do not build the
    /// same bundle at once.
    pub async fn claim_due_exports(&self, now: DateTime<Utc>, limit: i64) -> StoreResult<Vec<DataExport>> {
        // PostgreSQL skips rows another replica is claiming; SQLite has one writer at a time.
        let skip_locked = if self.0.is_postgres() {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE data_exports SET next_attempt_at = $2 WHERE id IN (SELECT id FROM data_exports \
             WHERE state = 'PENDING' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $3{skip_locked}) \
             RETURNING {EXPORT_COLUMNS}"
        );
        let mut tx = Tx::begin(&self.0).await?;
        let rows: Vec<ExportRow> = on_tx!(tx, |conn| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(Time(now))
                .bind(Time(now + EXPORT_LEASE))
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
        });
        tx.commit().await?;
        rows.into_iter().map(DataExport::try_from).collect()
    }

    /// Stores the bundle of a pending export (READY until `expire_time`) with `event`
    /// (`CustomerDataExported`) in one transaction. False if it was no longer pending.
    pub async fn complete_export(&self, export: &DataExport, event: &OutgoingEvent) -> StoreResult<bool> {
        let mut tx = Tx::begin(&self.0).await?;
        let updated = on_tx!(tx, |conn| {
            sqlx::query(
                "UPDATE data_exports SET state = 'READY', complete_time = $2, expire_time = $3, document = $4 \
                 WHERE id = $1 AND state = 'PENDING'",
            )
            .bind(Id(export.id))
            .bind(export.complete_time.map(Time))
            .bind(export.expire_time.map(Time))
            .bind(&export.document)
            .execute(&mut *conn)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Ok(false);
        }
        tx.enqueue(event).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records a failed attempt of a pending export and when to try again.
    pub async fn retry_export_later(&self, id: Uuid, attempts: i32, at: DateTime<Utc>) -> StoreResult<()> {
        on_pool!(&self.0, |pool| {
            sqlx::query(
                "UPDATE data_exports SET attempts = $2, next_attempt_at = $3 WHERE id = $1 AND state = 'PENDING'",
            )
            .bind(Id(id))
            .bind(attempts)
            .bind(Time(at))
            .execute(pool)
            .await
            .map(drop)
        })?;
        Ok(())
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}
