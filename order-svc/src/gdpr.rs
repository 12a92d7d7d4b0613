//! order-svc's part of the GDPR rights: its section of a customer's export, and its step of the
//! erasure saga.
//!
//! Erasure cancels the customer's orders that are still in flight (PENDING, RESERVED,
//! CONFIRMED) before anonymising them, rather than waiting for them to finish: a confirmed order
//! may wait days to ship, and it could not be shipped anyway once its address is erased. The
//! cancellation is the ordinary one — product-svc releases the stock, payment-svc refunds what
//! was captured — so nothing is kept that the customer paid for. Shipped and delivered orders
//! are only anonymised. Amounts, items, dates and ids stay for accounting.

use async_trait::async_trait;
use ordermesh_platform::ServiceError;
use ordermesh_platform::events::{HandlerError, ReceivedEvent, Tx};
use ordermesh_platform::gdpr::{Erase, PersonalData};
use ordermesh_proto::common::Address;
use prost::Message;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app;
use crate::domain::{Order, OrderFilter, OrderStatus, SagaInput};
use crate::store::Store;

/// The reason recorded on orders cancelled by an erasure.
pub const ERASURE_CANCELLATION: &str = "customer data erased (GDPR)";

/// Orders an erasure cancels.
const IN_FLIGHT: [OrderStatus; 3] = [OrderStatus::Pending, OrderStatus::Reserved, OrderStatus::Confirmed];

/// Page size while collecting a customer's orders for an export.
const PAGE: usize = 200;

#[derive(Clone)]
pub struct OrderPersonalData {
    store: Store,
}

impl OrderPersonalData {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Erase for OrderPersonalData {
    async fn erase(&self, tx: &mut Tx, customer_id: Uuid, envelope: &ReceivedEvent) -> Result<(), HandlerError> {
        let cancel = SagaInput::Cancel {
            reason: ERASURE_CANCELLATION.into(),
        };
        let cause = envelope.id.to_string();
        for order_id in self.store.orders_of_in(tx, customer_id, &IN_FLIGHT).await? {
            match app::apply(&self.store, tx, order_id, &cancel, "system", Some(&cause)).await {
                Ok(_) => tracing::info!(%order_id, "order cancelled by an erasure"),
                // It moved on meanwhile (shipped): it is anonymised below like any other.
                Err(ServiceError::FailedPrecondition { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        let touched = self.store.anonymise_customer(tx, customer_id).await?;
        tracing::info!(%customer_id, orders = touched, "orders anonymised");
        Ok(())
    }
}

#[async_trait]
impl PersonalData for OrderPersonalData {
    async fn export(&self, customer_id: Uuid) -> Result<Value, ServiceError> {
        let filter = OrderFilter {
            customer_id: Some(customer_id),
            ..Default::default()
        };
        let mut orders = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.list(&filter, after, PAGE).await?;
            let full = page.len() == PAGE;
            after = page.last().map(|o| (o.created_at, o.id));
            orders.extend(page.iter().map(order_json));
            if !full {
                break;
            }
        }
        Ok(json!({ "orders": orders }))
    }
}

fn order_json(order: &Order) -> Value {
    let address = order
        .shipping_address
        .as_deref()
        .and_then(|bytes| Address::decode(bytes).ok())
        .map(|a| {
            json!({
                "label": a.label, "recipientName": a.recipient_name, "line1": a.line1, "line2": a.line2,
                "city": a.city, "region": a.region, "postalCode": a.postal_code, "countryCode": a.country_code,
            })
        });
    json!({
        "id": order.id,
        "status": order.status.as_str(),
        "items": order.items.iter().map(|i| json!({
            "productId": i.product_id, "sku": i.sku, "name": i.name, "unitPriceMinor": i.unit_price_minor,
            "currency": i.currency, "quantity": i.quantity,
        })).collect::<Vec<_>>(),
        "totalMinor": order.total_minor,
        "currency": order.currency,
        "shippingAddress": address,
        "paymentId": order.payment_id,
        "rejectionReason": order.rejection_reason,
        "cancellationReason": order.cancellation_reason,
        "carrier": order.carrier,
        "trackingNumber": order.tracking_number,
        "createTime": order.created_at,
        "updateTime": order.updated_at,
        "shipTime": order.shipped_at,
        "deliverTime": order.delivered_at,
        "history": order.history.iter().map(|h| json!({
            "from": h.from.map(OrderStatus::as_str), "to": h.to.as_str(), "reason": h.reason,
            "changeTime": h.changed_at,
        })).collect::<Vec<_>>(),
    })
}
