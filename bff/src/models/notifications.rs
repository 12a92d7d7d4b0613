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
