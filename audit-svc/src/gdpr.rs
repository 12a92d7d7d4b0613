//! audit-svc's part of a customer's data export: the audit trail about the customer (entries
//! naming it as the data subject or as the entity). audit-svc takes no part in erasures: its
//! entries carry ids, never personal data, and its log is append-only.

use async_trait::async_trait;
use ordermesh_platform::ServiceError;
use ordermesh_platform::gdpr::PersonalData;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::{Entry, page_key};
use crate::store::Store;

/// Entries read per page while collecting a trail.
const PAGE: usize = 500;

pub struct AuditTrail {
    store: Store,
}

impl AuditTrail {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl PersonalData for AuditTrail {
    async fn export(&self, customer_id: Uuid) -> Result<Value, ServiceError> {
        let customer = customer_id.to_string();
        let mut entries = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.gdpr_trail(&customer, after, PAGE).await?;
            let full = page.len() == PAGE;
            after = page.last().map(page_key);
            entries.extend(page.iter().map(entry_json));
            if !full {
                break;
            }
        }
        Ok(json!({ "entries": entries }))
    }
}

fn entry_json(entry: &Entry) -> Value {
    // Details are canonical JSON text; kept as a value so the bundle stays one document.
    let details: Value = serde_json::from_str(&entry.details).unwrap_or(Value::String(entry.details.clone()));
    json!({
        "id": entry.id,
        "sequence": entry.sequence,
        "action": entry.action,
        "entityType": entry.entity_type,
        "entityId": entry.entity_id,
        "actorKind": entry.actor.kind.as_str(),
        "sourceService": entry.source_service,
        "occurTime": entry.occur_time,
        "details": details,
    })
}
