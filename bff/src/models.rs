//! The JSON shapes of the REST API (camelCase, ids as strings, money as `{amount, currency}`
//! in minor units, times as RFC 3339) and their conversions from the service contracts.
//! Request bodies reject unknown fields.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ordermesh_proto::{audit, common, customer, notification, order, payment, product};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::{FieldError, Problem};

pub fn time(ts: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    ts.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.clamp(0, 999_999_999) as u32))
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// An amount of money in minor units of a currency (EUR 12.34 is `{"amount": 1234, "currency": "EUR"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Minor units (cents).
    pub amount: i64,
    /// ISO-4217 code, e.g. `EUR`.
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
}

impl Money {
    pub fn from_proto(m: Option<common::Money>) -> Option<Self> {
        m.map(|m| Self {
            amount: m.amount_minor,
            currency: m.currency_code,
        })
    }

    pub fn to_proto(&self) -> common::Money {
        common::Money {
            amount_minor: self.amount,
            currency_code: self.currency.clone(),
        }
    }
}

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Address {
    #[serde(default)]
    #[schema(max_length = 64)]
    pub label: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub recipient_name: String,
    #[schema(min_length = 1, max_length = 200)]
    pub line1: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub line2: String,
    #[schema(min_length = 1, max_length = 100)]
    pub city: String,
    #[serde(default)]
    #[schema(max_length = 100)]
    pub region: String,
    #[serde(default)]
    #[schema(max_length = 20)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    #[schema(pattern = "^[A-Z]{2}$", example = "DE")]
    pub country_code: String,
}

impl Address {
    pub fn from_proto(a: common::Address) -> Self {
        Self {
            label: a.label,
            recipient_name: a.recipient_name,
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            region: a.region,
            postal_code: a.postal_code,
            country_code: a.country_code,
        }
    }

    pub fn to_proto(&self) -> common::Address {
        common::Address {
            label: self.label.clone(),
            recipient_name: self.recipient_name.clone(),
            line1: self.line1.clone(),
            line2: self.line2.clone(),
            city: self.city.clone(),
            region: self.region.clone(),
            postal_code: self.postal_code.clone(),
            country_code: self.country_code.clone(),
        }
    }
}

/// Who performed an action.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// `customer`, `employee`, `service`, `system` or `unspecified`.
    pub kind: String,
    pub id: String,
    pub roles: Vec<String>,
}

impl Actor {
    pub fn from_proto(a: Option<common::Actor>) -> Option<Self> {
        a.map(|a| Self {
            kind: match common::ActorKind::try_from(a.kind).unwrap_or(common::ActorKind::Unspecified) {
                common::ActorKind::Unspecified => "unspecified",
                common::ActorKind::Customer => "customer",
                common::ActorKind::Employee => "employee",
                common::ActorKind::Service => "service",
                common::ActorKind::System => "system",
            }
            .to_owned(),
            id: a.id,
            roles: a.roles,
        })
    }
}

// ---------------------------------------------------------------- orders

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
    pub payment_id: Option<String>,
    pub shipping_address: Option<Address>,
    pub shipment: Option<Shipment>,
    pub correlation_id: String,
    /// Status history, oldest first (empty in lists).
    pub history: Vec<StatusChange>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Order {
    pub fn from_proto(o: order::Order) -> Self {
        let rejection_code = match order::RejectionCode::try_from(o.rejection_code).unwrap_or_default() {
            order::RejectionCode::Unspecified => None,
            order::RejectionCode::OutOfStock => Some("out_of_stock"),
            order::RejectionCode::PaymentDeclined => Some("payment_declined"),
            order::RejectionCode::PaymentFailed => Some("payment_failed"),
            order::RejectionCode::ProductUnavailable => Some("product_unavailable"),
        };
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
    /// 1-999.
    #[schema(minimum = 1, maximum = 999)]
    pub quantity: i32,
}

/// Body of `POST /api/v1/orders`. The customer is the caller's own; prices come from the catalogue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOrder {
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<NewOrderItem>,
    pub shipping_address: Address,
    /// Payment method token from the payment provider's tokenisation (e.g. `tok_approved` in the sandbox).
    #[schema(min_length = 1, max_length = 256, example = "tok_approved")]
    pub payment_method_token: String,
}

/// Target of `PUT /api/v1/orders/{id}/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatus {
    Shipped,
    Delivered,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateOrderStatus {
    pub status: ShipmentStatus,
    /// Required for `shipped`.
    #[serde(default)]
    pub carrier: String,
    /// Required for `shipped`.
    #[serde(default)]
    pub tracking_number: String,
    /// Note for the history; no personal data.
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPage {
    pub items: Vec<Order>,
    pub next_page_token: Option<String>,
}

// ---------------------------------------------------------------- products

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category_id: String,
    pub price: Option<Money>,
    pub active: bool,
    pub attributes: BTreeMap<String, String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub version: i64,
}

impl Product {
    pub fn from_proto(p: product::Product) -> Self {
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            description: p.description,
            category_id: p.category_id,
            price: Money::from_proto(p.price),
            active: p.active,
            attributes: p.attributes.into_iter().collect(),
            created_at: time(p.create_time),
            updated_at: time(p.update_time),
            version: p.version,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductPage {
    pub items: Vec<Product>,
    pub next_page_token: Option<String>,
}

/// Body of `POST /api/v1/products`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProduct {
    #[schema(min_length = 1, max_length = 64)]
    pub sku: String,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[schema(format = Uuid)]
    pub category_id: String,
    pub price: Money,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// Body of `PUT /api/v1/products/{id}`: the fields present are changed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateProduct {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category_id: Option<String>,
    pub price: Option<Money>,
    pub active: Option<bool>,
    pub attributes: Option<BTreeMap<String, String>>,
    /// Succeeds only if the product is still at this version (409 otherwise).
    pub expected_version: Option<i64>,
}

// ---------------------------------------------------------------- customers

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CustomerStatus {
    Unspecified,
    Active,
    Suspended,
    Erased,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContactChannel {
    Unspecified,
    Email,
    Sms,
    Phone,
    InApp,
}

impl ContactChannel {
    fn from_proto(value: i32) -> Self {
        use customer::ContactChannel as P;
        match P::try_from(value).unwrap_or(P::Unspecified) {
            P::Unspecified => Self::Unspecified,
            P::Email => Self::Email,
            P::Sms => Self::Sms,
            P::Phone => Self::Phone,
            P::InApp => Self::InApp,
        }
    }

    fn to_proto(self) -> customer::ContactChannel {
        use customer::ContactChannel as P;
        match self {
            Self::Unspecified => P::Unspecified,
            Self::Email => P::Email,
            Self::Sms => P::Sms,
            Self::Phone => P::Phone,
            Self::InApp => P::InApp,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Preferences {
    /// BCP-47, e.g. `de-AT`.
    #[serde(default)]
    pub language_code: String,
    /// ISO-4217.
    #[serde(default)]
    pub currency_code: String,
    /// IANA zone, e.g. `Europe/Berlin`.
    #[serde(default)]
    pub time_zone: String,
    #[serde(default = "unspecified_channel")]
    pub preferred_contact_channel: ContactChannel,
}

fn unspecified_channel() -> ContactChannel {
    ContactChannel::Unspecified
}

impl Preferences {
    fn from_proto(p: customer::CustomerPreferences) -> Self {
        Self {
            language_code: p.language_code,
            currency_code: p.currency_code,
            time_zone: p.time_zone,
            preferred_contact_channel: ContactChannel::from_proto(p.preferred_contact_channel),
        }
    }

    pub fn to_proto(&self) -> customer::CustomerPreferences {
        customer::CustomerPreferences {
            language_code: self.language_code.clone(),
            currency_code: self.currency_code.clone(),
            time_zone: self.time_zone.clone(),
            preferred_contact_channel: self.preferred_contact_channel.to_proto() as i32,
        }
    }
}

/// A customer profile.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub id: String,
    pub display_name: String,
    pub email: String,
    pub phone: String,
    pub addresses: Vec<Address>,
    pub status: CustomerStatus,
    pub preferences: Option<Preferences>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub version: i64,
}

impl Customer {
    pub fn from_proto(c: customer::Customer) -> Self {
        use customer::CustomerStatus as P;
        Self {
            id: c.id,
            display_name: c.display_name,
            email: c.email,
            phone: c.phone,
            addresses: c.addresses.into_iter().map(Address::from_proto).collect(),
            status: match P::try_from(c.status).unwrap_or(P::Unspecified) {
                P::Unspecified => CustomerStatus::Unspecified,
                P::Active => CustomerStatus::Active,
                P::Suspended => CustomerStatus::Suspended,
                P::Erased => CustomerStatus::Erased,
            },
            preferences: c.preferences.map(Preferences::from_proto),
            created_at: time(c.create_time),
            updated_at: time(c.update_time),
            version: c.version,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerPage {
    pub items: Vec<Customer>,
    pub next_page_token: Option<String>,
}

/// Body of `POST /api/v1/customers/me`: the profile of the signed-in client.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProfile {
    #[schema(min_length = 1, max_length = 200)]
    pub display_name: String,
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub addresses: Vec<Address>,
    pub preferences: Option<Preferences>,
}

/// Body of `PUT /api/v1/customers/{id}`: the fields present are replaced.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateCustomer {
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub addresses: Option<Vec<Address>>,
    pub preferences: Option<Preferences>,
    /// Succeeds only if the profile is still at this version (409 otherwise).
    pub expected_version: Option<i64>,
}

// ---------------------------------------------------------------- payments

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

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPage {
    pub items: Vec<Payment>,
    pub next_page_token: Option<String>,
}

/// Body of `POST /api/v1/payments`: authorise (and optionally capture) a payment for an order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePayment {
    #[schema(format = Uuid)]
    pub order_id: String,
    #[schema(format = Uuid)]
    pub customer_id: String,
    pub amount: Money,
    #[schema(min_length = 1, max_length = 256)]
    pub payment_method_token: String,
    #[serde(default)]
    pub capture: bool,
}

/// Body of `POST /api/v1/payments/{id}/refunds`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRefund {
    /// Absent: the whole refundable amount.
    pub amount: Option<Money>,
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

// ---------------------------------------------------------------- notifications

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationType {
    Unspecified,
    OrderStatus,
    Payment,
    Message,
    Account,
    System,
}

impl NotificationType {
    fn from_proto(value: i32) -> Self {
        use notification::NotificationType as P;
        match P::try_from(value).unwrap_or(P::Unspecified) {
            P::Unspecified => Self::Unspecified,
            P::OrderStatus => Self::OrderStatus,
            P::Payment => Self::Payment,
            P::Message => Self::Message,
            P::Account => Self::Account,
            P::System => Self::System,
        }
    }

    pub fn to_proto(self) -> notification::NotificationType {
        use notification::NotificationType as P;
        match self {
            Self::Unspecified => P::Unspecified,
            Self::OrderStatus => P::OrderStatus,
            Self::Payment => P::Payment,
            Self::Message => P::Message,
            Self::Account => P::Account,
            Self::System => P::System,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: String,
    #[serde(rename = "type")]
    pub notification_type: NotificationType,
    pub title: String,
    pub body: String,
    pub data: BTreeMap<String, String>,
    pub read: bool,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub correlation_id: Option<String>,
}

impl Notification {
    pub fn from_proto(n: notification::Notification) -> Self {
        Self {
            id: n.id,
            notification_type: NotificationType::from_proto(n.notification_type),
            title: n.title,
            body: n.body,
            data: n.data.into_iter().collect(),
            read: n.read,
            read_at: time(n.read_time),
            created_at: time(n.create_time),
            correlation_id: non_empty(n.correlation_id),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPage {
    pub items: Vec<Notification>,
    pub next_page_token: Option<String>,
    pub unread_count: i64,
}

/// Who receives a notification: exactly one of a customer or an employee role.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Recipient {
    pub customer_id: Option<String>,
    /// `admin`, `order-manager` or `customer-service`.
    pub role: Option<String>,
}

/// Body of `POST /api/v1/notifications`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendNotification {
    pub recipient: Recipient,
    #[serde(rename = "type")]
    pub notification_type: NotificationType,
    pub title: String,
    pub body: String,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// Body of `POST /api/v1/notifications/read`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarkRead {
    #[serde(default)]
    pub ids: Vec<String>,
    /// Mark every notification of the caller read.
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarkReadResult {
    pub updated_count: i64,
    pub unread_count: i64,
}

// ---------------------------------------------------------------- audit

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: String,
    pub sequence: i64,
    pub actor: Option<Actor>,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub data_subject_id: Option<String>,
    pub correlation_id: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub recorded_at: Option<DateTime<Utc>>,
    pub source_service: String,
    /// Free-form details (never personal data).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl AuditEntry {
    pub fn from_proto(e: audit::AuditEntry) -> Self {
        Self {
            id: e.id,
            sequence: e.sequence,
            actor: Actor::from_proto(e.actor),
            action: e.action,
            entity_type: e.entity_type,
            entity_id: e.entity_id,
            data_subject_id: non_empty(e.data_subject_id),
            correlation_id: non_empty(e.correlation_id),
            occurred_at: time(e.occur_time),
            recorded_at: time(e.record_time),
            source_service: e.source_service,
            details: e
                .details
                .map(|s| struct_to_json(&s))
                .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
        }
    }
}

fn struct_to_json(s: &prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(s.fields.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect())
}

fn value_to_json(v: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => serde_json::Value::Array(l.values.iter().map(value_to_json).collect()),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_page_token: Option<String>,
}

/// Problem for a body whose `field` is missing or empty.
pub fn required(field: &str) -> Problem {
    Problem::validation(vec![FieldError {
        field: field.to_owned(),
        message: "is required".to_owned(),
    }])
}

/// A single-use ticket for `GET /api/v1/notifications/stream?ticket=…` (for browsers'
/// `EventSource`, which cannot send an `Authorization` header).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamTicket {
    /// Opaque, URL-safe; valid for one stream.
    pub ticket: String,
    /// Seconds until the ticket expires if unused.
    pub expires_in: u64,
}
