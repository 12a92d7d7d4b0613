//! Payments: the payment of an order, its refunds, and the bodies that authorise and refund.

use chrono::{DateTime, Utc};
use ordermesh_proto::payment;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{Money, non_empty, page, time};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Unspecified,
    Authorized,
    Captured,
    Declined,
    Failed,
    PartiallyRefunded,
    Refunded,
    Voided,
}

impl PaymentStatus {
    fn from_proto(value: i32) -> Self {
        use payment::PaymentStatus as P;
        match P::try_from(value).unwrap_or(P::Unspecified) {
            P::Unspecified => Self::Unspecified,
            P::Authorized => Self::Authorized,
            P::Captured => Self::Captured,
            P::Declined => Self::Declined,
            P::Failed => Self::Failed,
            P::PartiallyRefunded => Self::PartiallyRefunded,
            P::Refunded => Self::Refunded,
            P::Voided => Self::Voided,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub id: String,
    pub amount: Option<Money>,
    pub reason: String,
    /// `pending`, `succeeded`, `failed` or `unspecified`.
    pub status: String,
    pub created_at: Option<DateTime<Utc>>,
}

impl Refund {
    pub fn from_proto(r: payment::Refund) -> Self {
        use payment::RefundStatus as P;
        Self {
            id: r.id,
            amount: Money::from_proto(r.amount),
            reason: r.reason,
            status: match P::try_from(r.status).unwrap_or(P::Unspecified) {
                P::Unspecified => "unspecified",
                P::Pending => "pending",
                P::Succeeded => "succeeded",
                P::Failed => "failed",
            }
            .to_owned(),
            created_at: time(r.create_time),
        }
    }
}

/// A payment of an order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub id: String,
    pub order_id: String,
    pub customer_id: String,
    pub amount: Option<Money>,
    pub captured_amount: Option<Money>,
    pub refunded_amount: Option<Money>,
    pub status: PaymentStatus,
    pub decline_reason: Option<String>,
    pub refunds: Vec<Refund>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Payment {
    pub fn from_proto(p: payment::Payment) -> Self {
        Self {
            id: p.id,
            order_id: p.order_id,
            customer_id: p.customer_id,
            amount: Money::from_proto(p.amount),
            captured_amount: Money::from_proto(p.captured_amount),
            refunded_amount: Money::from_proto(p.refunded_amount),
            status: PaymentStatus::from_proto(p.status),
            decline_reason: non_empty(p.decline_reason),
            refunds: p.refunds.into_iter().map(Refund::from_proto).collect(),
            created_at: time(p.create_time),
            updated_at: time(p.update_time),
        }
    }
}

page!(PaymentPage, Payment);

/// Body of `POST /api/v1/payments`: authorise (and optionally capture) a payment for an order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePayment {
    #[schema(format = Uuid)]
    pub order_id: String,
    #[schema(format = Uuid)]
    pub customer_id: String,
    pub amount: Money,
    #[schema(min_length = 1, max_length = 256, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub payment_method_token: String,
    #[serde(default)]
    pub capture: bool,
}

/// Body of `POST /api/v1/payments/{id}/refunds`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRefund {
    /// Minor units of the payment's own currency (a refund cannot be in another); absent: the
    /// whole refundable amount.
    #[schema(minimum = 1, maximum = 9_007_199_254_740_991_i64, example = 500)]
    pub amount: Option<i64>,
    /// No personal data.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// Answer of a refund.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundResult {
    pub payment: Option<Payment>,
    pub refund: Option<Refund>,
}
