//! Audit: entries of the audit trail (admins only).

use chrono::{DateTime, Utc};
use ordermesh_proto::audit;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{Actor, non_empty, page, time};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: String,
    pub sequence: i64,
    pub actor: Option<Actor>,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub data_subject_id: Option<String>,
    pub correlation_id: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub recorded_at: Option<DateTime<Utc>>,
    pub source_service: String,
    /// Free-form details (never personal data).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl AuditEntry {
    pub fn from_proto(e: audit::AuditEntry) -> Self {
        Self {
            id: e.id,
            sequence: e.sequence,
            actor: Actor::from_proto(e.actor),
            action: e.action,
            entity_type: e.entity_type,
            entity_id: e.entity_id,
            data_subject_id: non_empty(e.data_subject_id),
            correlation_id: non_empty(e.correlation_id),
            occurred_at: time(e.occur_time),
            recorded_at: time(e.record_time),
            source_service: e.source_service,
            details: e
                .details
                .map(|s| struct_to_json(&s))
                .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
        }
    }
}

fn struct_to_json(s: &prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(s.fields.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect())
}

fn value_to_json(v: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => serde_json::Value::Array(l.values.iter().map(value_to_json).collect()),
    }
}

page!(AuditPage, AuditEntry);
