//! What customer-svc publishes on `customer-events`, through the outbox in the transaction of
//! the write (see the store): `CustomerCreated`, `CustomerUpdated` (the names of the fields that
//! changed, never their values) and `ConsentRecorded`. No event carries personal data: the
//! audit log and any other consumer learn that something changed, and read the profile through
//! the API if they may.

use ordermesh_platform::Origin;
use ordermesh_platform::convert::timestamp;
use ordermesh_platform::events::{EventMessage, OutgoingEvent};
use ordermesh_proto::customer as pb;
use ordermesh_proto::events as ev;
use uuid::Uuid;

use crate::domain::{self, Consent, Customer};

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

fn customer_event<E: EventMessage>(customer_id: Uuid, correlation_id: &str, message: &E) -> OutgoingEvent {
    OutgoingEvent::of(SOURCE, &customer_id.to_string(), correlation_id, message)
}
