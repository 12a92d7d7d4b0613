//! The proto forms of the audit service's own types: entries, and `details` as a
//! `google.protobuf.Struct`. Times and actors convert through `ordermesh_platform::convert`.

use std::collections::BTreeMap;

use ordermesh_platform::convert::timestamp;
use ordermesh_proto::audit as pb;
use serde_json::{Map, Value};

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

/// JSON → `google.protobuf.Value`.
fn to_value(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A JSON object as a `google.protobuf.Struct`.
pub fn to_struct(map: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), to_value(v)))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// `google.protobuf.Value` → JSON; whole numbers become integers (so amounts stay exact).
fn from_value(value: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(list)) => Value::Array(list.values.iter().map(from_value).collect()),
        Some(Kind::StructValue(s)) => Value::Object(from_struct(s)),
    }
}

/// A `google.protobuf.Struct` as a JSON object.
pub fn from_struct(s: &prost_types::Struct) -> Map<String, Value> {
    s.fields.iter().map(|(k, v)| (k.clone(), from_value(v))).collect()
}
