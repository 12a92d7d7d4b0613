//! Notifications, recipients, scopes and preferences, and the rules that turn domain events into
//! notifications. No I/O.
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
use ordermesh_platform::{ServiceError, Violations, validate};
use ordermesh_proto::events as ev;
use ordermesh_proto::notification as pb;
use ordermesh_proto::order::OrderStatus;
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

impl Recipient {
    pub fn to_proto(&self) -> pb::Recipient {
        let target = match self {
            Recipient::Customer(id) => pb::recipient::Target::CustomerId(id.to_string()),
            Recipient::Role(role) => pb::recipient::Target::Role(role.as_str().to_owned()),
        };
        pb::Recipient { target: Some(target) }
    }

    /// Parses a recipient message; violations are reported under `field`.
    pub fn from_proto(violations: &mut Violations, field: &str, value: Option<&pb::Recipient>) -> Option<Self> {
        match value.and_then(|r| r.target.as_ref()) {
            None => {
                violations.add(field, "is required: set customer_id or role");
                None
            }
            Some(pb::recipient::Target::CustomerId(id)) => {
                validate::uuid(violations, &format!("{field}.customer_id"), id).map(Recipient::Customer)
            }
            Some(pb::recipient::Target::Role(role)) => match Role::parse(role) {
                Some(role) => Some(Recipient::Role(role)),
                None => {
                    violations.add(
                        format!("{field}.role"),
                        "must be one of admin, order-manager, customer-service",
                    );
                    None
                }
            },
        }
    }
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

    pub fn to_proto(self) -> pb::NotificationType {
        match self {
            Kind::OrderStatus => pb::NotificationType::OrderStatus,
            Kind::Payment => pb::NotificationType::Payment,
            Kind::Message => pb::NotificationType::Message,
            Kind::Account => pb::NotificationType::Account,
            Kind::System => pb::NotificationType::System,
        }
    }

    /// `None` for UNSPECIFIED and unknown numbers.
    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::NotificationType::try_from(value).ok()? {
            pb::NotificationType::Unspecified => None,
            pb::NotificationType::OrderStatus => Some(Kind::OrderStatus),
            pb::NotificationType::Payment => Some(Kind::Payment),
            pb::NotificationType::Message => Some(Kind::Message),
            pb::NotificationType::Account => Some(Kind::Account),
            pb::NotificationType::System => Some(Kind::System),
        }
    }
}

/// Parses a list of notification types (a filter); UNSPECIFIED and unknown values are violations.
pub fn kinds(violations: &mut Violations, field: &str, values: &[i32]) -> Vec<Kind> {
    let mut kinds = Vec::new();
    for (i, value) in values.iter().enumerate() {
        match Kind::from_proto(*value) {
            Some(kind) => {
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            None => {
                violations.add(format!("{field}[{i}]"), "must be a known notification type");
            }
        }
    }
    kinds.sort();
    kinds
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
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

impl Notification {
    pub fn to_proto(&self) -> pb::Notification {
        pb::Notification {
            id: self.id.to_string(),
            recipient: Some(self.recipient.to_proto()),
            notification_type: self.kind.to_proto() as i32,
            title: self.title.clone(),
            body: self.body.clone(),
            data: self.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            read: self.read_at.is_some(),
            read_time: self.read_at.map(timestamp),
            create_time: Some(timestamp(self.created_at)),
            correlation_id: self.correlation_id.clone(),
            sender_id: self.sender_id.clone(),
        }
    }
}

/// Parses a public notification id.
pub fn parse_id(value: &str) -> Option<i64> {
    value
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0 && id.to_string() == value)
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

    /// `,admin,order-manager,` (for a `LIKE` match in SQL), `None` without roles.
    pub fn roles_list(&self) -> Option<String> {
        (!self.roles.is_empty()).then(|| {
            let names: Vec<&str> = self.roles.iter().map(|r| r.as_str()).collect();
            format!(",{},", names.join(","))
        })
    }
}

/// `,ORDER_STATUS,PAYMENT,` for a `LIKE` match, `None` for "all types".
pub fn kinds_list(kinds: &[Kind]) -> Option<String> {
    (!kinds.is_empty()).then(|| {
        let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        format!(",{},", names.join(","))
    })
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
    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::Channel::try_from(value).ok()? {
            pb::Channel::Unspecified => None,
            pb::Channel::InApp => Some(Channel::InApp),
            pb::Channel::Email => Some(Channel::Email),
            pb::Channel::Sms => Some(Channel::Sms),
        }
    }
    pub fn to_proto(self) -> pb::Channel {
        match self {
            Channel::InApp => pb::Channel::InApp,
            Channel::Email => pb::Channel::Email,
            Channel::Sms => pb::Channel::Sms,
        }
    }
}

/// A principal's preferences.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Preferences {
    pub channels: Vec<Channel>,
    pub muted: Vec<Kind>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Preferences {
    pub fn to_proto(&self) -> pb::NotificationPreferences {
        pb::NotificationPreferences {
            channels: self.channels.iter().map(|c| c.to_proto() as i32).collect(),
            muted_types: self.muted.iter().map(|k| k.to_proto() as i32).collect(),
            update_time: self.updated_at.map(timestamp),
        }
    }
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
// Events → notifications
// ---------------------------------------------------------------------------------------------

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn order_data(order_id: &str, status: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("order_id".to_owned(), order_id.to_owned()),
        ("status".to_owned(), status.to_owned()),
    ])
}

fn note(
    recipient: Recipient,
    kind: Kind,
    title: &str,
    body: String,
    data: BTreeMap<String, String>,
) -> NewNotification {
    NewNotification {
        recipient,
        kind,
        title: title.to_owned(),
        body,
        data,
        correlation_id: String::new(),
        sender_id: String::new(),
        idempotency_key: None,
    }
}

fn customer_of(id: &str) -> Result<Uuid, ServiceError> {
    Uuid::parse_str(id).map_err(|_| ServiceError::invalid("customer_id", "must be a UUID"))
}

fn money_text(money: Option<&ordermesh_proto::common::Money>) -> String {
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

/// `OrderPlaced` → "Order received" for the customer and "New order" for the order managers.
pub fn order_placed(event: &ev::OrderPlaced) -> Result<Vec<NewNotification>, ServiceError> {
    let customer = customer_of(&event.customer_id)?;
    let order = &event.order_id;
    let mut staff_data = order_data(order, "PENDING");
    staff_data.insert("customer_id".into(), event.customer_id.clone());
    staff_data.insert("item_count".into(), event.items.len().to_string());
    if let Some(total) = &event.total {
        staff_data.insert("total_minor".into(), total.amount_minor.to_string());
        staff_data.insert("currency".into(), total.currency_code.clone());
    }
    Ok(vec![
        note(
            Recipient::Customer(customer),
            Kind::OrderStatus,
            "Order received",
            format!("We received your order {} and are reserving the items.", short(order)),
            order_data(order, "PENDING"),
        ),
        note(
            Recipient::Role(Role::OrderManager),
            Kind::OrderStatus,
            "New order",
            format!(
                "Order {} was placed: {} item line(s), total {}.",
                short(order),
                event.items.len(),
                money_text(event.total.as_ref())
            ),
            staff_data,
        ),
    ])
}

/// `OrderStatusChanged` → the customer's status notification. SHIPPED is announced from
/// `OrderShipped` instead (it carries the carrier and tracking number), PENDING never changes to.
pub fn order_status_changed(event: &ev::OrderStatusChanged) -> Result<Vec<NewNotification>, ServiceError> {
    let customer = customer_of(&event.customer_id)?;
    let order = &event.order_id;
    let to = OrderStatus::try_from(event.to_status).unwrap_or(OrderStatus::Unspecified);
    let reason = event.reason.trim();
    let (status, title, body) = match to {
        OrderStatus::Reserved => (
            "RESERVED",
            "Items reserved",
            format!(
                "The items of order {} are reserved; we are taking the payment.",
                short(order)
            ),
        ),
        OrderStatus::Confirmed => (
            "CONFIRMED",
            "Order confirmed",
            format!("Your order {} is paid and confirmed.", short(order)),
        ),
        OrderStatus::Rejected => (
            "REJECTED",
            "Order rejected",
            if reason.is_empty() {
                format!("Your order {} could not be completed.", short(order))
            } else {
                format!("Your order {} could not be completed: {reason}", short(order))
            },
        ),
        OrderStatus::Cancelled => (
            "CANCELLED",
            "Order cancelled",
            if reason.is_empty() {
                format!("Your order {} was cancelled.", short(order))
            } else {
                format!("Your order {} was cancelled: {reason}", short(order))
            },
        ),
        OrderStatus::Delivered => (
            "DELIVERED",
            "Order delivered",
            format!("Your order {} was delivered.", short(order)),
        ),
        _ => return Ok(Vec::new()),
    };
    let mut data = order_data(order, status);
    if !reason.is_empty() && matches!(to, OrderStatus::Rejected | OrderStatus::Cancelled) {
        data.insert("reason".into(), reason.chars().take(DATA_VALUE_MAX).collect());
    }
    Ok(vec![note(
        Recipient::Customer(customer),
        Kind::OrderStatus,
        title,
        body,
        data,
    )])
}

/// `OrderShipped` → "Order shipped" with the carrier and tracking number.
pub fn order_shipped(event: &ev::OrderShipped) -> Result<Vec<NewNotification>, ServiceError> {
    let customer = customer_of(&event.customer_id)?;
    let order = &event.order_id;
    let mut data = order_data(order, "SHIPPED");
    let mut body = format!("Your order {} is on its way", short(order));
    if !event.carrier.is_empty() {
        body.push_str(&format!(" with {}", event.carrier));
        data.insert("carrier".into(), event.carrier.clone());
    }
    if !event.tracking_number.is_empty() {
        body.push_str(&format!(", tracking number {}", event.tracking_number));
        data.insert("tracking_number".into(), event.tracking_number.clone());
    }
    body.push('.');
    Ok(vec![note(
        Recipient::Customer(customer),
        Kind::OrderStatus,
        "Order shipped",
        body,
        data,
    )])
}

fn payment_data(
    payment_id: &str,
    order_id: &str,
    amount: Option<&ordermesh_proto::common::Money>,
) -> BTreeMap<String, String> {
    let mut data = BTreeMap::from([
        ("payment_id".to_owned(), payment_id.to_owned()),
        ("order_id".to_owned(), order_id.to_owned()),
    ]);
    if let Some(m) = amount {
        data.insert("amount_minor".into(), m.amount_minor.to_string());
        data.insert("currency".into(), m.currency_code.clone());
    }
    data
}

pub fn payment_captured(event: &ev::PaymentCaptured) -> Result<Vec<NewNotification>, ServiceError> {
    let customer = customer_of(&event.customer_id)?;
    let mut data = payment_data(&event.payment_id, &event.order_id, event.amount.as_ref());
    data.insert("status".into(), "CAPTURED".into());
    Ok(vec![note(
        Recipient::Customer(customer),
        Kind::Payment,
        "Payment received",
        format!(
            "We received your payment of {} for order {}.",
            money_text(event.amount.as_ref()),
            short(&event.order_id)
        ),
        data,
    )])
}

pub fn payment_failed(event: &ev::PaymentFailed) -> Result<Vec<NewNotification>, ServiceError> {
    let customer = customer_of(&event.customer_id)?;
    let mut data = payment_data(&event.payment_id, &event.order_id, event.amount.as_ref());
    data.insert("status".into(), "DECLINED".into());
    Ok(vec![note(
        Recipient::Customer(customer),
        Kind::Payment,
        "Payment declined",
        format!(
            "Your payment of {} for order {} was declined.",
            money_text(event.amount.as_ref()),
            short(&event.order_id)
        ),
        data,
    )])
}

pub fn payment_refunded(event: &ev::PaymentRefunded) -> Result<Vec<NewNotification>, ServiceError> {
    let customer = customer_of(&event.customer_id)?;
    let mut data = payment_data(&event.payment_id, &event.order_id, event.amount.as_ref());
    data.insert("status".into(), "REFUNDED".into());
    data.insert("refund_id".into(), event.refund_id.clone());
    data.insert("fully_refunded".into(), event.fully_refunded.to_string());
    Ok(vec![note(
        Recipient::Customer(customer),
        Kind::Payment,
        "Refund issued",
        format!(
            "We refunded {} for order {}.",
            money_text(event.amount.as_ref()),
            short(&event.order_id)
        ),
        data,
    )])
}

/// `NotificationRequested` → the requested notification (validated like SendNotification).
pub fn requested(event: &ev::NotificationRequested) -> Result<Vec<NewNotification>, ServiceError> {
    let mut violations = Violations::new();
    let recipient = Recipient::from_proto(&mut violations, "recipient", event.recipient.as_ref());
    let data: BTreeMap<String, String> = event.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    check_content(&mut violations, &event.title, &event.body, &data);
    let kind = if event.notification_type == 0 {
        Some(Kind::System)
    } else {
        Kind::from_proto(event.notification_type)
    };
    if kind.is_none() {
        violations.add("notification_type", "must be a known notification type");
    }
    violations.into_result()?;
    let (Some(recipient), Some(kind)) = (recipient, kind) else {
        return Err(ServiceError::invalid("recipient", "is required"));
    };
    Ok(vec![note(recipient, kind, &event.title, event.body.clone(), data)])
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
    }

    #[test]
    fn status_changes_map_to_customer_notifications() {
        let customer = Uuid::now_v7();
        let event = ev::OrderStatusChanged {
            order_id: "0190aaaa-0000-7000-8000-000000000001".into(),
            customer_id: customer.to_string(),
            to_status: OrderStatus::Rejected as i32,
            reason: "out of stock".into(),
            ..Default::default()
        };
        let notes = order_status_changed(&event).unwrap();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].recipient, Recipient::Customer(customer));
        assert_eq!(notes[0].data["status"], "REJECTED");
        assert!(notes[0].body.contains("out of stock"));
        let shipped = ev::OrderStatusChanged {
            to_status: OrderStatus::Shipped as i32,
            ..event
        };
        assert!(order_status_changed(&shipped).unwrap().is_empty());
    }
}
