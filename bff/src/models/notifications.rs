//! Notifications: the notification, the bodies that send and mark them read, and the SSE
//! stream ticket.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ordermesh_proto::notification;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{non_empty, page, time};

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
    pub fn from_proto(value: i32) -> Self {
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

page!(NotificationPage, Notification, unread_count: i64);

/// Who receives a notification: a customer, or every employee with a role.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Recipient {
    Customer(CustomerRecipient),
    Role(RoleRecipient),
}

/// An object naming `customerId` is a customer, any other object a role. Not serde's untagged
/// reading: it buffers the value and reads a struct from an array too (`["<uuid>"]`), which the
/// document calls invalid; an object is required here, and the error names what was wrong.
impl<'de> Deserialize<'de> for Recipient {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let customer = object.contains_key("customerId");
        let object = serde_json::Value::Object(object);
        let read = if customer {
            serde_json::from_value(object).map(Recipient::Customer)
        } else {
            serde_json::from_value(object).map(Recipient::Role)
        };
        read.map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomerRecipient {
    pub customer_id: uuid::Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleRecipient {
    pub role: EmployeeRole,
}

/// An employee application role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EmployeeRole {
    Admin,
    OrderManager,
    CustomerService,
}

impl EmployeeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::OrderManager => "order-manager",
            Self::CustomerService => "customer-service",
        }
    }
}

/// Body of `POST /api/v1/notifications`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendNotification {
    pub recipient: Recipient,
    /// `unspecified` sends a `message`.
    #[serde(rename = "type")]
    pub notification_type: NotificationType,
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[schema(min_length = 1, max_length = 4000)]
    pub body: String,
    /// At most 20 entries; keys 1-64 characters, values at most 500.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// Body of `POST /api/v1/notifications/read`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarkRead {
    /// Notification ids (positive integers), at most 500.
    #[serde(default)]
    #[schema(max_items = 500, inline, value_type = Vec<NotificationId>)]
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

/// A notification's id: a positive integer, as a string.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(value_type = String, pattern = "^[1-9][0-9]{0,17}$", example = "42")]
pub struct NotificationId(pub String);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{EmployeeRole, Recipient};

    #[test]
    fn a_recipient_is_an_object_naming_a_customer_or_a_role() {
        let id = "01a231ad-41ee-767a-ba17-626c4df73145";
        let customer: Recipient = serde_json::from_value(json!({"customerId": id})).unwrap();
        assert!(matches!(customer, Recipient::Customer(c) if c.customer_id.to_string() == id));
        let role: Recipient = serde_json::from_value(json!({"role": "order-manager"})).unwrap();
        assert!(matches!(role, Recipient::Role(r) if r.role == EmployeeRole::OrderManager));
        for refused in [
            json!([id]),
            json!(["admin"]),
            json!({"customerId": [id]}),
            json!({"customerId": id, "role": "admin"}),
            json!({"role": "janitor"}),
            json!({}),
            json!(id),
        ] {
            assert!(
                serde_json::from_value::<Recipient>(refused.clone()).is_err(),
                "{refused}"
            );
        }
    }
}
