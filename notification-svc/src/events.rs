//! What notification-svc consumes (`order-events`, `payment-events`, `notification-events`,
//! `StockLow` of `inventory-events`) and
//! publishes (`NotificationCreated` on `notification-events`, for SendNotification).
//!
//! Every handled event is idempotent through the platform inbox: its notifications are written
//! in the consumer's transaction together with the inbox row, so a redelivered event stores
//! nothing twice. Muted types of a customer (preferences) are not stored for that customer;
//! ACCOUNT cannot be muted. Each stored notification is announced to the live feed by a commit
//! hook on that transaction. Logs carry event and notification ids only, never names, addresses
//! or message text.

use std::collections::BTreeMap;

use async_trait::async_trait;
use ordermesh_platform::convert::{now, timestamp};
use ordermesh_platform::events::{HandlerError, OutgoingEvent, ReceivedEvent, TopicHandler, Tx};
use ordermesh_platform::validate::Money;
use ordermesh_platform::{ServiceError, StoreResult, Violations};
use ordermesh_proto::event_types::{InventoryEvent, NotificationEvent, OrderEvent, PaymentEvent};
use ordermesh_proto::events as ev;
use ordermesh_proto::order::OrderStatus;
use uuid::Uuid;

use crate::convert;
use crate::domain::{self, Kind, NewNotification, Notification, OrderMilestone, OrderRef, PaymentRef, Recipient};
use crate::live::LiveHub;
use crate::store::Store;

/// This service's name as an event source.
pub const SOURCE: &str = "notification-svc";

/// The consumer of the order, payment and notification topics.
#[derive(Clone)]
pub struct NotificationHandler {
    store: Store,
    hub: LiveHub,
    /// Deliveries an event gets before it is dead-lettered (`EVENTS_MAX_DELIVER`): an order's
    /// status change that arrives early waits for its turn until its last one.
    max_deliver: u64,
}

impl NotificationHandler {
    pub fn new(store: Store, hub: LiveHub, max_deliver: u64) -> Self {
        Self {
            store,
            hub,
            max_deliver,
        }
    }

    /// Applies an order's status change in its turn (see [`domain::change_in_turn`]): fails
    /// transiently (so it is delivered again later) while the change it follows has not been
    /// applied here, else records it as the order's last.
    async fn take_turn(
        &self,
        change: &StatusChange<'_>,
        envelope: &ReceivedEvent,
        tx: &mut Tx,
    ) -> Result<(), HandlerError> {
        let last = self.store.order_progress(tx, change.order_id).await?;
        let last_delivery = envelope.delivery_count >= self.max_deliver;
        if !domain::change_in_turn(last.as_deref(), change.from, last_delivery) {
            return Err(HandlerError::transient(anyhow::anyhow!(
                "order {}: the change to {} arrived before the one it follows",
                change.order_id,
                change.to
            )));
        }
        if last.as_deref() != change.from {
            tracing::warn!(
                order_id = change.order_id,
                to = change.to,
                "order status change told out of turn on its last delivery"
            );
        }
        self.store.set_order_progress(tx, change.order_id, change.to).await?;
        Ok(())
    }

    /// Stores `notes` (caused by `envelope`) in `tx` and announces each one after the commit.
    async fn deliver(
        &self,
        notes: Vec<NewNotification>,
        envelope: &ReceivedEvent,
        tx: &mut Tx,
    ) -> Result<(), HandlerError> {
        let notes: Vec<NewNotification> = notes
            .into_iter()
            .map(|note| NewNotification {
                correlation_id: envelope.correlation_id.clone(),
                ..note
            })
            .collect();
        for notification in store_all(&self.store, tx, &notes).await? {
            tracing::debug!(event_id = %envelope.id, notification_id = notification.id, "notification stored");
            self.hub.announce_on_commit(tx, &notification);
        }
        Ok(())
    }
}

#[async_trait]
impl TopicHandler<OrderEvent> for NotificationHandler {
    async fn handle(&self, event: OrderEvent, envelope: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        if let Some(change) = status_change(&event) {
            self.take_turn(&change, envelope, tx).await?;
        }
        self.deliver(order_notes(&event)?, envelope, tx).await
    }

    /// Writes only to this service's store: batched deliveries share a transaction.
    fn shares_transactions(&self) -> bool {
        true
    }
}

#[async_trait]
impl TopicHandler<PaymentEvent> for NotificationHandler {
    async fn handle(&self, event: PaymentEvent, envelope: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        self.deliver(payment_notes(&event)?, envelope, tx).await
    }

    /// Writes only to this service's store: batched deliveries share a transaction.
    fn shares_transactions(&self) -> bool {
        true
    }
}

/// Of the inventory, only a product running low concerns people: the order managers.
#[async_trait]
impl TopicHandler<InventoryEvent> for NotificationHandler {
    async fn handle(&self, event: InventoryEvent, envelope: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        let InventoryEvent::StockLow(low) = event else {
            return Ok(());
        };
        let product_id = Uuid::parse_str(&low.product_id)
            .map_err(|_| HandlerError::permanent(anyhow::anyhow!("StockLow without a valid product id")))?;
        let note = domain::stock_low(product_id, &low.sku, low.available, low.threshold);
        self.deliver(vec![note], envelope, tx).await
    }

    /// Writes only to this service's store: batched deliveries share a transaction.
    fn shares_transactions(&self) -> bool {
        true
    }
}

#[async_trait]
impl TopicHandler<NotificationEvent> for NotificationHandler {
    async fn handle(
        &self,
        event: NotificationEvent,
        envelope: &ReceivedEvent,
        tx: &mut Tx,
    ) -> Result<(), HandlerError> {
        match event {
            NotificationEvent::NotificationRequested(request) => {
                self.deliver(vec![requested(request)?], envelope, tx).await
            }
            // Our own announcement of SendNotification.
            NotificationEvent::NotificationCreated(_) => Ok(()),
        }
    }

    /// Writes only to this service's store: batched deliveries share a transaction.
    fn shares_transactions(&self) -> bool {
        true
    }
}

/// Stores `notes` in `tx`, skipping the types each customer muted and every note to an erased
/// customer; returns what was stored.
pub async fn store_all(store: &Store, tx: &mut Tx, notes: &[NewNotification]) -> StoreResult<Vec<Notification>> {
    let now = now();
    let mut stored = Vec::with_capacity(notes.len());
    for note in notes {
        if let Recipient::Customer(customer) = &note.recipient {
            let (muted, erased) = store.recipient_state(tx, *customer).await?;
            if erased || domain::is_muted(&muted, note.kind) {
                continue;
            }
        }
        stored.push(store.insert(tx, note, now).await?);
    }
    Ok(stored)
}

fn customer_of(id: &str) -> Result<Uuid, ServiceError> {
    Uuid::parse_str(id).map_err(|_| ServiceError::invalid("customer_id", "must be a UUID"))
}

/// The notifications of an order event (none for the events customers are not told about).
fn order_notes(event: &OrderEvent) -> Result<Vec<NewNotification>, ServiceError> {
    Ok(match event {
        OrderEvent::OrderPlaced(e) => {
            let total = e.total.as_ref().map(Money::from);
            domain::order_placed(order_ref(&e.order_id, &e.customer_id)?, e.items.len(), total.as_ref())
        }
        OrderEvent::OrderStatusChanged(e) => {
            let order = order_ref(&e.order_id, &e.customer_id)?;
            milestone(e.to_status)
                .map(|milestone| domain::order_status_changed(order, milestone, &e.reason))
                .into_iter()
                .collect()
        }
        OrderEvent::OrderShipped(e) => {
            let order = order_ref(&e.order_id, &e.customer_id)?;
            vec![domain::order_shipped(order, &e.carrier, &e.tracking_number)]
        }
        // Announced through OrderStatusChanged, which every transition publishes.
        OrderEvent::OrderConfirmed(_)
        | OrderEvent::OrderRejected(_)
        | OrderEvent::OrderCancelled(_)
        | OrderEvent::OrderDelivered(_) => Vec::new(),
    })
}

/// A change of an order's status: the placement (from nothing to PENDING) or a transition.
struct StatusChange<'a> {
    order_id: &'a str,
    from: Option<&'static str>,
    to: &'static str,
}

fn status_change(event: &OrderEvent) -> Option<StatusChange<'_>> {
    let name = |status: i32| {
        OrderStatus::try_from(status)
            .unwrap_or(OrderStatus::Unspecified)
            .as_str_name()
    };
    match event {
        OrderEvent::OrderPlaced(e) => Some(StatusChange {
            order_id: &e.order_id,
            from: None,
            to: OrderStatus::Pending.as_str_name(),
        }),
        OrderEvent::OrderStatusChanged(e) => Some(StatusChange {
            order_id: &e.order_id,
            from: Some(name(e.from_status)),
            to: name(e.to_status),
        }),
        _ => None,
    }
}

fn order_ref<'a>(id: &'a str, customer_id: &str) -> Result<OrderRef<'a>, ServiceError> {
    Ok(OrderRef {
        id,
        customer: customer_of(customer_id)?,
    })
}

/// The milestone an order status is, if customers are told about it.
fn milestone(status: i32) -> Option<OrderMilestone> {
    match OrderStatus::try_from(status).ok()? {
        OrderStatus::Reserved => Some(OrderMilestone::Reserved),
        OrderStatus::Confirmed => Some(OrderMilestone::Confirmed),
        OrderStatus::Rejected => Some(OrderMilestone::Rejected),
        OrderStatus::Cancelled => Some(OrderMilestone::Cancelled),
        OrderStatus::Delivered => Some(OrderMilestone::Delivered),
        OrderStatus::Unspecified | OrderStatus::Pending | OrderStatus::Shipped => None,
    }
}

/// The notifications of a payment event (none for authorisations and voids).
fn payment_notes(event: &PaymentEvent) -> Result<Vec<NewNotification>, ServiceError> {
    Ok(match event {
        PaymentEvent::PaymentCaptured(e) => {
            vec![domain::payment_captured(&payment_ref(
                &e.payment_id,
                &e.order_id,
                &e.customer_id,
                e.amount.as_ref(),
            )?)]
        }
        PaymentEvent::PaymentFailed(e) => {
            vec![domain::payment_failed(&payment_ref(
                &e.payment_id,
                &e.order_id,
                &e.customer_id,
                e.amount.as_ref(),
            )?)]
        }
        PaymentEvent::PaymentRefunded(e) => {
            let payment = payment_ref(&e.payment_id, &e.order_id, &e.customer_id, e.amount.as_ref())?;
            vec![domain::payment_refunded(&payment, &e.refund_id, e.fully_refunded)]
        }
        PaymentEvent::PaymentAuthorized(_) | PaymentEvent::PaymentDeclined(_) | PaymentEvent::PaymentVoided(_) => {
            Vec::new()
        }
    })
}

fn payment_ref<'a>(
    id: &'a str,
    order_id: &'a str,
    customer_id: &str,
    amount: Option<&ordermesh_proto::common::Money>,
) -> Result<PaymentRef<'a>, ServiceError> {
    Ok(PaymentRef {
        id,
        order_id,
        customer: customer_of(customer_id)?,
        amount: amount.map(Money::from),
    })
}

/// `NotificationRequested` → the requested notification, validated like SendNotification
/// (UNSPECIFIED type: SYSTEM).
fn requested(request: ev::NotificationRequested) -> Result<NewNotification, ServiceError> {
    let mut violations = Violations::new();
    let data: BTreeMap<String, String> = request.data.into_iter().collect();
    let target = convert::new_notification_target(
        &mut violations,
        request.recipient.as_ref(),
        request.notification_type,
        Kind::System,
        &request.title,
        &request.body,
        &data,
    );
    violations.into_result()?;
    let (recipient, kind) = target.ok_or_else(|| ServiceError::invalid("recipient", "is required"))?;
    Ok(NewNotification::system(
        recipient,
        kind,
        request.title,
        request.body,
        data,
    ))
}

/// `NotificationCreated` for a notification created by SendNotification.
pub fn created(notification: &Notification, idempotency_key: Option<&str>) -> OutgoingEvent {
    let message = ev::NotificationCreated {
        notification_id: notification.id.to_string(),
        recipient: Some((&notification.recipient).into()),
        notification_type: convert::notification_type(notification.kind),
        data: notification.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        request_id: idempotency_key.unwrap_or_default().to_owned(),
        sender_id: notification.sender_id.clone(),
        occur_time: Some(timestamp(notification.created_at)),
    };
    OutgoingEvent::of(
        SOURCE,
        &notification.id.to_string(),
        &notification.correlation_id,
        &message,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let notes = order_notes(&OrderEvent::OrderStatusChanged(event.clone())).unwrap();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].recipient, Recipient::Customer(customer));
        assert_eq!(notes[0].data["status"], "REJECTED");
        assert!(notes[0].body.contains("out of stock"));
        let shipped = ev::OrderStatusChanged {
            to_status: OrderStatus::Shipped as i32,
            ..event
        };
        assert!(
            order_notes(&OrderEvent::OrderStatusChanged(shipped))
                .unwrap()
                .is_empty()
        );
    }
}
