//! Orders: the order, its lines, shipment and history, and the bodies that place and ship one.

use chrono::{DateTime, Utc};
use ordermesh_proto::order;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{Actor, Address, Money, non_empty, page, time};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Unspecified,
    Pending,
    Reserved,
    Confirmed,
    Shipped,
    Delivered,
    Rejected,
    Cancelled,
}

impl OrderStatus {
    pub fn from_proto(value: i32) -> Self {
        use order::OrderStatus as P;
        match P::try_from(value).unwrap_or(P::Unspecified) {
            P::Unspecified => Self::Unspecified,
            P::Pending => Self::Pending,
            P::Reserved => Self::Reserved,
            P::Confirmed => Self::Confirmed,
            P::Shipped => Self::Shipped,
            P::Delivered => Self::Delivered,
            P::Rejected => Self::Rejected,
            P::Cancelled => Self::Cancelled,
        }
    }

    pub fn to_proto(self) -> order::OrderStatus {
        use order::OrderStatus as P;
        match self {
            Self::Unspecified => P::Unspecified,
            Self::Pending => P::Pending,
            Self::Reserved => P::Reserved,
            Self::Confirmed => P::Confirmed,
            Self::Shipped => P::Shipped,
            Self::Delivered => P::Delivered,
            Self::Rejected => P::Rejected,
            Self::Cancelled => P::Cancelled,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub unit_price: Option<Money>,
    pub quantity: i32,
    pub line_total: Option<Money>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Shipment {
    pub carrier: String,
    pub tracking_number: String,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    pub from_status: OrderStatus,
    pub to_status: OrderStatus,
    pub reason: String,
    pub actor: Option<Actor>,
    pub changed_at: Option<DateTime<Utc>>,
}

/// An order (the saga is asynchronous: a new order is `pending`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub items: Vec<OrderItem>,
    pub total: Option<Money>,
    pub status: OrderStatus,
    /// Why it was rejected (`out_of_stock`, `payment_declined`, `payment_failed`, `product_unavailable`).
    pub rejection_code: Option<String>,
    pub rejection_reason: Option<String>,
    pub cancellation_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    pub shipping_address: Option<Address>,
    pub shipment: Option<Shipment>,
    pub correlation_id: String,
    /// Status history, oldest first (empty in lists).
    pub history: Vec<StatusChange>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// The REST name of a rejection code; `None` for none.
pub fn rejection_code(code: i32) -> Option<&'static str> {
    match order::RejectionCode::try_from(code).unwrap_or_default() {
        order::RejectionCode::Unspecified => None,
        order::RejectionCode::OutOfStock => Some("out_of_stock"),
        order::RejectionCode::PaymentDeclined => Some("payment_declined"),
        order::RejectionCode::PaymentFailed => Some("payment_failed"),
        order::RejectionCode::ProductUnavailable => Some("product_unavailable"),
    }
}

impl Order {
    pub fn from_proto(o: order::Order) -> Self {
        let rejection_code = rejection_code(o.rejection_code);
        Self {
            id: o.id,
            customer_id: o.customer_id,
            items: o
                .items
                .into_iter()
                .map(|i| OrderItem {
                    product_id: i.product_id,
                    sku: i.sku,
                    name: i.name,
                    unit_price: Money::from_proto(i.unit_price),
                    quantity: i.quantity,
                    line_total: Money::from_proto(i.line_total),
                })
                .collect(),
            total: Money::from_proto(o.total),
            status: OrderStatus::from_proto(o.status),
            rejection_code: rejection_code.map(str::to_owned),
            rejection_reason: non_empty(o.rejection_reason),
            cancellation_reason: non_empty(o.cancellation_reason),
            payment_id: non_empty(o.payment_id),
            shipping_address: o.shipping_address.map(Address::from_proto),
            shipment: o.shipment.map(|s| Shipment {
                carrier: s.carrier,
                tracking_number: s.tracking_number,
                shipped_at: time(s.ship_time),
                delivered_at: time(s.deliver_time),
            }),
            correlation_id: o.correlation_id,
            history: o
                .history
                .into_iter()
                .map(|h| StatusChange {
                    from_status: OrderStatus::from_proto(h.from_status),
                    to_status: OrderStatus::from_proto(h.to_status),
                    reason: h.reason,
                    actor: Actor::from_proto(h.actor),
                    changed_at: time(h.change_time),
                })
                .collect(),
            created_at: time(o.create_time),
            updated_at: time(o.update_time),
        }
    }
}

/// One line of a new order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewOrderItem {
    #[schema(format = Uuid)]
    pub product_id: String,
    /// 1-1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i32,
}

/// Body of `POST /api/v1/orders`. The customer is the caller's own; prices come from the catalogue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOrder {
    /// Lines naming the same product become one line of the order, the quantities added up.
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<NewOrderItem>,
    pub shipping_address: Address,
    /// Payment method token from the payment provider's tokenisation (e.g. `tok_approved` in the sandbox).
    /// Not blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x1F\x7F-\x9F]*$",
        example = "tok_approved"
    )]
    pub payment_method_token: String,
}

/// Body of `PUT /api/v1/orders/{id}/status`: `shipped` with the carrier and tracking number,
/// or `delivered`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum UpdateOrderStatus {
    Shipped {
        #[schema(min_length = 1, max_length = 64, pattern = "\\S", example = "DHL")]
        carrier: String,
        #[serde(rename = "trackingNumber")]
        #[schema(min_length = 1, max_length = 128, pattern = "\\S", example = "JJD000390007827")]
        tracking_number: String,
        /// Note for the history; no personal data.
        #[serde(default)]
        #[schema(max_length = 500)]
        note: String,
    },
    Delivered {
        /// Note for the history; no personal data.
        #[serde(default)]
        #[schema(max_length = 500)]
        note: String,
    },
}

page!(OrderPage, Order);
