//! What customer-svc publishes through the outbox in the transaction of the write (see the
//! store): on `customer-events` `CustomerCreated`, `CustomerUpdated` (the names of the fields that
//! changed, never their values) and `ConsentRecorded`; on `gdpr-events` `ErasureRequested`,
//! `CustomerErased` and `CustomerDataExported`. What it consumes: `ErasureCompleted`
//! ([`ErasureConfirmations`]) and `OrderPlaced` (a customer's activity, [`ActivityTracker`]). No event carries personal data: the
//! audit log and any other consumer learn that something changed, and read the profile through
//! the API if they may.

use async_trait::async_trait;
use ordermesh_platform::Origin;
use ordermesh_platform::convert::timestamp;
use ordermesh_platform::events::{EventMessage, HandlerError, OutgoingEvent, ReceivedEvent, TopicHandler, Tx};
use ordermesh_platform::gdpr::ERASURE_PARTICIPANTS;
use ordermesh_proto::customer as pb;
use ordermesh_proto::event_types::{GdprEvent, OrderEvent};
use ordermesh_proto::events as ev;
use uuid::Uuid;

use crate::store::Store;

use crate::domain::{self, Consent, Customer, DataExport, Erasure};

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

/// Records a customer's orders as activity (see `ordermesh housekeeping inactive-customers`).
pub struct ActivityTracker {
    store: Store,
}

impl ActivityTracker {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl TopicHandler<OrderEvent> for ActivityTracker {
    async fn handle(&self, event: OrderEvent, _: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        let OrderEvent::OrderPlaced(placed) = event else {
            return Ok(());
        };
        let Ok(customer_id) = Uuid::parse_str(&placed.customer_id) else {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "OrderPlaced without a valid customer id"
            )));
        };
        self.store.touch_activity_in(tx, customer_id, domain::now()).await?;
        Ok(())
    }

    /// Writes only to this service's store: batched deliveries share a transaction.
    fn shares_transactions(&self) -> bool {
        true
    }
}
