//! The order aggregate as stored and served.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{NewOrder, OrderStatus, PricedLine, PricingError, price_lines};

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

/// Where a new order comes from besides its request: the shipping address (encoded), the
/// correlation id of the flow, who placed it and when.
#[derive(Debug, Clone)]
pub struct Placement {
    pub shipping_address: Option<Vec<u8>>,
    pub correlation_id: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

impl Order {
    /// A new PENDING order of `request` at the prices of `lines`, its history starting with the
    /// placement. The lines must all be in one currency.
    pub fn pending(
        id: Uuid,
        request: NewOrder,
        lines: Vec<PricedLine>,
        placement: Placement,
    ) -> Result<Self, PricingError> {
        let (total_minor, currency) = price_lines(&lines)?;
        let Placement {
            shipping_address,
            correlation_id,
            actor,
            at,
        } = placement;
        Ok(Self {
            id,
            customer_id: request.customer_id,
            status: OrderStatus::Pending,
            items: lines,
            total_minor,
            currency,
            payment_method_token: request.payment_method_token,
            idempotency_key: request.idempotency_key,
            rejection_code: None,
            rejection_reason: None,
            cancellation_reason: None,
            payment_id: None,
            shipping_address,
            carrier: None,
            tracking_number: None,
            correlation_id,
            version: 1,
            created_at: at,
            updated_at: at,
            shipped_at: None,
            delivered_at: None,
            history: vec![HistoryEntry {
                seq: 1,
                from: None,
                to: OrderStatus::Pending,
                reason: None,
                actor,
                cause_event_id: None,
                changed_at: at,
            }],
        })
    }

    /// The order after a transition to `to` was stored: the status, `fields` where set, the new
    /// version and `entry` at the end of the history. (`shipped_at`/`delivered_at` are stamped by
    /// the store and appear when the order is read again.)
    pub fn record_transition(&mut self, to: OrderStatus, fields: TransitionFields, entry: HistoryEntry) {
        let TransitionFields {
            rejection_code,
            rejection_reason,
            cancellation_reason,
            payment_id,
            carrier,
            tracking_number,
        } = fields;
        self.status = to;
        self.version += 1;
        self.updated_at = entry.changed_at;
        self.rejection_code = rejection_code.or(self.rejection_code.take());
        self.rejection_reason = rejection_reason.or(self.rejection_reason.take());
        self.cancellation_reason = cancellation_reason.or(self.cancellation_reason.take());
        self.payment_id = payment_id.or(self.payment_id.take());
        self.carrier = carrier.or(self.carrier.take());
        self.tracking_number = tracking_number.or(self.tracking_number.take());
        self.history.push(entry);
    }

    /// The sequence number of the next history entry.
    pub fn next_history_seq(&self) -> i32 {
        self.history.iter().map(|h| h.seq).max().unwrap_or(0) + 1
    }
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
