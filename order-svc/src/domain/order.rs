//! The order aggregate as stored and served.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{OrderStatus, PricedLine};

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    pub items: Vec<PricedLine>,
    pub total_minor: i64,
    pub currency: String,
    pub payment_method_token: String,
    pub idempotency_key: Option<String>,
    pub rejection_code: Option<String>,
    pub rejection_reason: Option<String>,
    pub cancellation_reason: Option<String>,
    pub payment_id: Option<String>,
    /// Encoded `ordermesh.common.v1.Address`.
    pub shipping_address: Option<Vec<u8>>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub correlation_id: String,
    /// Bumped by every change; transitions are compare-and-set on it.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub seq: i32,
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    pub reason: Option<String>,
    /// `employee:<sub>`, `client:<sub>`, `service:<name>` or `system`; never a name or e-mail.
    pub actor: String,
    pub cause_event_id: Option<String>,
    pub changed_at: DateTime<Utc>,
}

/// Fields a transition may set besides the status.
#[derive(Debug, Clone, Default)]
pub struct TransitionFields {
    pub rejection_code: Option<String>,
    pub rejection_reason: Option<String>,
    pub cancellation_reason: Option<String>,
    pub payment_id: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
}

/// Filters of ListOrders.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OrderFilter {
    pub customer_id: Option<Uuid>,
    pub statuses: Vec<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}
