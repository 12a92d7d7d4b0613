//! The use cases behind the API and the saga: placing an order, and applying a saga input or a
//! command to a stored order — decide with the domain's state machine, write the change
//! compare-and-set, record history, enqueue the events, all in one transaction.

use chrono::Utc;
use ordermesh_platform::events::Tx;
use ordermesh_platform::{ServiceError, StoreError};
use uuid::Uuid;

use crate::domain::{
    Compensation, HistoryEntry, Order, OrderStatus, SagaInput, Transition, TransitionFields, transition,
};
use crate::events;
use crate::store::Store;

/// What placing an order did.
#[derive(Debug)]
pub enum Placed {
    /// The order was stored, with its `OrderPlaced` event.
    New(Order),
    /// The customer had placed an order with the same idempotency key: that order.
    Replay(Order),
}

/// The order `customer_id` placed earlier with idempotency key `key`, if any.
pub async fn placed_earlier(
    store: &Store,
    customer_id: Uuid,
    key: Option<&str>,
) -> Result<Option<Order>, ServiceError> {
    let Some(key) = key else { return Ok(None) };
    let Some(id) = store.find_by_idempotency_key(customer_id, key).await? else {
        return Ok(None);
    };
    let order = store
        .get(id)
        .await?
        .ok_or_else(|| ServiceError::not_found("order", id))?;
    Ok(Some(order))
}

/// Stores a new order and its `OrderPlaced` event (published by `actor`) in one transaction.
pub async fn place(store: &Store, order: Order, actor: &str) -> Result<Placed, ServiceError> {
    let mut tx = store.begin().await?;
    if let Err(error) = store.insert(&mut tx, &order).await {
        let _ = tx.rollback().await;
        // A concurrent request with the same key won the race: answer with its order.
        if let StoreError::UniqueViolation { .. } = error
            && let Some(existing) = placed_earlier(store, order.customer_id, order.idempotency_key.as_deref()).await?
        {
            return Ok(Placed::Replay(existing));
        }
        return Err(error.into());
    }
    tx.enqueue(&events::placed(&order, actor)).await?;
    tx.commit().await?;
    Ok(Placed::New(order))
}

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
    store: &Store,
    tx: &mut Tx,
    order_id: Uuid,
    input: &SagaInput,
    actor: &str,
    cause_event_id: Option<&str>,
) -> Result<Applied, ServiceError> {
    for _ in 0..3 {
        let mut order = store
            .get_in_tx(tx, order_id)
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
            seq: order.next_history_seq(),
            from: Some(order.status),
            to,
            reason: reason.clone(),
            actor: actor.to_owned(),
            cause_event_id: cause_event_id.map(str::to_owned),
            changed_at: now,
        };
        if !store.apply_transition(tx, &order, to, &fields, &entry, now).await? {
            continue;
        }
        let from = order.status;
        order.record_transition(to, fields, entry);
        for event in events::transitioned(&order, from, reason.as_deref(), actor) {
            tx.enqueue(&event).await?;
        }
        if to == OrderStatus::Confirmed {
            // The saga's latency as operators watch it; counted once the confirmation committed.
            let seconds = (now - order.created_at).to_std().unwrap_or_default().as_secs_f64();
            tx.after_commit(move || ordermesh_platform::metrics::record_confirmed(seconds));
        }
        return Ok(Applied::Moved { order, then });
    }
    Err(ServiceError::Aborted(
        "the order changed concurrently; try again".into(),
    ))
}

/// Applies a command of `actor` to order `order_id` in its own transaction; the order as it is
/// afterwards.
pub async fn command(store: &Store, order_id: Uuid, input: &SagaInput, actor: &str) -> Result<Order, ServiceError> {
    let mut tx = store.begin().await?;
    match apply(store, &mut tx, order_id, input, actor, None).await {
        Ok(applied) => {
            tx.commit().await?;
            Ok(applied.order().clone())
        }
        Err(error) => {
            let _ = tx.rollback().await;
            Err(error)
        }
    }
}
