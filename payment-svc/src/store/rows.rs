//! The rows of `payments`, `transactions` and `refunds` as either backend returns them, and the
//! one conversion of each to its domain type.

use chrono::{DateTime, Utc};
use ordermesh_platform::validate::Money;
use ordermesh_platform::{Actor, StoreError, StoreResult};
use ordermesh_proto::common;
use uuid::Uuid;

use crate::domain::{Payment, PaymentStatus, Refund, RefundStatus, Transaction, TransactionKind, TransactionStatus};

pub(super) const PAYMENT_COLUMNS: &str = "id, order_id, customer_id, amount_minor, currency, captured_minor, \
     refunded_minor, status, decline_reason, gateway_reference, create_time, update_time";

pub(super) const TRANSACTION_COLUMNS: &str = "id, payment_id, kind, amount_minor, status, gateway_reference, \
     failure_reason, idempotency_key, request_hash, capture, refund_id, create_time, update_time";

/// The columns of `refunds` but `actor_roles`, whose encoding differs (see `Dialect`).
pub(super) const REFUND_COLUMNS: &str =
    "id, payment_id, amount_minor, reason, status, gateway_reference, actor_kind, actor_id";

#[derive(sqlx::FromRow)]
pub(super) struct PaymentRow {
    id: Uuid,
    order_id: Uuid,
    customer_id: Uuid,
    amount_minor: i64,
    currency: String,
    captured_minor: i64,
    refunded_minor: i64,
    status: String,
    decline_reason: String,
    gateway_reference: String,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
pub(super) struct TransactionRow {
    id: Uuid,
    payment_id: Uuid,
    kind: String,
    amount_minor: i64,
    status: String,
    gateway_reference: String,
    failure_reason: String,
    idempotency_key: Option<String>,
    request_hash: String,
    capture: bool,
    refund_id: Option<Uuid>,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
pub(super) struct RefundRow {
    id: Uuid,
    payment_id: Uuid,
    amount_minor: i64,
    reason: String,
    status: String,
    gateway_reference: String,
    actor_kind: i32,
    actor_id: String,
    /// Read as a JSON array on both backends.
    #[sqlx(json)]
    actor_roles: Vec<String>,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

fn parse<T>(column: &'static str, value: String, parse: impl Fn(&str) -> Option<T>) -> StoreResult<T> {
    parse(&value).ok_or_else(|| StoreError::corrupt(column, value))
}

impl TryFrom<PaymentRow> for Payment {
    type Error = StoreError;

    fn try_from(row: PaymentRow) -> StoreResult<Self> {
        Ok(Self {
            id: row.id,
            order_id: row.order_id,
            customer_id: row.customer_id,
            amount: Money {
                amount_minor: row.amount_minor,
                currency_code: row.currency,
            },
            captured_minor: row.captured_minor,
            refunded_minor: row.refunded_minor,
            status: parse("payments.status", row.status, PaymentStatus::parse)?,
            decline_reason: row.decline_reason,
            gateway_reference: row.gateway_reference,
            create_time: row.create_time,
            update_time: row.update_time,
        })
    }
}

impl TryFrom<TransactionRow> for Transaction {
    type Error = StoreError;

    fn try_from(row: TransactionRow) -> StoreResult<Self> {
        Ok(Self {
            id: row.id,
            payment_id: row.payment_id,
            kind: parse("transactions.kind", row.kind, TransactionKind::parse)?,
            amount_minor: row.amount_minor,
            status: parse("transactions.status", row.status, TransactionStatus::parse)?,
            gateway_reference: row.gateway_reference,
            failure_reason: row.failure_reason,
            idempotency_key: row.idempotency_key,
            request_hash: row.request_hash,
            capture: row.capture,
            refund_id: row.refund_id,
            create_time: row.create_time,
            update_time: row.update_time,
        })
    }
}

impl TryFrom<RefundRow> for Refund {
    type Error = StoreError;

    fn try_from(row: RefundRow) -> StoreResult<Self> {
        let kind = common::ActorKind::try_from(row.actor_kind)
            .map_err(|_| StoreError::corrupt("refunds.actor_kind", row.actor_kind))?;
        Ok(Self {
            id: row.id,
            payment_id: row.payment_id,
            amount_minor: row.amount_minor,
            reason: row.reason,
            status: parse("refunds.status", row.status, RefundStatus::parse)?,
            gateway_reference: row.gateway_reference,
            requested_by: Actor {
                kind: kind.into(),
                id: row.actor_id,
                roles: row.actor_roles,
            },
            create_time: row.create_time,
            update_time: row.update_time,
        })
    }
}

/// `refunds.actor_kind` holds the number of the API's `ActorKind` (as it has since the first
/// migration), not the platform's name of the kind.
pub(super) fn actor_kind_column(actor: &Actor) -> i32 {
    common::ActorKind::from(actor.kind) as i32
}
