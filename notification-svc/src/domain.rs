//! Notifications, recipients, scopes and preferences, and the rules that turn what happened to
//! orders and payments into notifications. No I/O and no generated types: `convert` and
//! `events` translate the wire forms at the edge.
//!
//! # Ids and resume
//!
//! A notification's id is the store-assigned sequence number (`BIGSERIAL` on PostgreSQL,
//! `INTEGER PRIMARY KEY AUTOINCREMENT` on SQLite), exposed as the decimal string of the integer
//! (`"42"`). Ids are unique across all recipients and strictly increase in the order the
//! notifications became visible (inserts are serialised, see `store`), so "every notification of
//! my streams with id > N" is a gap-free resume point (`SubscribeRequest.after_id`, the SSE
//! `Last-Event-ID`). Ids of one recipient are not contiguous (other recipients' notifications
//! take numbers in between).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ordermesh_platform::auth::Role;
use ordermesh_platform::validate::Money;
use ordermesh_platform::{Violations, validate};
use uuid::Uuid;

pub const TITLE_MAX: usize = 200;
pub const BODY_MAX: usize = 4000;
pub const DATA_MAX_ENTRIES: usize = 20;
pub const DATA_KEY_MAX: usize = 64;
pub const DATA_VALUE_MAX: usize = 500;
pub const IDEMPOTENCY_KEY_MAX: usize = 128;

/// Who a notification is addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    Customer(Uuid),
    /// An employee role group (`admin`, `order-manager`, `customer-service`).
    Role(Role),
}

/// The types of `NotificationType`, stored by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    OrderStatus,
    Payment,
    Message,
    Account,
    System,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::OrderStatus,
        Kind::Payment,
        Kind::Message,
        Kind::Account,
        Kind::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OrderStatus => "ORDER_STATUS",
            Kind::Payment => "PAYMENT",
            Kind::Message => "MESSAGE",
            Kind::Account => "ACCOUNT",
            Kind::System => "SYSTEM",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

/// A notification to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub recipient: Recipient,
    pub kind: Kind,
    pub title: String,
    pub body: String,
    pub data: BTreeMap<String, String>,
    pub correlation_id: String,
    /// Employee subject for SendNotification; empty for system notifications.
    pub sender_id: String,
    pub idempotency_key: Option<String>,
}

impl NewNotification {
    /// A notification the system creates (no sender, no idempotency key); the caller sets the
    /// correlation id of what caused it.
    pub fn system(
        recipient: Recipient,
        kind: Kind,
        title: impl Into<String>,
        body: String,
        data: BTreeMap<String, String>,
    ) -> Self {
        Self {
            recipient,
            kind,
            title: title.into(),
            body,
            data,
            correlation_id: String::new(),
            sender_id: String::new(),
            idempotency_key: None,
        }
    }
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Store sequence number (the public id, as a decimal string).
    pub id: i64,
    pub recipient: Recipient,
    pub kind: Kind,
    pub title: String,
    pub body: String,
    pub data: BTreeMap<String, String>,
    pub correlation_id: String,
    pub sender_id: String,
    pub created_at: DateTime<Utc>,
    /// When the listed reader read it (None: unread, or no reader).
    pub read_at: Option<DateTime<Utc>>,
    /// W3C `traceparent` of the work that created it, when traces are exported.
    pub traceparent: Option<String>,
}

/// Parses a public notification id.
pub fn parse_id(value: &str) -> Option<i64> {
    value
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0 && id.to_string() == value)
}

/// A resume point: a notification id, or `0`, the point before the first notification (the
/// cursor of an empty store).
pub fn parse_position(value: &str) -> Option<i64> {
    if value == "0" { Some(0) } else { parse_id(value) }
}

/// Which notifications a reader sees: the union of a customer's, some role groups', or all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    pub all: bool,
    pub customer: Option<Uuid>,
    pub roles: Vec<Role>,
}

impl Scope {
    pub fn customer(id: Uuid) -> Self {
        Self {
            customer: Some(id),
            ..Self::default()
        }
    }

    pub fn roles(roles: impl IntoIterator<Item = Role>) -> Self {
        Self {
            roles: roles.into_iter().collect(),
            ..Self::default()
        }
    }

    pub fn everything() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    pub fn contains(&self, recipient: &Recipient) -> bool {
        self.all
            || match recipient {
                Recipient::Customer(id) => self.customer == Some(*id),
                Recipient::Role(role) => self.roles.contains(role),
            }
    }
}

/// Delivery channels besides in-app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Channel {
    InApp,
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::InApp => "IN_APP",
            Channel::Email => "EMAIL",
            Channel::Sms => "SMS",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Channel::InApp, Channel::Email, Channel::Sms]
            .into_iter()
            .find(|c| c.as_str() == value)
    }
}

/// A principal's preferences.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Preferences {
    pub channels: Vec<Channel>,
    pub muted: Vec<Kind>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Whether a customer who muted `muted` is spared notifications of `kind`: ACCOUNT notifications
/// (security, erasure) reach the customer whatever it muted.
pub fn is_muted(muted: &[Kind], kind: Kind) -> bool {
    kind != Kind::Account && muted.contains(&kind)
}

/// Validates the `data` map of a notification (`field` names it in violations).
pub fn check_data(violations: &mut Violations, field: &str, data: &BTreeMap<String, String>) {
    if data.len() > DATA_MAX_ENTRIES {
        violations.add(field, format!("must have at most {DATA_MAX_ENTRIES} entries"));
    }
    for (key, value) in data {
        let key_len = key.chars().count();
        if key_len == 0 || key_len > DATA_KEY_MAX {
            violations.add(field, format!("keys must have 1-{DATA_KEY_MAX} characters"));
        }
        if value.chars().count() > DATA_VALUE_MAX {
            violations.add(
                format!("{field}[{key}]"),
                format!("must have at most {DATA_VALUE_MAX} characters"),
            );
        }
    }
}

/// Validates the content of a notification to send.
pub fn check_content(violations: &mut Violations, title: &str, body: &str, data: &BTreeMap<String, String>) {
    validate::length(violations, "title", title, 1, TITLE_MAX);
    validate::length(violations, "body", body, 1, BODY_MAX);
    check_data(violations, "data", data);
}

/// The principal key of a customer (read state, preferences).
pub fn customer_key(id: Uuid) -> String {
    format!("customer:{id}")
}

/// The principal key of an employee (read state, preferences).
pub fn employee_key(subject: &str) -> String {
    format!("employee:{subject}")
}

// ---------------------------------------------------------------------------------------------
// What happened → notifications
// ---------------------------------------------------------------------------------------------

/// The order an order event is about.
#[derive(Debug, Clone, Copy)]
pub struct OrderRef<'a> {
    pub id: &'a str,
    pub customer: Uuid,
}

/// The statuses an order's customer is told about when the order changes to them. SHIPPED is
/// announced from `OrderShipped` instead (it carries the carrier and tracking number); PENDING
/// is never changed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderMilestone {
    Reserved,
    Confirmed,
    Rejected,
    Cancelled,
    Delivered,
}

/// The payment a payment event is about.
#[derive(Debug, Clone)]
pub struct PaymentRef<'a> {
    pub id: &'a str,
    pub order_id: &'a str,
    pub customer: Uuid,
    pub amount: Option<Money>,
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn order_data(order_id: &str, status: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("order_id".to_owned(), order_id.to_owned()),
        ("status".to_owned(), status.to_owned()),
    ])
}

fn money_text(money: Option<&Money>) -> String {
    match money {
        Some(m) => format!(
            "{}.{:02} {}",
            m.amount_minor / 100,
            (m.amount_minor % 100).abs(),
            m.currency_code
        ),
        None => String::new(),
    }
}

/// A product low on stock → "Low stock" for the order managers.
pub fn stock_low(product_id: Uuid, sku: &str, available: i64, threshold: i64) -> NewNotification {
    let data = BTreeMap::from([
        ("product_id".to_owned(), product_id.to_string()),
        ("sku".to_owned(), sku.to_owned()),
        ("available".to_owned(), available.to_string()),
        ("threshold".to_owned(), threshold.to_string()),
    ]);
    NewNotification::system(
        Recipient::Role(Role::OrderManager),
        Kind::System,
        "Low stock",
        format!("{sku}: {available} unit(s) left to order (low-stock threshold {threshold})."),
        data,
    )
}

/// A placed order → "Order received" for the customer and "New order" for the order managers.
pub fn order_placed(order: OrderRef<'_>, item_count: usize, total: Option<&Money>) -> Vec<NewNotification> {
    let mut staff_data = order_data(order.id, "PENDING");
    staff_data.insert("customer_id".into(), order.customer.to_string());
    staff_data.insert("item_count".into(), item_count.to_string());
    if let Some(total) = total {
        staff_data.insert("total_minor".into(), total.amount_minor.to_string());
        staff_data.insert("currency".into(), total.currency_code.clone());
    }
    vec![
        NewNotification::system(
            Recipient::Customer(order.customer),
            Kind::OrderStatus,
            "Order received",
            format!(
                "We received your order {} and are reserving the items.",
                short(order.id)
            ),
            order_data(order.id, "PENDING"),
        ),
        NewNotification::system(
            Recipient::Role(Role::OrderManager),
            Kind::OrderStatus,
            "New order",
            format!(
                "Order {} was placed: {} item line(s), total {}.",
                short(order.id),
                item_count,
                money_text(total)
            ),
            staff_data,
        ),
    ]
}

/// An order that reached `milestone` → the customer's status notification; `reason` (of a
/// rejection or cancellation) is told to the customer.
pub fn order_status_changed(order: OrderRef<'_>, milestone: OrderMilestone, reason: &str) -> NewNotification {
    let reason = reason.trim();
    let id = short(order.id);
    let with_reason = |base: String| {
        if reason.is_empty() {
            format!("{base}.")
        } else {
            format!("{base}: {reason}")
        }
    };
    let (status, title, body) = match milestone {
        OrderMilestone::Reserved => (
            "RESERVED",
            "Items reserved",
            format!("The items of order {id} are reserved; we are taking the payment."),
        ),
        OrderMilestone::Confirmed => (
            "CONFIRMED",
            "Order confirmed",
            format!("Your order {id} is paid and confirmed."),
        ),
        OrderMilestone::Rejected => (
            "REJECTED",
            "Order rejected",
            with_reason(format!("Your order {id} could not be completed")),
        ),
        OrderMilestone::Cancelled => (
            "CANCELLED",
            "Order cancelled",
            with_reason(format!("Your order {id} was cancelled")),
        ),
        OrderMilestone::Delivered => (
            "DELIVERED",
            "Order delivered",
            format!("Your order {id} was delivered."),
        ),
    };
    let mut data = order_data(order.id, status);
    if !reason.is_empty() && matches!(milestone, OrderMilestone::Rejected | OrderMilestone::Cancelled) {
        data.insert("reason".into(), reason.chars().take(DATA_VALUE_MAX).collect());
    }
    NewNotification::system(
        Recipient::Customer(order.customer),
        Kind::OrderStatus,
        title,
        body,
        data,
    )
}

/// A shipped order → "Order shipped" with the carrier and tracking number (when known).
pub fn order_shipped(order: OrderRef<'_>, carrier: &str, tracking_number: &str) -> NewNotification {
    let mut data = order_data(order.id, "SHIPPED");
    let mut body = format!("Your order {} is on its way", short(order.id));
    if !carrier.is_empty() {
        body.push_str(&format!(" with {carrier}"));
        data.insert("carrier".into(), carrier.to_owned());
    }
    if !tracking_number.is_empty() {
        body.push_str(&format!(", tracking number {tracking_number}"));
        data.insert("tracking_number".into(), tracking_number.to_owned());
    }
    body.push('.');
    NewNotification::system(
        Recipient::Customer(order.customer),
        Kind::OrderStatus,
        "Order shipped",
        body,
        data,
    )
}

fn payment_data(payment: &PaymentRef<'_>, status: &str) -> BTreeMap<String, String> {
    let mut data = BTreeMap::from([
        ("payment_id".to_owned(), payment.id.to_owned()),
        ("order_id".to_owned(), payment.order_id.to_owned()),
    ]);
    if let Some(m) = &payment.amount {
        data.insert("amount_minor".into(), m.amount_minor.to_string());
        data.insert("currency".into(), m.currency_code.clone());
    }
    data.insert("status".into(), status.to_owned());
    data
}

pub fn payment_captured(payment: &PaymentRef<'_>) -> NewNotification {
    NewNotification::system(
        Recipient::Customer(payment.customer),
        Kind::Payment,
        "Payment received",
        format!(
            "We received your payment of {} for order {}.",
            money_text(payment.amount.as_ref()),
            short(payment.order_id)
        ),
        payment_data(payment, "CAPTURED"),
    )
}

pub fn payment_failed(payment: &PaymentRef<'_>) -> NewNotification {
    NewNotification::system(
        Recipient::Customer(payment.customer),
        Kind::Payment,
        "Payment declined",
        format!(
            "Your payment of {} for order {} was declined.",
            money_text(payment.amount.as_ref()),
            short(payment.order_id)
        ),
        payment_data(payment, "DECLINED"),
    )
}

pub fn payment_refunded(payment: &PaymentRef<'_>, refund_id: &str, fully_refunded: bool) -> NewNotification {
    let mut data = payment_data(payment, "REFUNDED");
    data.insert("refund_id".into(), refund_id.to_owned());
    data.insert("fully_refunded".into(), fully_refunded.to_string());
    NewNotification::system(
        Recipient::Customer(payment.customer),
        Kind::Payment,
        "Refund issued",
        format!(
            "We refunded {} for order {}.",
            money_text(payment.amount.as_ref()),
            short(payment.order_id)
        ),
        data,
    )
}

/// Whether a change of an order's status arrives in its turn: it starts from the status the
/// last change applied here ended in (`None` on both sides: nothing applied yet, and the change
/// is the placement). Replicas consuming side by side, or a redelivery after a crash, can bring
/// a change before the one it follows; told then, the customer would read "confirmed" before
/// "reserved". An early change waits for its turn, but not forever: on its last delivery it is
/// applied whatever came before (its predecessor may have been dead-lettered, or predate this
/// service's record of progress), since telling late is better than never telling.
pub fn change_in_turn(last_applied: Option<&str>, starts_from: Option<&str>, last_delivery: bool) -> bool {
    last_applied == starts_from || last_delivery
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_strictly() {
        assert_eq!(parse_id("42"), Some(42));
        assert_eq!(parse_id("042"), None);
        assert_eq!(parse_id("0"), None);
        assert_eq!(parse_id("-1"), None);
        assert_eq!(parse_id("abc"), None);
        assert_eq!(parse_position("0"), Some(0), "before the first");
        assert_eq!(parse_position("42"), Some(42));
        assert_eq!(parse_position("00"), None);
        assert_eq!(parse_position("-0"), None);
    }

    #[test]
    fn a_status_change_waits_for_the_one_it_follows() {
        use super::change_in_turn;
        // The placement comes first; each change starts where the last one ended.
        assert!(change_in_turn(None, None, false));
        assert!(change_in_turn(Some("PENDING"), Some("PENDING"), false));
        // A change before the placement, or one skipping the change it follows, waits.
        assert!(!change_in_turn(None, Some("PENDING"), false));
        assert!(!change_in_turn(Some("PENDING"), Some("RESERVED"), false));
        // A placement after changes (told already) is not in turn either.
        assert!(!change_in_turn(Some("RESERVED"), None, false));
        // On its last delivery, it is told anyway.
        assert!(change_in_turn(Some("PENDING"), Some("RESERVED"), true));
    }
}
