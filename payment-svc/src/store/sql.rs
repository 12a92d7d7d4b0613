//! The SQL both stores share. The statements are the same text on both backends (`$n`
//! placeholders numbered in order of appearance, which SQLite accepts too); what differs is
//! passed to [`sql_store!`]: the sqlx database type, how the transaction's connection is
//! reached, the row-lock suffix, and the `encode_roles`/`decode_roles` functions of the
//! invoking module (PostgreSQL `text[]`, SQLite a JSON array).

pub(super) const PAYMENT_COLUMNS: &str = "id, order_id, customer_id, amount_minor, currency, captured_minor, \
     refunded_minor, status, decline_reason, gateway_reference, create_time, update_time";
pub(super) const TRANSACTION_COLUMNS: &str = "id, payment_id, kind, amount_minor, status, gateway_reference, \
     failure_reason, idempotency_key, request_hash, capture, refund_id, create_time, update_time";
pub(super) const REFUND_COLUMNS: &str = "id, payment_id, amount_minor, reason, status, gateway_reference, \
     actor_kind, actor_id, actor_roles, create_time, update_time";

macro_rules! sql_store {
    ($store:ident, $db:ty, $variant:ident, $conn:ident, $lock:literal) => {
        mod rows {
            use ordermesh_platform::ServiceError;
            use ordermesh_platform::validate::Money;
            use sqlx::Row;

            use super::super::bad_column;
            use crate::domain::{
                Actor, Payment, PaymentStatus, Refund, RefundStatus, Transaction, TransactionKind, TransactionStatus,
            };

            type DbRow = <$db as sqlx::Database>::Row;

            pub fn payment(row: &DbRow) -> Result<Payment, ServiceError> {
                let status: String = row.try_get("status")?;
                Ok(Payment {
                    id: row.try_get("id")?,
                    order_id: row.try_get("order_id")?,
                    customer_id: row.try_get("customer_id")?,
                    amount: Money {
                        amount_minor: row.try_get("amount_minor")?,
                        currency_code: row.try_get("currency")?,
                    },
                    captured_minor: row.try_get("captured_minor")?,
                    refunded_minor: row.try_get("refunded_minor")?,
                    status: PaymentStatus::parse(&status).ok_or_else(|| bad_column("payment status", &status))?,
                    decline_reason: row.try_get("decline_reason")?,
                    gateway_reference: row.try_get("gateway_reference")?,
                    create_time: row.try_get("create_time")?,
                    update_time: row.try_get("update_time")?,
                })
            }

            pub fn transaction(row: &DbRow) -> Result<Transaction, ServiceError> {
                let kind: String = row.try_get("kind")?;
                let status: String = row.try_get("status")?;
                Ok(Transaction {
                    id: row.try_get("id")?,
                    payment_id: row.try_get("payment_id")?,
                    kind: TransactionKind::parse(&kind).ok_or_else(|| bad_column("transaction kind", &kind))?,
                    amount_minor: row.try_get("amount_minor")?,
                    status: TransactionStatus::parse(&status)
                        .ok_or_else(|| bad_column("transaction status", &status))?,
                    gateway_reference: row.try_get("gateway_reference")?,
                    failure_reason: row.try_get("failure_reason")?,
                    idempotency_key: row.try_get("idempotency_key")?,
                    request_hash: row.try_get("request_hash")?,
                    capture: row.try_get("capture")?,
                    refund_id: row.try_get("refund_id")?,
                    create_time: row.try_get("create_time")?,
                    update_time: row.try_get("update_time")?,
                })
            }

            pub fn refund(row: &DbRow) -> Result<Refund, ServiceError> {
                let status: String = row.try_get("status")?;
                Ok(Refund {
                    id: row.try_get("id")?,
                    payment_id: row.try_get("payment_id")?,
                    amount_minor: row.try_get("amount_minor")?,
                    reason: row.try_get("reason")?,
                    status: RefundStatus::parse(&status).ok_or_else(|| bad_column("refund status", &status))?,
                    gateway_reference: row.try_get("gateway_reference")?,
                    requested_by: Actor {
                        kind: row.try_get("actor_kind")?,
                        id: row.try_get("actor_id")?,
                        roles: super::decode_roles(row)?,
                    },
                    create_time: row.try_get("create_time")?,
                    update_time: row.try_get("update_time")?,
                })
            }
        }

        impl $store {
            fn pool(&self) -> &sqlx::Pool<$db> {
                match &self.db {
                    ordermesh_platform::db::Database::$variant(pool) => pool,
                    #[allow(unreachable_patterns)]
                    _ => unreachable!("the store is built for its own backend"),
                }
            }

            /// Transactions and refunds of `payments`, attached in one query each.
            async fn views(
                &self,
                payments: Vec<crate::domain::Payment>,
            ) -> Result<Vec<crate::domain::PaymentView>, ordermesh_platform::ServiceError> {
                use std::collections::HashMap;
                if payments.is_empty() {
                    return Ok(Vec::new());
                }
                let mut transactions: HashMap<uuid::Uuid, Vec<crate::domain::Transaction>> = HashMap::new();
                let mut refunds: HashMap<uuid::Uuid, Vec<crate::domain::Refund>> = HashMap::new();
                let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM transactions WHERE payment_id IN (",
                    super::sql::TRANSACTION_COLUMNS
                ));
                let mut list = q.separated(", ");
                for p in &payments {
                    list.push_bind(p.id);
                }
                q.push(") ORDER BY id");
                for row in q.build().fetch_all(self.pool()).await? {
                    let t = rows::transaction(&row)?;
                    transactions.entry(t.payment_id).or_default().push(t);
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM refunds WHERE payment_id IN (",
                    super::sql::REFUND_COLUMNS
                ));
                let mut list = q.separated(", ");
                for p in &payments {
                    list.push_bind(p.id);
                }
                q.push(") ORDER BY id");
                for row in q.build().fetch_all(self.pool()).await? {
                    let r = rows::refund(&row)?;
                    refunds.entry(r.payment_id).or_default().push(r);
                }
                Ok(payments
                    .into_iter()
                    .map(|payment| crate::domain::PaymentView {
                        transactions: transactions.remove(&payment.id).unwrap_or_default(),
                        refunds: refunds.remove(&payment.id).unwrap_or_default(),
                        payment,
                    })
                    .collect())
            }
        }

        #[async_trait::async_trait]
        impl super::PaymentStore for $store {
            fn database(&self) -> &ordermesh_platform::db::Database {
                &self.db
            }

            async fn get_payment(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<crate::domain::PaymentView>, ordermesh_platform::ServiceError> {
                let sql = format!(
                    "SELECT {} FROM payments WHERE id = $1",
                    super::sql::PAYMENT_COLUMNS
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(self.pool())
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let payment = rows::payment(&row)?;
                Ok(self.views(vec![payment]).await?.pop())
            }

            async fn list_payments(
                &self,
                filter: &crate::domain::PaymentFilter,
                after: Option<uuid::Uuid>,
                limit: usize,
            ) -> Result<Vec<crate::domain::PaymentView>, ordermesh_platform::ServiceError> {
                let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM payments WHERE 1 = 1",
                    super::sql::PAYMENT_COLUMNS
                ));
                if let Some(customer_id) = filter.customer_id {
                    q.push(" AND customer_id = ").push_bind(customer_id);
                }
                if let Some(order_id) = filter.order_id {
                    q.push(" AND order_id = ").push_bind(order_id);
                }
                if let Some(status) = filter.status {
                    q.push(" AND status = ").push_bind(status.as_str());
                }
                if let Some(after) = after {
                    q.push(" AND id < ").push_bind(after);
                }
                q.push(" ORDER BY id DESC LIMIT ").push_bind(limit as i64);
                let rows = q.build().fetch_all(self.pool()).await?;
                let payments = rows.iter().map(rows::payment).collect::<Result<Vec<_>, _>>()?;
                self.views(payments).await
            }

            async fn transaction_by_key(
                &self,
                tx: &mut ordermesh_platform::events::Tx,
                key: &str,
            ) -> Result<Option<crate::domain::Transaction>, ordermesh_platform::ServiceError> {
                let conn = tx.$conn().ok_or_else(super::wrong_backend)?;
                let sql = format!(
                    "SELECT {} FROM transactions WHERE idempotency_key = $1",
                    super::sql::TRANSACTION_COLUMNS
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(key.to_owned())
                    .fetch_optional(&mut *conn)
                    .await?;
                row.as_ref().map(rows::transaction).transpose()
            }

            async fn lock_transaction(
                &self,
                tx: &mut ordermesh_platform::events::Tx,
                id: uuid::Uuid,
            ) -> Result<Option<crate::domain::Transaction>, ordermesh_platform::ServiceError> {
                let conn = tx.$conn().ok_or_else(super::wrong_backend)?;
                let sql = format!(
                    "SELECT {} FROM transactions WHERE id = $1{}",
                    super::sql::TRANSACTION_COLUMNS,
                    $lock
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                row.as_ref().map(rows::transaction).transpose()
            }

            async fn lock_payment(
                &self,
                tx: &mut ordermesh_platform::events::Tx,
                id: uuid::Uuid,
            ) -> Result<Option<crate::domain::Payment>, ordermesh_platform::ServiceError> {
                let conn = tx.$conn().ok_or_else(super::wrong_backend)?;
                let sql = format!(
                    "SELECT {} FROM payments WHERE id = $1{}",
                    super::sql::PAYMENT_COLUMNS,
                    $lock
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                row.as_ref().map(rows::payment).transpose()
            }

            async fn active_payment_for_order(
                &self,
                tx: &mut ordermesh_platform::events::Tx,
                order_id: uuid::Uuid,
            ) -> Result<Option<crate::domain::Payment>, ordermesh_platform::ServiceError> {
                let conn = tx.$conn().ok_or_else(super::wrong_backend)?;
                let sql = format!(
                    "SELECT {} FROM payments WHERE order_id = $1 AND status NOT IN ('DECLINED', 'FAILED'){}",
                    super::sql::PAYMENT_COLUMNS,
                    $lock
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(order_id)
                    .fetch_optional(&mut *conn)
                    .await?;
                row.as_ref().map(rows::payment).transpose()
            }

            async fn transactions_of(
                &self,
                tx: &mut ordermesh_platform::events::Tx,
                payment_id: uuid::Uuid,
            ) -> Result<Vec<crate::domain::Transaction>, ordermesh_platform::ServiceError> {
                let conn = tx.$conn().ok_or_else(super::wrong_backend)?;
                let sql = format!(
                    "SELECT {} FROM transactions WHERE payment_id = $1 ORDER BY id",
                    super::sql::TRANSACTION_COLUMNS
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(payment_id)
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter().map(rows::transaction).collect()
            }

            async fn refund(
                &self,
                tx: &mut ordermesh_platform::events::Tx,
                id: uuid::Uuid,
            ) -> Result<Option<crate::domain::Refund>, ordermesh_platform::ServiceError> {
                let conn = tx.$conn().ok_or_else(super::wrong_backend)?;
                let sql = format!("SELECT {} FROM refunds WHERE id = $1", super::sql::REFUND_COLUMNS);
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                row.as_ref().map(rows::refund).transpose()
            }

            async fn insert_payment(
                &self,
                tx: &mut ordermesh_platform::events::Tx,
                p: &crate::domain::Payment,
            ) -> Result<(), ordermesh_platform::ServiceError> {
                let conn = tx.$conn().ok_or_else(super::wrong_backend)?;
                let sql = format!(
                    "INSERT INTO payments ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    super::sql::PAYMENT_COLUMNS
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(p.id)
                    .bind(p.order_id)
                    .bind(p.customer_id)
                    .bind(p.amount.amount_minor)
                    .bind(p.amount.currency_code.clone())
                    .bind(p.captured_minor)
                    .bind(p.refunded_minor)
                    .bind(p.status.as_str())
                    .bind(p.decline_reason.clone())
                    .bind(p.gateway_reference.clone())
                    .bind(p.create_time)
                    .bind(p.update_time)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| {
                        super::write_error(
                            e,
                            ordermesh_platform::ServiceError::AlreadyExists {
                                resource: "payment",
                                field: "order_id",
                            },
                        )
                    })?;
                Ok(())
            }

            async fn insert_transaction(
                &self,
                tx: &mut ordermesh_platform::events::Tx,
                t: &crate::domain::Transaction,
            ) -> Result<(), ordermesh_platform::ServiceError> {
                let conn = tx.$conn().ok_or_else(super::wrong_backend)?;
                let sql = format!(
                    "INSERT INTO transactions ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    super::sql::TRANSACTION_COLUMNS
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(t.id)
                    .bind(t.payment_id)
                    .bind(t.kind.as_str())
                    .bind(t.amount_minor)
                    .bind(t.status.as_str())
                    .bind(t.gateway_reference.clone())
                    .bind(t.failure_reason.clone())
                    .bind(t.idempotency_key.clone())
                    .bind(t.request_hash.clone())
                    .bind(t.capture)
                    .bind(t.refund_id)
                    .bind(t.create_time)
                    .bind(t.update_time)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| {
                        super::write_error(
                            e,
                            ordermesh_platform::ServiceError::AlreadyExists {
                                resource: "transaction",
                                field: "idempotency_key",
                            },
                        )
                    })?;
                Ok(())
            }

            async fn insert_refund(
                &self,
                tx: &mut ordermesh_platform::events::Tx,
                r: &crate::domain::Refund,
            ) -> Result<(), ordermesh_platform::ServiceError> {
                let conn = tx.$conn().ok_or_else(super::wrong_backend)?;
                let sql = format!(
                    "INSERT INTO refunds ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    super::sql::REFUND_COLUMNS
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(r.id)
                    .bind(r.payment_id)
                    .bind(r.amount_minor)
                    .bind(r.reason.clone())
                    .bind(r.status.as_str())
                    .bind(r.gateway_reference.clone())
                    .bind(r.requested_by.kind)
                    .bind(r.requested_by.id.clone())
                    .bind(encode_roles(&r.requested_by.roles))
                    .bind(r.create_time)
                    .bind(r.update_time)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            async fn update_payment(
                &self,
                tx: &mut ordermesh_platform::events::Tx,
                p: &crate::domain::Payment,
            ) -> Result<(), ordermesh_platform::ServiceError> {
                let conn = tx.$conn().ok_or_else(super::wrong_backend)?;
                sqlx::query(
                    "UPDATE payments SET captured_minor = $1, refunded_minor = $2, status = $3, \
                     decline_reason = $4, gateway_reference = $5, update_time = $6 WHERE id = $7",
                )
                .bind(p.captured_minor)
                .bind(p.refunded_minor)
                .bind(p.status.as_str())
                .bind(p.decline_reason.clone())
                .bind(p.gateway_reference.clone())
                .bind(p.update_time)
                .bind(p.id)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            async fn update_transaction(
                &self,
                tx: &mut ordermesh_platform::events::Tx,
                t: &crate::domain::Transaction,
            ) -> Result<(), ordermesh_platform::ServiceError> {
                let conn = tx.$conn().ok_or_else(super::wrong_backend)?;
                sqlx::query(
                    "UPDATE transactions SET status = $1, gateway_reference = $2, failure_reason = $3, \
                     update_time = $4 WHERE id = $5",
                )
                .bind(t.status.as_str())
                .bind(t.gateway_reference.clone())
                .bind(t.failure_reason.clone())
                .bind(t.update_time)
                .bind(t.id)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            async fn update_refund(
                &self,
                tx: &mut ordermesh_platform::events::Tx,
                r: &crate::domain::Refund,
            ) -> Result<(), ordermesh_platform::ServiceError> {
                let conn = tx.$conn().ok_or_else(super::wrong_backend)?;
                sqlx::query("UPDATE refunds SET status = $1, gateway_reference = $2, update_time = $3 WHERE id = $4")
                    .bind(r.status.as_str())
                    .bind(r.gateway_reference.clone())
                    .bind(r.update_time)
                    .bind(r.id)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }
        }
    };
}

pub(super) use sql_store;
