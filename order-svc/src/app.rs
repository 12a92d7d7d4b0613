//! Applying a saga input or a command to a stored order: decide with the domain's state
//! machine, write the change compare-and-set, record history, enqueue the events — all in the
//! caller's transaction.

use chrono::Utc;
use ordermesh_platform::ServiceError;
use ordermesh_platform::events::Tx;
use uuid::Uuid;

use crate::domain::{Compensation, HistoryEntry, Order, SagaInput, Transition, TransitionFields, transition};
use crate::{events, store};

/// What applying an input did.
#[derive(Debug)]
pub enum Applied {
    /// The order moved; `order` is its new state.
    Moved { order: Order, then: Vec<Compensation> },
    /// Late or repeated input: nothing changed.
    Ignored { order: Order, then: Vec<Compensation> },
}

impl Applied {
    pub fn order(&self) -> &Order {
        match self {
            Applied::Moved { order, .. } | Applied::Ignored { order, .. } => order,
        }
    }
}

fn fields_for(input: &SagaInput) -> TransitionFields {
    match input {
        SagaInput::StockRejected { reason } => TransitionFields {
            rejection_code: Some("OUT_OF_STOCK".into()),
            rejection_reason: Some(reason.clone()),
            ..Default::default()
        },
        SagaInput::PaymentDeclined { reason } => TransitionFields {
            rejection_code: Some("PAYMENT_DECLINED".into()),
            rejection_reason: Some(reason.clone()),
            ..Default::default()
        },
        SagaInput::PaymentCaptured { payment_id } => TransitionFields {
            payment_id: Some(payment_id.clone()),
            ..Default::default()
        },
        SagaInput::Ship {
            carrier,
            tracking_number,
        } => TransitionFields {
            carrier: Some(carrier.clone()),
            tracking_number: Some(tracking_number.clone()),
            ..Default::default()
        },
        SagaInput::Cancel { reason } => TransitionFields {
            cancellation_reason: Some(reason.clone()),
            ..Default::default()
        },
        SagaInput::StockReserved | SagaInput::Deliver => TransitionFields::default(),
    }
}

/// Applies `input` to order `order_id` inside `tx`. NOT_FOUND for an unknown order,
/// FAILED_PRECONDITION for an illegal transition, ABORTED if the order kept changing under us.
pub async fn apply(
    tx: &mut Tx,
    order_id: Uuid,
    input: &SagaInput,
    actor: &str,
    cause_event_id: Option<&str>,
) -> Result<Applied, ServiceError> {
    for _ in 0..3 {
        let mut order = store::get_in_tx(tx, order_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("order", order_id))?;
        let (to, reason, then) = match transition(order.status, input) {
            Ok(Transition::Moved { to, reason, then }) => (to, reason, then),
            Ok(Transition::Ignored { then }) => return Ok(Applied::Ignored { order, then }),
            Err(error) => return Err(ServiceError::precondition(error.reason(), error.to_string())),
        };
        let now = Utc::now();
        let fields = fields_for(input);
        let entry = HistoryEntry {
            seq: order.history.iter().map(|h| h.seq).max().unwrap_or(0) + 1,
            from: Some(order.status),
            to,
            reason: reason.clone(),
            actor: actor.to_owned(),
            cause_event_id: cause_event_id.map(str::to_owned),
            changed_at: now,
        };
        if !store::apply_transition(tx, &order, to, &fields, &entry, now).await? {
            continue;
        }
        let from = order.status;
        order.status = to;
        order.version += 1;
        order.updated_at = now;
        let TransitionFields {
            rejection_code,
            rejection_reason,
            cancellation_reason,
            payment_id,
            carrier,
            tracking_number,
        } = fields;
        order.rejection_code = rejection_code.or(order.rejection_code);
        order.rejection_reason = rejection_reason.or(order.rejection_reason);
        order.cancellation_reason = cancellation_reason.or(order.cancellation_reason);
        order.payment_id = payment_id.or(order.payment_id);
        order.carrier = carrier.or(order.carrier);
        order.tracking_number = tracking_number.or(order.tracking_number);
        order.history.push(entry);
        for event in events::transitioned(&order, from, reason.as_deref(), actor) {
            tx.enqueue(&event).await?;
        }
        return Ok(Applied::Moved { order, then });
    }
    Err(ServiceError::Aborted(
        "the order changed concurrently; try again".into(),
    ))
}
