//! The proto forms of the audit service's own types: entries, and `details` as a
//! `google.protobuf.Struct`. Times and actors convert through `ordermesh_platform::convert`.

pub use ordermesh_platform::convert::{from_struct, timestamp, to_struct};
use ordermesh_proto::audit as pb;

use crate::domain::Entry;

impl From<&Entry> for pb::AuditEntry {
    fn from(entry: &Entry) -> Self {
        Self {
            id: entry.id.to_string(),
            sequence: entry.sequence,
            actor: Some((&entry.actor).into()),
            action: entry.action.clone(),
            entity_type: entry.entity_type.clone(),
            entity_id: entry.entity_id.clone(),
            data_subject_id: entry.data_subject_id.clone(),
            correlation_id: entry.correlation_id.clone(),
            occur_time: Some(timestamp(entry.occur_time)),
            record_time: Some(timestamp(entry.record_time)),
            details: Some(to_struct(&entry.details_value())),
            source_service: entry.source_service.clone(),
            event_id: entry.event_id.clone().unwrap_or_default(),
            previous_hash: entry.previous_hash.clone(),
            hash: entry.hash.clone(),
        }
    }
}
