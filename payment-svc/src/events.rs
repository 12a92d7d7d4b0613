//! What payment-svc publishes (`payment-events`, through the outbox in the transaction of the
//! state change) and what it consumes (`order-events`: the refund of cancelled paid orders).

use std::sync::Arc;

use async_trait::async_trait;
use ordermesh_platform::Actor;
use ordermesh_platform::convert::timestamp;
use ordermesh_platform::events::{EventMessage, HandlerError, OutgoingEvent, ReceivedEvent, TopicHandler, Tx};
use ordermesh_proto::event_types::OrderEvent;
use ordermesh_proto::events as ev;
use uuid::Uuid;

use crate::domain::{Payment, PaymentEvent, PaymentStatus};
use crate::service::Payments;

/// Publishing service of the events.
pub const SOURCE: &str = "payment-svc";

/// The outbox event of `event` on `payment` (its state after the change).
pub fn outgoing(payment: &Payment, event: &PaymentEvent, correlation_id: &str) -> OutgoingEvent {
    let (payment_id, order_id, customer_id) = (
        payment.id.to_string(),
        payment.order_id.to_string(),
        payment.customer_id.to_string(),
    );
    let occur_time = Some(timestamp(payment.update_time));
    let amount = Some((&payment.amount).into());
    match event {
        PaymentEvent::Authorized => on_order(
            payment,
            correlation_id,
            ev::PaymentAuthorized {
                payment_id,
                order_id,
                customer_id,
                amount,
                occur_time,
            },
        ),
        PaymentEvent::Captured { amount_minor } => on_order(
            payment,
            correlation_id,
            ev::PaymentCaptured {
                payment_id,
                order_id,
                customer_id,
                amount: Some(payment.money(*amount_minor).into()),
                occur_time,
            },
        ),
        PaymentEvent::Declined { reason } => on_order(
            payment,
            correlation_id,
            ev::PaymentDeclined {
                payment_id,
                order_id,
                customer_id,
                amount,
                decline_reason: reason.clone(),
                occur_time,
            },
        ),
        PaymentEvent::Failed { amount_minor, reason } => on_order(
            payment,
            correlation_id,
            ev::PaymentFailed {
                payment_id,
                order_id,
                customer_id,
                amount: Some(payment.money(*amount_minor).into()),
                failure_reason: reason.clone(),
                occur_time,
            },
        ),
        PaymentEvent::Refunded { refund } => on_order(
            payment,
            correlation_id,
            ev::PaymentRefunded {
                payment_id,
                refund_id: refund.id.to_string(),
                order_id,
                customer_id,
                amount: Some(payment.money(refund.amount_minor).into()),
                total_refunded: Some(payment.money(payment.refunded_minor).into()),
                fully_refunded: payment.status == PaymentStatus::Refunded,
                reason: refund.reason.clone(),
                actor: Some((&refund.requested_by).into()),
                occur_time,
            },
        ),
        PaymentEvent::Voided { reason } => on_order(
            payment,
            correlation_id,
            ev::PaymentVoided {
                payment_id,
                order_id,
                customer_id,
                amount,
                reason: reason.clone(),
                occur_time,
            },
        ),
    }
}

/// The event of `message`, with the payment's order as its aggregate: the events of one order are
/// consumed in order.
fn on_order<E: EventMessage>(payment: &Payment, correlation_id: &str, message: E) -> OutgoingEvent {
    OutgoingEvent::of(SOURCE, &payment.order_id.to_string(), correlation_id, &message)
}

/// Consumer of `order-events`: `OrderCancelled` of a paid order → refund of what remains
/// refundable (idempotency key `order-<order_id>-cancel-refund`). The other events of the order
/// are not payment-svc's concern.
pub struct OrderEventsHandler {
    payments: Arc<Payments>,
}

impl OrderEventsHandler {
    pub fn new(payments: Arc<Payments>) -> Self {
        Self { payments }
    }
}

#[async_trait]
impl TopicHandler<OrderEvent> for OrderEventsHandler {
    async fn handle(&self, event: OrderEvent, envelope: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        let OrderEvent::OrderCancelled(cancelled) = event else {
            return Ok(());
        };
        if !cancelled.was_paid {
            return Ok(());
        }
        let order_id = Uuid::parse_str(&cancelled.order_id)
            .map_err(|e| HandlerError::permanent(anyhow::anyhow!("OrderCancelled.order_id: {e}")))?;
        let payment_id = if cancelled.payment_id.is_empty() {
            None
        } else {
            Some(
                Uuid::parse_str(&cancelled.payment_id)
                    .map_err(|e| HandlerError::permanent(anyhow::anyhow!("OrderCancelled.payment_id: {e}")))?,
            )
        };
        let actor = match cancelled.actor.as_ref() {
            Some(actor) => actor.into(),
            None => Actor::service(&envelope.source),
        };
        self.payments
            .refund_cancelled_order(
                tx,
                order_id,
                payment_id,
                &actor,
                &cancelled.reason,
                &envelope.correlation_id,
            )
            .await
    }
}
