//! product-svc's part of the order saga (DESIGN §2–3): the consumer of `order-events`.
//!
//! | received (`order-events`)         | effect                        | published (`inventory-events`)   |
//! |-----------------------------------|-------------------------------|----------------------------------|
//! | `OrderPlaced`                     | reserve every line or none    | `StockReserved` / `StockRejected` |
//! | `OrderRejected`, `OrderCancelled` | release the reservation       | `StockReleased`                  |
//! | `OrderShipped`                    | commit the reservation        | `StockCommitted`                 |
//!
//! Every effect runs in the consumer's [`Tx`], together with the inbox row and the outgoing event,
//! so the stock change and its announcement commit (or roll back) as one. A redelivered event is
//! absorbed by the inbox; on top of that each store operation is idempotent per order id, so a
//! second `OrderPlaced` for the same order (another event id) re-reads the stored outcome and
//! publishes the same answer without touching stock.
//!
//! Events of one order can be handled out of order (an event waiting for its retry does not hold
//! back the later ones), so a cancel may come before its placement: the release then leaves a
//! tombstone, and the late `OrderPlaced` reserves nothing and publishes nothing (the order is
//! already cancelled or rejected, nobody waits for an answer).
//!
//! Catalogue and stock writes publish `ProductCreated`, `ProductUpdated` and `StockAdjusted`
//! (built here) through the outbox, in the transaction of the write (see the store).

use async_trait::async_trait;
use ordermesh_platform::ServiceError;
use ordermesh_platform::convert::timestamp;
use ordermesh_platform::events::{EventMessage, HandlerError, OutgoingEvent, ReceivedEvent, TopicHandler, Tx};
use ordermesh_proto::event_types::OrderEvent;
use ordermesh_proto::events as ev;
use uuid::Uuid;

use crate::convert;
use crate::domain::{
    self, Adjustment, LowStock, Origin, Product, Reservation, ReservationStatus, StockLevel, StockLine,
};
use crate::store;

/// Source of the events product-svc publishes.
pub const SOURCE: &str = "product-svc";

/// Handles `order-events` (aggregate id = order id).
#[derive(Debug, Default, Clone)]
pub struct OrderEventsHandler {
    /// When a reservation makes a product low on stock.
    pub low_stock: LowStock,
}

#[async_trait]
impl TopicHandler<OrderEvent> for OrderEventsHandler {
    async fn handle(&self, event: OrderEvent, envelope: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        match event {
            OrderEvent::OrderPlaced(placed) => {
                let order_id = order_id(&placed.order_id)?;
                on_placed(envelope, tx, order_id, &lines(&placed)?, self.low_stock).await
            }
            OrderEvent::OrderRejected(rejected) => {
                on_release(envelope, tx, order_id(&rejected.order_id)?, "order rejected").await
            }
            OrderEvent::OrderCancelled(cancelled) => {
                on_release(envelope, tx, order_id(&cancelled.order_id)?, "order cancelled").await
            }
            OrderEvent::OrderShipped(shipped) => on_shipped(envelope, tx, order_id(&shipped.order_id)?).await,
            // The rest of the order's lifecycle does not concern stock.
            OrderEvent::OrderStatusChanged(_) | OrderEvent::OrderConfirmed(_) | OrderEvent::OrderDelivered(_) => Ok(()),
        }
    }

    /// Writes only to this service's store: batched deliveries share a transaction. On
    /// PostgreSQL two lanes' batches can lock the same products in opposite orders; the server
    /// detects the deadlock, one batch is rolled back and its events are handled one by one.
    fn shares_transactions(&self) -> bool {
        true
    }
}

async fn on_placed(
    envelope: &ReceivedEvent,
    tx: &mut Tx,
    order_id: Uuid,
    lines: &[StockLine],
    low: LowStock,
) -> Result<(), HandlerError> {
    let reservation = store::reserve_stock_in(tx, order_id, lines, low, &envelope.correlation_id).await?;
    let answer = match reservation.status {
        ReservationStatus::Reserved => inventory_event(
            order_id,
            &envelope.correlation_id,
            &ev::StockReserved {
                order_id: order_id.to_string(),
                lines: convert::stock_lines(&reservation),
                occur_time: occurred_now(),
            },
        ),
        ReservationStatus::Rejected => {
            let reason = rejection_reason(tx, &reservation).await?;
            inventory_event(
                order_id,
                &envelope.correlation_id,
                &ev::StockRejected {
                    order_id: order_id.to_string(),
                    reason,
                    shortfalls: convert::shortfalls(&reservation),
                    occur_time: occurred_now(),
                },
            )
        }
        // Released (or tombstoned by an early cancel/rejection) or already shipped: the saga has
        // moved past this order's placement, nothing is reserved and nobody awaits an answer.
        ReservationStatus::Released | ReservationStatus::Committed => {
            tracing::info!(
                %order_id,
                status = reservation.status.as_str(),
                "OrderPlaced for an order already released or committed: nothing reserved"
            );
            return Ok(());
        }
    };
    tracing::info!(%order_id, status = reservation.status.as_str(), "stock reservation for a placed order");
    tx.enqueue(&answer).await?;
    Ok(())
}

async fn on_release(envelope: &ReceivedEvent, tx: &mut Tx, order_id: Uuid, reason: &str) -> Result<(), HandlerError> {
    let released = store::release_stock_in(tx, order_id, reason).await?;
    // A rejected reservation (nothing was reserved) or a tombstone (`None`) releases no lines;
    // StockReleased is published in every case so that the order's history shows it.
    let lines = match &released {
        Some(r) if r.status == ReservationStatus::Released => convert::stock_lines(r),
        _ => Vec::new(),
    };
    tracing::info!(%order_id, lines = lines.len(), reason, "stock released");
    let message = ev::StockReleased {
        order_id: order_id.to_string(),
        lines,
        reason: reason.to_owned(),
        occur_time: occurred_now(),
    };
    tx.enqueue(&inventory_event(order_id, &envelope.correlation_id, &message))
        .await?;
    Ok(())
}

async fn on_shipped(envelope: &ReceivedEvent, tx: &mut Tx, order_id: Uuid) -> Result<(), HandlerError> {
    let committed = match store::commit_stock_in(tx, order_id).await {
        Ok(committed) => committed,
        // Retried, not dead-lettered: the OrderPlaced of this order may still be waiting for its
        // redelivery (events of one order can be handled out of order).
        Err(error @ ServiceError::NotFound { .. }) => return Err(HandlerError::transient(error)),
        Err(error) => return Err(error.into()),
    };
    tracing::info!(%order_id, "stock committed");
    let message = ev::StockCommitted {
        order_id: order_id.to_string(),
        lines: convert::stock_lines(&committed),
        occur_time: occurred_now(),
    };
    tx.enqueue(&inventory_event(order_id, &envelope.correlation_id, &message))
        .await?;
    Ok(())
}

fn order_id(value: &str) -> Result<Uuid, HandlerError> {
    Uuid::parse_str(value).map_err(|e| HandlerError::permanent(anyhow::anyhow!("invalid order id {value:?}: {e}")))
}

/// The order's lines, merged per product and sorted by product id (the store's lock order).
fn lines(placed: &ev::OrderPlaced) -> Result<Vec<StockLine>, HandlerError> {
    if placed.items.is_empty() {
        return Err(HandlerError::permanent(anyhow::anyhow!("OrderPlaced without items")));
    }
    let mut merged = std::collections::BTreeMap::<Uuid, i32>::new();
    for item in &placed.items {
        let product_id = Uuid::parse_str(&item.product_id)
            .map_err(|e| HandlerError::permanent(anyhow::anyhow!("invalid product id {:?}: {e}", item.product_id)))?;
        if item.quantity <= 0 {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "non-positive quantity {} for product {product_id}",
                item.quantity
            )));
        }
        let quantity = merged.entry(product_id).or_default();
        *quantity = quantity
            .checked_add(item.quantity)
            .ok_or_else(|| HandlerError::permanent(anyhow::anyhow!("quantity overflow for product {product_id}")))?;
    }
    Ok(merged
        .into_iter()
        .map(|(product_id, quantity)| StockLine { product_id, quantity })
        .collect())
}

/// E.g. "insufficient stock for SKU KETTLE-1, MUG-2; unknown product 0190…". SKUs and ids only,
/// no personal data.
async fn rejection_reason(tx: &mut Tx, reservation: &Reservation) -> Result<String, HandlerError> {
    let ids: Vec<Uuid> = reservation.shortfalls.iter().map(|s| s.product_id).collect();
    let skus = store::skus_in(tx, &ids).await?;
    let sku_of = |id: Uuid| skus.iter().find(|(p, _)| *p == id).map(|(_, sku)| sku.clone());
    let mut insufficient = Vec::new();
    let mut inactive = Vec::new();
    let mut unknown = Vec::new();
    for shortfall in &reservation.shortfalls {
        let name = sku_of(shortfall.product_id).unwrap_or_else(|| shortfall.product_id.to_string());
        match shortfall.reason.as_str() {
            "PRODUCT_NOT_FOUND" => unknown.push(shortfall.product_id.to_string()),
            "PRODUCT_INACTIVE" => inactive.push(name),
            _ => insufficient.push(name),
        }
    }
    let mut parts = Vec::new();
    if !insufficient.is_empty() {
        parts.push(format!("insufficient stock for SKU {}", insufficient.join(", ")));
    }
    if !inactive.is_empty() {
        parts.push(format!("inactive product SKU {}", inactive.join(", ")));
    }
    if !unknown.is_empty() {
        parts.push(format!("unknown product {}", unknown.join(", ")));
    }
    Ok(parts.join("; "))
}

/// The `occur_time` of an event that happens now.
fn occurred_now() -> Option<prost_types::Timestamp> {
    Some(timestamp(domain::now()))
}

/// `ProductCreated` (aggregate id = product id).
pub fn product_created(product: &Product, origin: &Origin) -> OutgoingEvent {
    let message = ev::ProductCreated {
        product: Some(product.into()),
        actor: Some((&origin.actor).into()),
        occur_time: occurred_now(),
    };
    inventory_event(product.id, &origin.correlation_id, &message)
}

/// `ProductUpdated` with the product after the change and the fields that changed.
pub fn product_updated(before: &Product, after: &Product, origin: &Origin) -> OutgoingEvent {
    let message = ev::ProductUpdated {
        product: Some(after.into()),
        changed_fields: before.changed_fields(after),
        actor: Some((&origin.actor).into()),
        occur_time: occurred_now(),
    };
    inventory_event(after.id, &origin.correlation_id, &message)
}

/// `StockAdjusted` with the stock level after the adjustment (aggregate id = product id).
pub fn stock_adjusted(adjustment: &Adjustment, level: &StockLevel, low: LowStock, origin: &Origin) -> OutgoingEvent {
    let message = ev::StockAdjusted {
        product_id: adjustment.product_id.to_string(),
        delta: adjustment.delta,
        stock_level: Some(convert::stock_level(level, true, low)),
        reason: adjustment.reason.clone(),
        actor: Some((&origin.actor).into()),
        occur_time: occurred_now(),
    };
    inventory_event(adjustment.product_id, &origin.correlation_id, &message)
}

/// `StockLow`: `product_id` is down to `available` units, at or below the threshold
/// (aggregate id = product id).
pub fn stock_low(product_id: Uuid, sku: &str, available: i64, low: LowStock, correlation_id: &str) -> OutgoingEvent {
    let message = ev::StockLow {
        product_id: product_id.to_string(),
        sku: sku.to_owned(),
        available,
        threshold: low.0,
        occur_time: occurred_now(),
    };
    inventory_event(product_id, correlation_id, &message)
}

/// An event of product-svc about `aggregate_id` (an order or a product), in the business flow
/// `correlation_id` of what caused it.
fn inventory_event<E: EventMessage>(aggregate_id: Uuid, correlation_id: &str, message: &E) -> OutgoingEvent {
    OutgoingEvent::of(SOURCE, &aggregate_id.to_string(), correlation_id, message)
}
