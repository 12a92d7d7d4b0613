//! What payment-svc publishes (topic `payment-events`, through the outbox in the transaction of
//! the state change) and what it consumes (`order-events`: the refund of cancelled paid orders).

use std::sync::Arc;

use async_trait::async_trait;
use ordermesh_platform::events::{EventHandler, HandlerError, OutgoingEvent, ReceivedEvent, Tx};
use ordermesh_proto::events as ev;
use uuid::Uuid;

use crate::domain::{Actor, Payment, PaymentEvent, PaymentStatus};
use crate::service::Payments;

/// Publishing service of the events.
pub const SOURCE: &str = "payment-svc";
/// Topic of the events.
pub const TOPIC: &str = "payment-events";
/// Topic consumed.
pub const ORDER_EVENTS: &str = "order-events";

fn time(t: chrono::DateTime<chrono::Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    })
}

/// The outbox event of `event` on `payment` (its state after the change). The aggregate is the
/// order, so the events of one order are consumed in order.
pub fn outgoing(payment: &Payment, event: &PaymentEvent, correlation_id: &str) -> OutgoingEvent {
    let (payment_id, order_id, customer_id) = (
        payment.id.to_string(),
        payment.order_id.to_string(),
        payment.customer_id.to_string(),
    );
    let occur_time = time(payment.update_time);
    let new = |name: &str, message: &dyn EncodeDyn| {
        OutgoingEvent::from_bytes(SOURCE, TOPIC, name, &order_id, correlation_id, message.encode())
    };
    match event {
        PaymentEvent::Authorized => new(
            "PaymentAuthorized",
            &ev::PaymentAuthorized {
                payment_id,
                order_id: order_id.clone(),
                customer_id,
                amount: Some(payment.amount.to_proto()),
                occur_time,
            },
        ),
        PaymentEvent::Captured { amount_minor } => new(
            "PaymentCaptured",
            &ev::PaymentCaptured {
                payment_id,
                order_id: order_id.clone(),
                customer_id,
                amount: Some(payment.money(*amount_minor).to_proto()),
                occur_time,
            },
        ),
        PaymentEvent::Declined { reason } => new(
            "PaymentDeclined",
            &ev::PaymentDeclined {
                payment_id,
                order_id: order_id.clone(),
                customer_id,
                amount: Some(payment.amount.to_proto()),
                decline_reason: reason.clone(),
                occur_time,
            },
        ),
        PaymentEvent::Failed { amount_minor, reason } => new(
            "PaymentFailed",
            &ev::PaymentFailed {
                payment_id,
                order_id: order_id.clone(),
                customer_id,
                amount: Some(payment.money(*amount_minor).to_proto()),
                failure_reason: reason.clone(),
                occur_time,
            },
        ),
        PaymentEvent::Refunded { refund } => new(
            "PaymentRefunded",
            &ev::PaymentRefunded {
                payment_id,
                refund_id: refund.id.to_string(),
                order_id: order_id.clone(),
                customer_id,
                amount: Some(payment.money(refund.amount_minor).to_proto()),
                total_refunded: Some(payment.money(payment.refunded_minor).to_proto()),
                fully_refunded: payment.status == PaymentStatus::Refunded,
                reason: refund.reason.clone(),
                actor: Some(refund.requested_by.to_proto()),
                occur_time,
            },
        ),
        PaymentEvent::Voided { reason } => new(
            "PaymentVoided",
            &ev::PaymentVoided {
                payment_id,
                order_id: order_id.clone(),
                customer_id,
                amount: Some(payment.amount.to_proto()),
                reason: reason.clone(),
                occur_time,
            },
        ),
    }
}

/// Object-safe encoding, so one closure builds every event.
trait EncodeDyn {
    fn encode(&self) -> Vec<u8>;
}

impl<M: prost::Message> EncodeDyn for M {
    fn encode(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

/// Consumer of `order-events`: `OrderCancelled` of a paid order → refund of what remains
/// refundable (idempotency key `order-<order_id>-cancel-refund`). Every other event type is
/// acknowledged without effect.
pub struct OrderEventsHandler {
    payments: Arc<Payments>,
}

impl OrderEventsHandler {
    pub fn new(payments: Arc<Payments>) -> Self {
        Self { payments }
    }
}

#[async_trait]
impl EventHandler for OrderEventsHandler {
    async fn handle(&self, event: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        if event.short_type() != "OrderCancelled" {
            return Ok(());
        }
        let cancelled: ev::OrderCancelled = event.decode()?;
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
            Some(actor) => Actor::from_proto(Some(actor)),
            None => Actor::service(&event.source),
        };
        self.payments
            .refund_cancelled_order(
                tx,
                order_id,
                payment_id,
                &actor,
                &cancelled.reason,
                &event.correlation_id,
            )
            .await
    }
}
