//! What notification-svc consumes (`order-events`, `payment-events`, `notification-events`) and
//! publishes (`NotificationCreated` on `notification-events`, for SendNotification).
//!
//! Every handled event is idempotent through the platform inbox: its notifications are written
//! in the consumer's transaction together with the inbox row, so a redelivered event stores
//! nothing twice. Muted types of a customer (preferences) are not stored for that customer;
//! ACCOUNT cannot be muted. New ids go to the live hub, which pushes them after the commit.
//! Logs carry event and notification ids only, never names, addresses or message text.

use async_trait::async_trait;
use chrono::{SubsecRound, Utc};
use ordermesh_platform::ServiceError;
use ordermesh_platform::events::{HandlerError, OutgoingEvent, ReceivedEvent, Tx};
use ordermesh_proto::events as ev;

use crate::domain::{self, Kind, NewNotification, Notification, Recipient};
use crate::live::LiveHub;
use crate::store;

/// This service's name as an event source.
pub const SOURCE: &str = "notification-svc";
/// The topic of NotificationRequested / NotificationCreated.
pub const TOPIC: &str = "notification-events";
/// The topics consumed.
pub const CONSUMED: [&str; 3] = ["order-events", "payment-events", TOPIC];

/// The consumer of all three topics.
pub struct NotificationHandler {
    pub hub: LiveHub,
}

fn permanent(error: ServiceError) -> HandlerError {
    HandlerError::permanent(anyhow::anyhow!("{error}"))
}

/// The notifications an event produces (empty for events of no interest).
pub fn notifications_for(event: &ReceivedEvent) -> Result<Vec<NewNotification>, HandlerError> {
    let notes = match (event.topic.as_str(), event.short_type()) {
        ("order-events", "OrderPlaced") => domain::order_placed(&event.decode::<ev::OrderPlaced>()?),
        ("order-events", "OrderStatusChanged") => {
            domain::order_status_changed(&event.decode::<ev::OrderStatusChanged>()?)
        }
        ("order-events", "OrderShipped") => domain::order_shipped(&event.decode::<ev::OrderShipped>()?),
        ("payment-events", "PaymentCaptured") => domain::payment_captured(&event.decode::<ev::PaymentCaptured>()?),
        ("payment-events", "PaymentFailed") => domain::payment_failed(&event.decode::<ev::PaymentFailed>()?),
        ("payment-events", "PaymentRefunded") => domain::payment_refunded(&event.decode::<ev::PaymentRefunded>()?),
        (TOPIC, "NotificationRequested") => domain::requested(&event.decode::<ev::NotificationRequested>()?),
        _ => Ok(Vec::new()),
    };
    let mut notes = notes.map_err(permanent)?;
    for note in &mut notes {
        note.correlation_id = event.correlation_id.clone();
    }
    Ok(notes)
}

/// Stores `notes` in `tx`, skipping muted types of customers; returns what was stored.
pub async fn store_all(tx: &mut Tx, notes: &[NewNotification]) -> Result<Vec<Notification>, sqlx::Error> {
    let now = Utc::now().trunc_subsecs(6);
    let mut stored = Vec::with_capacity(notes.len());
    for note in notes {
        if let Recipient::Customer(customer) = &note.recipient
            && note.kind != Kind::Account
            && store::muted_in_tx(tx, &domain::customer_key(*customer))
                .await?
                .contains(&note.kind)
        {
            continue;
        }
        stored.push(store::insert(tx, note, now).await?);
    }
    Ok(stored)
}

#[async_trait]
impl ordermesh_platform::events::EventHandler for NotificationHandler {
    async fn handle(&self, event: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        let notes = notifications_for(event)?;
        if notes.is_empty() {
            return Ok(());
        }
        let stored = store_all(tx, &notes).await?;
        for notification in &stored {
            tracing::debug!(event_id = %event.id, notification_id = notification.id, "notification stored");
            self.hub.publish_when_committed(notification.id);
        }
        Ok(())
    }
}

/// `NotificationCreated` for a notification created by SendNotification.
pub fn created(notification: &Notification, idempotency_key: Option<&str>) -> OutgoingEvent {
    let message = ev::NotificationCreated {
        notification_id: notification.id.to_string(),
        recipient: Some(notification.recipient.to_proto()),
        notification_type: notification.kind.to_proto() as i32,
        data: notification.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        request_id: idempotency_key.unwrap_or_default().to_owned(),
        sender_id: notification.sender_id.clone(),
        occur_time: Some(prost_types::Timestamp {
            seconds: notification.created_at.timestamp(),
            nanos: notification.created_at.timestamp_subsec_nanos() as i32,
        }),
    };
    OutgoingEvent::new(
        SOURCE,
        TOPIC,
        "NotificationCreated",
        &notification.id.to_string(),
        &notification.correlation_id,
        &message,
    )
}
