//! order-svc's side of the saga (DESIGN §2), as event handlers:
//!
//! - `inventory-events`: StockReserved → RESERVED, StockRejected → REJECTED.
//! - `order-events` (its own): an order that became RESERVED is charged through payment-svc
//!   (idempotency key `order-<id>-charge`, so redeliveries and restarts never charge twice);
//!   the answer moves it to CONFIRMED or REJECTED. While payment-svc is unreachable the event
//!   is retried with backoff and the order waits in RESERVED.
//!
//! Refunds of cancelled paid orders are payment-svc's reaction to `OrderCancelled`; stock
//! release is product-svc's reaction to `OrderRejected`/`OrderCancelled`.

use std::sync::Arc;

use async_trait::async_trait;
use ordermesh_platform::ServiceError;
use ordermesh_platform::client::{CallContext, peer_error};
use ordermesh_platform::events::{HandlerError, ReceivedEvent, TopicHandler, Tx};
use ordermesh_proto::event_types::{InventoryEvent, OrderEvent};
use ordermesh_proto::order::OrderStatus as ProtoStatus;
use ordermesh_proto::payment::{AuthorizePaymentRequest, Payment, PaymentStatus, RefundPaymentRequest};
use uuid::Uuid;

use crate::app::{self, Applied};
use crate::convert::total;
use crate::domain::{Compensation, Order, OrderStatus, SagaInput};
use crate::peers::Peers;
use crate::store::Store;

fn order_id(raw: &str) -> Result<Uuid, HandlerError> {
    Uuid::parse_str(raw).map_err(|_| HandlerError::permanent(anyhow::anyhow!("event has no valid order id")))
}

/// Applies a saga input; an event about an order this service does not have is acknowledged
/// and logged, not retried forever.
async fn apply(
    store: &Store,
    tx: &mut Tx,
    order_id: Uuid,
    input: SagaInput,
    actor: &str,
    event: &ReceivedEvent,
) -> Result<Option<Applied>, HandlerError> {
    match app::apply(store, tx, order_id, &input, actor, Some(&event.id.to_string())).await {
        Ok(applied) => Ok(Some(applied)),
        Err(ServiceError::NotFound { .. }) => {
            tracing::warn!(%order_id, event_type = event.short_type(), "event for an unknown order ignored");
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

/// Reacts to product-svc's reservation outcome.
pub struct InventoryHandler {
    store: Store,
}

impl InventoryHandler {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl TopicHandler<InventoryEvent> for InventoryHandler {
    async fn handle(&self, event: InventoryEvent, envelope: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        let (order, input) = match event {
            InventoryEvent::StockReserved(message) => (message.order_id, SagaInput::StockReserved),
            InventoryEvent::StockRejected(message) => {
                let reason = if message.reason.is_empty() {
                    "insufficient stock".to_owned()
                } else {
                    message.reason
                };
                (message.order_id, SagaInput::StockRejected { reason })
            }
            // Releases, commits, adjustments and catalogue changes are not saga steps.
            _ => return Ok(()),
        };
        apply(&self.store, tx, order_id(&order)?, input, "service:product", envelope).await?;
        Ok(())
    }

    /// Writes only to this service's store: batched deliveries share a transaction.
    fn shares_transactions(&self) -> bool {
        true
    }
}

/// Charges reserved orders.
pub struct PaymentStep {
    store: Store,
    peers: Arc<Peers>,
}

impl PaymentStep {
    pub fn new(store: Store, peers: Arc<Peers>) -> Self {
        Self { store, peers }
    }

    /// Charges `order` (idempotently: one charge per order, whatever the redeliveries).
    async fn charge(&self, context: &CallContext, order: &Order) -> Result<Payment, HandlerError> {
        let request = context.request(AuthorizePaymentRequest {
            order_id: order.id.to_string(),
            customer_id: order.customer_id.to_string(),
            amount: Some(total(order)),
            payment_method_token: order.payment_method_token.clone(),
            idempotency_key: format!("order-{}-charge", order.id),
            capture: true,
        });
        // Every failure but a refusal of our credentials is retried: the order waits in
        // RESERVED until payment-svc answers.
        self.peers
            .payment
            .clone()
            .authorize_payment(request)
            .await
            .map_err(|status| peer_error("payment-svc", status))?
            .into_inner()
            .payment
            .ok_or_else(|| HandlerError::permanent(anyhow::anyhow!("payment-svc answered without a payment")))
    }

    /// Gives back a charge that completed after order `order_id` was cancelled.
    async fn refund_late_charge(
        &self,
        context: &CallContext,
        order_id: Uuid,
        payment: Payment,
    ) -> Result<(), HandlerError> {
        let request = context.request(RefundPaymentRequest {
            amount: payment.captured_amount,
            payment_id: payment.id,
            reason: "order cancelled before payment completed".into(),
            idempotency_key: format!("order-{order_id}-late-refund"),
        });
        self.peers.payment.clone().refund_payment(request).await?;
        Ok(())
    }
}

#[async_trait]
impl TopicHandler<OrderEvent> for PaymentStep {
    async fn handle(&self, event: OrderEvent, envelope: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        let OrderEvent::OrderStatusChanged(message) = event else {
            return Ok(());
        };
        if message.to_status != ProtoStatus::Reserved as i32 {
            return Ok(());
        }
        let id = order_id(&message.order_id)?;
        // Read outside the handler's transaction: only a still-RESERVED order is charged.
        let Some(order) = self.store.get(id).await? else {
            return Ok(());
        };
        if order.status != OrderStatus::Reserved {
            return Ok(());
        }
        let context = self.peers.as_service(&order.correlation_id)?;
        let payment = self.charge(&context, &order).await?;
        let input = if payment.status == PaymentStatus::Captured as i32 {
            SagaInput::PaymentCaptured {
                payment_id: payment.id.clone(),
            }
        } else {
            let reason = if payment.decline_reason.is_empty() {
                "payment declined".into()
            } else {
                payment.decline_reason.clone()
            };
            SagaInput::PaymentDeclined { reason }
        };
        let applied = apply(&self.store, tx, id, input, "service:payment", envelope).await?;
        // Captured after the order was cancelled meanwhile: give the money back. Ignoring the
        // capture wrote nothing, so the transaction is ended before the call to payment-svc
        // (no lock is held across it); the inbox row then commits in a new one.
        if let Some(Applied::Ignored { then, .. }) = applied
            && then.contains(&Compensation::Refund)
        {
            tx.release().await?;
            self.refund_late_charge(&context, id, payment).await?;
        }
        Ok(())
    }
}
