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
use ordermesh_platform::events::{EventHandler, HandlerError, ReceivedEvent, Tx};
use ordermesh_proto::events as ev;
use ordermesh_proto::order::OrderStatus as ProtoStatus;
use ordermesh_proto::payment::{AuthorizePaymentRequest, PaymentStatus, RefundPaymentRequest};
use uuid::Uuid;

use crate::app::{self, Applied};
use crate::domain::{Compensation, OrderStatus, SagaInput};
use crate::peers::{Peers, is_transient, peer_error};
use crate::{events, store};

fn handler_error(error: ServiceError) -> HandlerError {
    match error {
        ServiceError::Unavailable(_) | ServiceError::DeadlineExceeded | ServiceError::Aborted(_) => {
            HandlerError::transient(error)
        }
        // The store's own failures (database busy) may pass; anything else will not.
        ServiceError::Internal(_) => HandlerError::transient(error),
        other => HandlerError::permanent(other),
    }
}

fn order_id(raw: &str) -> Result<Uuid, HandlerError> {
    Uuid::parse_str(raw).map_err(|_| HandlerError::permanent(anyhow::anyhow!("event has no valid order id")))
}

/// Applies a saga input; an event about an order this service does not have is acknowledged
/// and logged, not retried forever.
async fn apply(
    tx: &mut Tx,
    order_id: Uuid,
    input: SagaInput,
    actor: &str,
    event: &ReceivedEvent,
) -> Result<Option<Applied>, HandlerError> {
    match app::apply(tx, order_id, &input, actor, Some(&event.id.to_string())).await {
        Ok(applied) => Ok(Some(applied)),
        Err(ServiceError::NotFound { .. }) => {
            tracing::warn!(%order_id, event_type = event.short_type(), "event for an unknown order ignored");
            Ok(None)
        }
        Err(error) => Err(handler_error(error)),
    }
}

/// Reacts to product-svc's reservation outcome.
pub struct InventoryHandler;

#[async_trait]
impl EventHandler for InventoryHandler {
    async fn handle(&self, event: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        match event.short_type() {
            "StockReserved" => {
                let message: ev::StockReserved = event.decode()?;
                apply(
                    tx,
                    order_id(&message.order_id)?,
                    SagaInput::StockReserved,
                    "service:product",
                    event,
                )
                .await?;
            }
            "StockRejected" => {
                let message: ev::StockRejected = event.decode()?;
                let reason = if message.reason.is_empty() {
                    "insufficient stock".to_owned()
                } else {
                    message.reason
                };
                apply(
                    tx,
                    order_id(&message.order_id)?,
                    SagaInput::StockRejected { reason },
                    "service:product",
                    event,
                )
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Charges reserved orders.
pub struct PaymentStep {
    pub db: ordermesh_platform::db::Database,
    pub peers: Arc<Peers>,
}

#[async_trait]
impl EventHandler for PaymentStep {
    async fn handle(&self, event: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        if event.short_type() != "OrderStatusChanged" {
            return Ok(());
        }
        let message: ev::OrderStatusChanged = event.decode()?;
        if message.to_status != ProtoStatus::Reserved as i32 {
            return Ok(());
        }
        let id = order_id(&message.order_id)?;
        // Read outside the handler's transaction: only a still-RESERVED order is charged.
        let Some(order) = store::get(&self.db, id).await.map_err(HandlerError::transient)? else {
            return Ok(());
        };
        if order.status != OrderStatus::Reserved {
            return Ok(());
        }
        let context = self.peers.as_service(&order.correlation_id).map_err(handler_error)?;
        let request = context.request(AuthorizePaymentRequest {
            order_id: order.id.to_string(),
            customer_id: order.customer_id.to_string(),
            amount: Some(events::money(order.total_minor, &order.currency)),
            payment_method_token: order.payment_method_token.clone(),
            idempotency_key: format!("order-{}-charge", order.id),
            capture: true,
        });
        let payment = self
            .peers
            .payment
            .clone()
            .authorize_payment(request)
            .await
            .map_err(|status| handler_error(peer_error("payment-svc", status)))?
            .into_inner()
            .payment
            .ok_or_else(|| HandlerError::permanent(anyhow::anyhow!("payment-svc answered without a payment")))?;
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
        let applied = apply(tx, id, input, "service:payment", event).await?;
        // Captured after the order was cancelled meanwhile: give the money back.
        if let Some(Applied::Ignored { then, .. }) = applied
            && then.contains(&Compensation::Refund)
        {
            let request = context.request(RefundPaymentRequest {
                amount: payment.captured_amount.clone(),
                payment_id: payment.id,
                reason: "order cancelled before payment completed".into(),
                idempotency_key: format!("order-{id}-late-refund"),
            });
            self.peers
                .payment
                .clone()
                .refund_payment(request)
                .await
                .map_err(|status| {
                    let error = peer_error("payment-svc", status);
                    if is_transient(&error) {
                        HandlerError::transient(error)
                    } else {
                        HandlerError::permanent(error)
                    }
                })?;
        }
        Ok(())
    }
}
