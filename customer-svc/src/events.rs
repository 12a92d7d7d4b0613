//! What customer-svc publishes through the outbox in the transaction of the write (see the
//! store): on `customer-events` `CustomerCreated`, `CustomerUpdated` (the names of the fields that
//! changed, never their values) and `ConsentRecorded`; on `gdpr-events` `ErasureRequested`,
//! `CustomerErased` and `CustomerDataExported`. What it consumes: `ErasureCompleted`
//! ([`ErasureConfirmations`]), and on `order-events` ([`OrderEventsHandler`]) `OrderPlaced` (a
//! customer's activity) and `OrderConfirmed` / `OrderCancelled` (the sold orders that the
//! customer segments are read from). No event carries personal data: the audit log and any other
//! consumer learn that something changed, and read the profile through the API if they may.

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use ordermesh_platform::convert::{from_timestamp, timestamp};
use ordermesh_platform::events::{EventMessage, HandlerError, OutgoingEvent, ReceivedEvent, TopicHandler, Tx};
use ordermesh_platform::gdpr::ERASURE_PARTICIPANTS;
use ordermesh_platform::{Origin, validate};
use ordermesh_proto::customer as pb;
use ordermesh_proto::event_types::{GdprEvent, OrderEvent};
use ordermesh_proto::events as ev;
use uuid::Uuid;

use crate::store::Store;

use crate::domain::{self, Consent, Customer, DataExport, Erasure, Sale};

/// Source of the events customer-svc publishes.
pub const SOURCE: &str = "customer-svc";

fn occurred_now() -> Option<prost_types::Timestamp> {
    Some(timestamp(domain::now()))
}

/// `CustomerCreated` (aggregate id = customer id).
pub fn customer_created(customer: &Customer, origin: &Origin) -> OutgoingEvent {
    let message = ev::CustomerCreated {
        customer_id: customer.id.to_string(),
        identity_linked: customer.identity.is_some(),
        actor: Some((&origin.actor).into()),
        occur_time: occurred_now(),
    };
    customer_event(customer.id, &origin.correlation_id, &message)
}

/// `CustomerUpdated` with the names of the fields that changed from `before` to `after`.
pub fn customer_updated(before: &Customer, after: &Customer, origin: &Origin) -> OutgoingEvent {
    let message = ev::CustomerUpdated {
        customer_id: after.id.to_string(),
        changed_fields: domain::changed_fields(before, after),
        status: pb::CustomerStatus::from(after.status) as i32,
        version: after.version,
        actor: Some((&origin.actor).into()),
        occur_time: occurred_now(),
    };
    customer_event(after.id, &origin.correlation_id, &message)
}

/// `ConsentRecorded` (aggregate id = customer id): the purpose and the decision, as recorded.
pub fn consent_recorded(consent: &Consent, correlation_id: &str) -> OutgoingEvent {
    let message = ev::ConsentRecorded {
        customer_id: consent.customer_id.to_string(),
        consent_id: consent.id.to_string(),
        purpose: consent.purpose.clone(),
        granted: consent.granted,
        policy_version: consent.policy_version.clone(),
        actor: Some((&consent.recorded_by).into()),
        occur_time: Some(timestamp(consent.record_time)),
    };
    customer_event(consent.customer_id, correlation_id, &message)
}

/// `ErasureRequested` (gdpr-events): every participant erases its copy on it.
pub fn erasure_requested(erasure: &Erasure, correlation_id: &str) -> OutgoingEvent {
    let message = ev::ErasureRequested {
        customer_id: erasure.customer_id.to_string(),
        erasure_request_id: erasure.id.to_string(),
        reason: erasure.reason.clone(),
        actor: Some((&erasure.requested_by).into()),
        occur_time: Some(timestamp(erasure.request_time)),
    };
    customer_event(erasure.customer_id, correlation_id, &message)
}

/// `CustomerErased` (gdpr-events): every participant has confirmed.
pub fn customer_erased(erasure: &Erasure, correlation_id: &str) -> OutgoingEvent {
    let message = ev::CustomerErased {
        customer_id: erasure.customer_id.to_string(),
        erasure_request_id: erasure.id.to_string(),
        actor: Some((&erasure.requested_by).into()),
        occur_time: erasure.complete_time.map(timestamp),
    };
    customer_event(erasure.customer_id, correlation_id, &message)
}

/// `CustomerDataExported` (gdpr-events): the bundle of `export` is ready.
pub fn data_exported(export: &DataExport) -> OutgoingEvent {
    let message = ev::CustomerDataExported {
        customer_id: export.customer_id.to_string(),
        export_id: export.id.to_string(),
        actor: Some((&export.requested_by).into()),
        occur_time: export.complete_time.map(timestamp),
    };
    customer_event(export.customer_id, &export.correlation_id, &message)
}

fn customer_event<E: EventMessage>(customer_id: Uuid, correlation_id: &str, message: &E) -> OutgoingEvent {
    OutgoingEvent::of(SOURCE, &customer_id.to_string(), correlation_id, message)
}

/// Counts the participants' `ErasureCompleted` confirmations; the last one makes the customer
/// ERASED (see [`Store::confirm_erasure`]).
pub struct ErasureConfirmations {
    store: Store,
}

impl ErasureConfirmations {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl TopicHandler<GdprEvent> for ErasureConfirmations {
    async fn handle(&self, event: GdprEvent, envelope: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        let GdprEvent::ErasureCompleted(done) = event else {
            return Ok(());
        };
        let erasure_id = Uuid::parse_str(&done.erasure_request_id)
            .map_err(|_| HandlerError::permanent(anyhow::anyhow!("ErasureCompleted without a valid request id")))?;
        let participants = ERASURE_PARTICIPANTS.map(|w| w.service());
        if !participants.contains(&done.service.as_str()) {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "ErasureCompleted from {:?}, which is no participant of erasures",
                done.service
            )));
        }
        let confirmed = self
            .store
            .confirm_erasure(tx, erasure_id, &done.service, &participants, &envelope.correlation_id)
            .await?;
        match confirmed {
            Some(erasure) if erasure.complete_time.is_some() => {
                tracing::info!(customer_id = %erasure.customer_id, %erasure_id, "customer erased everywhere");
            }
            Some(erasure) => {
                tracing::info!(customer_id = %erasure.customer_id, %erasure_id, service = %done.service,
                    pending = ?erasure.pending(&participants), "erasure confirmed by a service");
            }
            None => tracing::warn!(%erasure_id, "confirmation of an unknown erasure request ignored"),
        }
        Ok(())
    }

    /// Writes only to this service's store: batched deliveries share a transaction.
    fn shares_transactions(&self) -> bool {
        true
    }
}

/// What customer-svc keeps of `order-events`: a placed order is activity of its customer (see
/// `ordermesh housekeeping inactive-customers`); a confirmed order is a sale and a cancellation
/// after confirmation takes it back (the segments, see [`Store::record_sale`]). Events of
/// customers unknown here or erased change nothing. Repeats change nothing either: the inbox
/// absorbs a redelivery, the store a second event about the same order.
pub struct OrderEventsHandler {
    store: Store,
}

impl OrderEventsHandler {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn customer_id(event: &str, value: &str) -> Result<Uuid, HandlerError> {
    Uuid::parse_str(value).map_err(|_| HandlerError::permanent(anyhow::anyhow!("{event} without a valid customer id")))
}

fn order_id(event: &str, value: &str) -> Result<Uuid, HandlerError> {
    Uuid::parse_str(value).map_err(|_| HandlerError::permanent(anyhow::anyhow!("{event} without a valid order id")))
}

/// When an order event happened: its own time, else the envelope's. Microseconds, as both stores
/// keep times.
fn occurred(at: Option<&prost_types::Timestamp>, envelope: &ReceivedEvent) -> DateTime<Utc> {
    at.and_then(from_timestamp)
        .unwrap_or(envelope.occur_time)
        .trunc_subsecs(6)
}

/// The sale an `OrderConfirmed` is.
pub fn sale(confirmed: &ev::OrderConfirmed, envelope: &ReceivedEvent) -> Result<Sale, HandlerError> {
    let total = confirmed.total.as_ref();
    let (currency_code, amount_minor) =
        total.map_or((String::new(), -1), |t| (t.currency_code.clone(), t.amount_minor));
    if !validate::is_currency_code(&currency_code) || amount_minor < 0 {
        return Err(HandlerError::permanent(anyhow::anyhow!(
            "OrderConfirmed without a valid total"
        )));
    }
    Ok(Sale {
        order_id: order_id("OrderConfirmed", &confirmed.order_id)?,
        customer_id: customer_id("OrderConfirmed", &confirmed.customer_id)?,
        currency_code,
        amount_minor,
        sold_time: occurred(confirmed.occur_time.as_ref(), envelope),
    })
}

#[async_trait]
impl TopicHandler<OrderEvent> for OrderEventsHandler {
    async fn handle(&self, event: OrderEvent, envelope: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        match event {
            OrderEvent::OrderPlaced(placed) => {
                let customer_id = customer_id("OrderPlaced", &placed.customer_id)?;
                self.store.touch_activity_in(tx, customer_id, domain::now()).await?;
            }
            OrderEvent::OrderConfirmed(confirmed) => {
                let sale = sale(&confirmed, envelope)?;
                let change = self.store.record_sale(tx, &sale).await?;
                tracing::debug!(customer_id = %sale.customer_id, order_id = %sale.order_id, ?change, "sale recorded");
            }
            // Only an order that was sold has anything to take back: the store finds out.
            OrderEvent::OrderCancelled(cancelled) => {
                let customer_id = customer_id("OrderCancelled", &cancelled.customer_id)?;
                let order_id = order_id("OrderCancelled", &cancelled.order_id)?;
                let at = occurred(cancelled.occur_time.as_ref(), envelope);
                let change = self.store.cancel_sale(tx, customer_id, order_id, at).await?;
                tracing::debug!(%customer_id, %order_id, ?change, "cancellation recorded");
            }
            _ => {}
        }
        Ok(())
    }

    /// Writes only to this service's store: batched deliveries share a transaction.
    fn shares_transactions(&self) -> bool {
        true
    }
}
