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
    #[serde(skip_serializing_if = "Option::is_none")]
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
            details: serde_json::Value::Object(
                e.details
                    .as_ref()
                    .map(ordermesh_platform::convert::from_struct)
                    .unwrap_or_default(),
            ),
        }
    }
}

page!(AuditPage, AuditEntry);

/// An event an admin records in the audit trail (services record theirs over gRPC). The actor
/// is the caller; ids, codes and statuses only — details whose keys look like personal data
/// are refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordAuditEvent {
    /// Action code: 1-128 characters of `a-z`, `0-9`, `.`, `_`.
    #[schema(pattern = "^[a-z0-9._]{1,128}$", example = "catalogue.reviewed")]
    pub action: String,
    #[schema(min_length = 1, max_length = 64, example = "product")]
    pub entity_type: String,
    #[schema(min_length = 1, max_length = 128)]
    pub entity_id: String,
    /// The customer the action concerns, if it concerns personal data.
    pub data_subject_id: Option<uuid::Uuid>,
    /// A unique id making the call idempotent: a repeat returns the first entry.
    #[schema(max_length = 128)]
    pub event_id: Option<String>,
    /// Non-personal details, at most 8 KiB serialised.
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}
