//! notification-svc's part of the GDPR rights: its section of a customer's export (the
//! customer's notifications with their read state, and its notification preferences), and its
//! step of the erasure saga, which deletes them: unlike orders and payments, nothing here must be
//! kept for accounting.

use async_trait::async_trait;
use ordermesh_platform::ServiceError;
use ordermesh_platform::events::{HandlerError, ReceivedEvent, Tx};
use ordermesh_platform::gdpr::{Erase, PersonalData};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::{self, Channel, Kind};
use crate::store::Store;

#[derive(Clone)]
pub struct NotificationPersonalData {
    store: Store,
}

impl NotificationPersonalData {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Erase for NotificationPersonalData {
    async fn erase(&self, tx: &mut Tx, customer_id: Uuid, _: &ReceivedEvent) -> Result<(), HandlerError> {
        let deleted = self.store.forget_customer(tx, customer_id).await?;
        tracing::info!(%customer_id, notifications = deleted, "notifications of an erased customer deleted");
        Ok(())
    }
}

#[async_trait]
impl PersonalData for NotificationPersonalData {
    async fn export(&self, customer_id: Uuid) -> Result<Value, ServiceError> {
        let notifications = self.store.of_customer(customer_id).await?;
        let preferences = self.store.preferences(&domain::customer_key(customer_id)).await?;
        Ok(json!({
            "notifications": notifications.iter().map(|n| json!({
                "id": n.id.to_string(), "type": n.kind.as_str(), "title": n.title, "body": n.body, "data": n.data,
                "createTime": n.created_at, "readTime": n.read_at,
            })).collect::<Vec<_>>(),
            "preferences": preferences.map(|p| json!({
                "channels": p.channels.iter().map(|c| Channel::as_str(*c)).collect::<Vec<_>>(),
                "mutedTypes": p.muted.iter().map(|k| Kind::as_str(*k)).collect::<Vec<_>>(),
                "updateTime": p.updated_at,
            })),
        }))
    }
}
