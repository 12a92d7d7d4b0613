//! payment-svc's part of the GDPR rights: its section of a customer's export, and its step of
//! the erasure saga. Payments hold no card data (the gateway keeps the payment method; the
//! token reaches payment-svc only inside a charge request), so erasure anonymises what people
//! typed — refund reasons — and keeps amounts, statuses, references and dates for accounting.
//! Refunds of orders that the erasure cancels follow from `OrderCancelled` as usual.

use async_trait::async_trait;
use ordermesh_platform::ServiceError;
use ordermesh_platform::events::{HandlerError, ReceivedEvent, Tx};
use ordermesh_platform::gdpr::{Erase, PersonalData};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::{PaymentFilter, PaymentView};
use crate::store::Store;

/// Page size while collecting a customer's payments for an export.
const PAGE: usize = 200;

#[derive(Clone)]
pub struct PaymentPersonalData {
    store: Store,
}

impl PaymentPersonalData {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Erase for PaymentPersonalData {
    async fn erase(&self, tx: &mut Tx, customer_id: Uuid, _: &ReceivedEvent) -> Result<(), HandlerError> {
        let refunds = self.store.anonymise_customer(tx, customer_id).await?;
        tracing::info!(%customer_id, refunds, "payments anonymised");
        Ok(())
    }
}

#[async_trait]
impl PersonalData for PaymentPersonalData {
    async fn export(&self, customer_id: Uuid) -> Result<Value, ServiceError> {
        let filter = PaymentFilter {
            customer_id: Some(customer_id),
            ..Default::default()
        };
        let mut payments = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.list_payments(&filter, after, PAGE).await?;
            let full = page.len() == PAGE;
            after = page.last().map(|v| v.payment.id);
            payments.extend(page.iter().map(payment_json));
            if !full {
                break;
            }
        }
        Ok(json!({ "payments": payments }))
    }
}

fn payment_json(view: &PaymentView) -> Value {
    let p = &view.payment;
    json!({
        "id": p.id,
        "orderId": p.order_id,
        "amountMinor": p.amount.amount_minor,
        "currency": p.amount.currency_code,
        "capturedMinor": p.captured_minor,
        "refundedMinor": p.refunded_minor,
        "status": p.status.as_str(),
        "declineReason": p.decline_reason,
        "createTime": p.create_time,
        "updateTime": p.update_time,
        "transactions": view.transactions.iter().map(|t| json!({
            "id": t.id, "kind": t.kind.as_str(), "amountMinor": t.amount_minor, "status": t.status.as_str(),
            "failureReason": t.failure_reason, "createTime": t.create_time,
        })).collect::<Vec<_>>(),
        "refunds": view.refunds.iter().map(|r| json!({
            "id": r.id, "amountMinor": r.amount_minor, "reason": r.reason, "status": r.status.as_str(),
            "createTime": r.create_time, "updateTime": r.update_time,
        })).collect::<Vec<_>>(),
    })
}
