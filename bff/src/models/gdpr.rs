//! GDPR: exports (right of access), erasure (right to be forgotten), consents, and the
//! notification preferences a customer controls.

use chrono::{DateTime, Utc};
use ordermesh_proto::{customer, notification};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{Actor, page, time};
use super::customers::CustomerStatus;
use super::notifications::NotificationType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    /// Being assembled from every service's part; ask again (see `Retry-After`).
    Pending,
    /// The bundle is in `bundle`.
    Ready,
}

/// An export of everything the platform holds about a customer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataExport {
    pub export_id: String,
    pub customer_id: String,
    pub status: ExportStatus,
    pub created_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// When the bundle is deleted.
    pub expires_at: Option<DateTime<Utc>>,
    /// The bundle once `ready`: one JSON document with a section per service, described by
    /// the JSON Schema `https://ordermesh.dev/schemas/gdpr/export-bundle/v1.json`.
    #[schema(value_type = Option<Object>)]
    pub bundle: Option<serde_json::Value>,
}

impl DataExport {
    /// `None` if the bundle of a ready export is not JSON (it always is; a broken one is a 500).
    pub fn from_proto(e: customer::CustomerDataExport) -> Option<Self> {
        let status = match customer::ExportState::try_from(e.state).unwrap_or(customer::ExportState::Unspecified) {
            customer::ExportState::Ready => ExportStatus::Ready,
            _ => ExportStatus::Pending,
        };
        let bundle = match status {
            ExportStatus::Ready => Some(serde_json::from_slice(&e.json_document).ok()?),
            ExportStatus::Pending => None,
        };
        Some(Self {
            export_id: e.export_id,
            customer_id: e.customer_id,
            status,
            created_at: time(e.create_time),
            completed_at: time(e.complete_time),
            expires_at: time(e.expire_time),
            bundle,
        })
    }
}

/// An erasure request and how far it has got.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Erasure {
    pub customer_id: String,
    pub erasure_request_id: String,
    /// `erasing` until every service has confirmed, then `erased`.
    pub status: CustomerStatus,
    /// Services that have erased their copy, e.g. `["notification", "order"]`.
    pub confirmed_services: Vec<String>,
    /// Services still erasing.
    pub pending_services: Vec<String>,
}

impl Erasure {
    pub fn from_proto(r: customer::EraseCustomerResponse) -> Self {
        let status = r
            .customer
            .map(|c| super::customers::Customer::from_proto(c).status)
            .unwrap_or(CustomerStatus::Unspecified);
        Self {
            customer_id: String::new(),
            erasure_request_id: r.erasure_request_id,
            status,
            confirmed_services: r.confirmed_services,
            pending_services: r.pending_services,
        }
    }
}

/// One consent decision (the history is append-only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    pub id: String,
    pub customer_id: String,
    pub purpose: String,
    pub granted: bool,
    pub policy_version: String,
    pub source: String,
    pub recorded_by: Option<Actor>,
    pub recorded_at: Option<DateTime<Utc>>,
}

impl Consent {
    pub fn from_proto(c: customer::Consent) -> Self {
        Self {
            id: c.id,
            customer_id: c.customer_id,
            purpose: c.purpose,
            granted: c.granted,
            policy_version: c.policy_version,
            source: c.source,
            recorded_by: Actor::from_proto(c.recorded_by),
            recorded_at: time(c.record_time),
        }
    }
}

page!(ConsentPage, Consent);

/// Body of `POST /api/v1/customers/{id}/consents`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordConsent {
    /// What the consent is for, e.g. `marketing_email`.
    #[schema(pattern = "^[a-z0-9_]{1,64}$", example = "marketing_email")]
    pub purpose: String,
    /// True to grant, false to refuse or withdraw.
    pub granted: bool,
    /// Version of the policy text shown, e.g. `2026-01`.
    #[schema(min_length = 1, max_length = 64, example = "2026-01")]
    pub policy_version: String,
    /// Where it was captured; default `client-portal` for clients, `employee-portal` for staff.
    #[schema(max_length = 64)]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    InApp,
    Email,
    Sms,
}

impl Channel {
    fn from_proto(value: i32) -> Option<Self> {
        use notification::Channel as P;
        match P::try_from(value).ok()? {
            P::InApp => Some(Self::InApp),
            P::Email => Some(Self::Email),
            P::Sms => Some(Self::Sms),
            P::Unspecified => None,
        }
    }

    fn to_proto(self) -> notification::Channel {
        use notification::Channel as P;
        match self {
            Self::InApp => P::InApp,
            Self::Email => P::Email,
            Self::Sms => P::Sms,
        }
    }
}

/// Which channels notifications go to, and which types are not wanted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPreferences {
    pub channels: Vec<Channel>,
    /// Types not wanted; `account` cannot be muted.
    pub muted_types: Vec<NotificationType>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl NotificationPreferences {
    pub fn from_proto(p: notification::NotificationPreferences) -> Self {
        Self {
            channels: p.channels.into_iter().filter_map(Channel::from_proto).collect(),
            muted_types: p.muted_types.into_iter().map(NotificationType::from_proto).collect(),
            updated_at: time(p.update_time),
        }
    }
}

/// Body of `PUT /api/v1/notifications/preferences`: the fields present are replaced.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateNotificationPreferences {
    pub channels: Option<Vec<Channel>>,
    /// `account` notifications (security, erasure) cannot be muted.
    pub muted_types: Option<Vec<MutableNotificationType>>,
}

/// A notification type a customer may mute: every type but `account`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MutableNotificationType {
    OrderStatus,
    Payment,
    Message,
    System,
}

impl MutableNotificationType {
    fn to_proto(self) -> notification::NotificationType {
        use notification::NotificationType as P;
        match self {
            Self::OrderStatus => P::OrderStatus,
            Self::Payment => P::Payment,
            Self::Message => P::Message,
            Self::System => P::System,
        }
    }
}

impl UpdateNotificationPreferences {
    /// The preferences and field mask of the request; `None` if it changes nothing.
    pub fn to_proto(&self) -> Option<(notification::NotificationPreferences, Vec<String>)> {
        let mut paths = Vec::new();
        let mut prefs = notification::NotificationPreferences::default();
        if let Some(channels) = &self.channels {
            prefs.channels = channels.iter().map(|c| c.to_proto() as i32).collect();
            paths.push("channels".to_owned());
        }
        if let Some(muted) = &self.muted_types {
            prefs.muted_types = muted.iter().map(|t| t.to_proto() as i32).collect();
            paths.push("muted_types".to_owned());
        }
        (!paths.is_empty()).then_some((prefs, paths))
    }
}
