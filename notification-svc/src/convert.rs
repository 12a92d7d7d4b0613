//! The wire forms of the domain types (`ordermesh.notification.v1`), in both directions, for
//! the edges: `grpc`, `events` and the live feed. Parsers report what is wrong as field
//! violations, so a request lists all its problems at once.

use std::collections::BTreeMap;

use ordermesh_platform::auth::Role;
use ordermesh_platform::convert::{optional_timestamp, timestamp};
use ordermesh_platform::{Violations, validate};
use ordermesh_proto::notification as pb;

use crate::domain::{self, Channel, Kind, Notification, Preferences, Recipient};

impl From<&Recipient> for pb::Recipient {
    fn from(recipient: &Recipient) -> Self {
        let target = match recipient {
            Recipient::Customer(id) => pb::recipient::Target::CustomerId(id.to_string()),
            Recipient::Role(role) => pb::recipient::Target::Role(role.as_str().to_owned()),
        };
        Self { target: Some(target) }
    }
}

/// Parses a recipient message; violations are reported under `field`.
pub fn recipient(violations: &mut Violations, field: &str, value: Option<&pb::Recipient>) -> Option<Recipient> {
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

impl From<Kind> for pb::NotificationType {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::OrderStatus => Self::OrderStatus,
            Kind::Payment => Self::Payment,
            Kind::Message => Self::Message,
            Kind::Account => Self::Account,
            Kind::System => Self::System,
        }
    }
}

/// The `NotificationType` number of `kind`, as messages carry it.
pub fn notification_type(kind: Kind) -> i32 {
    pb::NotificationType::from(kind) as i32
}

/// A `NotificationType` number as a kind; `None` for UNSPECIFIED and unknown numbers.
pub fn kind(value: i32) -> Option<Kind> {
    match pb::NotificationType::try_from(value).ok()? {
        pb::NotificationType::Unspecified => None,
        pb::NotificationType::OrderStatus => Some(Kind::OrderStatus),
        pb::NotificationType::Payment => Some(Kind::Payment),
        pb::NotificationType::Message => Some(Kind::Message),
        pb::NotificationType::Account => Some(Kind::Account),
        pb::NotificationType::System => Some(Kind::System),
    }
}

/// Parses a list of notification types (a filter), sorted and without duplicates; UNSPECIFIED
/// and unknown values are violations.
pub fn kinds(violations: &mut Violations, field: &str, values: &[i32]) -> Vec<Kind> {
    let mut kinds = Vec::new();
    for (i, value) in values.iter().enumerate() {
        match kind(*value) {
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

/// The recipient and type of a notification to create (SendNotification, NotificationRequested),
/// with its content validated; `default_kind` stands for UNSPECIFIED. `None` when there are
/// violations.
pub fn new_notification_target(
    violations: &mut Violations,
    recipient_message: Option<&pb::Recipient>,
    notification_type: i32,
    default_kind: Kind,
    title: &str,
    body: &str,
    data: &BTreeMap<String, String>,
) -> Option<(Recipient, Kind)> {
    let recipient = recipient(violations, "recipient", recipient_message);
    domain::check_content(violations, title, body, data);
    let kind = if notification_type == 0 {
        Some(default_kind)
    } else {
        kind(notification_type)
    };
    if kind.is_none() {
        violations.add("notification_type", "must be a known notification type");
    }
    recipient.zip(kind)
}

impl From<Channel> for pb::Channel {
    fn from(channel: Channel) -> Self {
        match channel {
            Channel::InApp => Self::InApp,
            Channel::Email => Self::Email,
            Channel::Sms => Self::Sms,
        }
    }
}

/// A `Channel` number as a channel; `None` for UNSPECIFIED and unknown numbers.
pub fn channel(value: i32) -> Option<Channel> {
    match pb::Channel::try_from(value).ok()? {
        pb::Channel::Unspecified => None,
        pb::Channel::InApp => Some(Channel::InApp),
        pb::Channel::Email => Some(Channel::Email),
        pb::Channel::Sms => Some(Channel::Sms),
    }
}

impl From<&Notification> for pb::Notification {
    fn from(notification: &Notification) -> Self {
        Self {
            id: notification.id.to_string(),
            recipient: Some((&notification.recipient).into()),
            notification_type: notification_type(notification.kind),
            title: notification.title.clone(),
            body: notification.body.clone(),
            data: notification.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            read: notification.read_at.is_some(),
            read_time: optional_timestamp(notification.read_at),
            create_time: Some(timestamp(notification.created_at)),
            correlation_id: notification.correlation_id.clone(),
            sender_id: notification.sender_id.clone(),
            traceparent: notification.traceparent.clone().unwrap_or_default(),
        }
    }
}

impl From<&Preferences> for pb::NotificationPreferences {
    fn from(preferences: &Preferences) -> Self {
        Self {
            channels: preferences
                .channels
                .iter()
                .map(|c| pb::Channel::from(*c) as i32)
                .collect(),
            muted_types: preferences.muted.iter().map(|k| notification_type(*k)).collect(),
            update_time: optional_timestamp(preferences.updated_at),
        }
    }
}
