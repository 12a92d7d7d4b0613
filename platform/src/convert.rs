//! Conversions between the shared domain types (times, money, actors, JSON details) and their generated proto
//! forms, written once. Services convert their own types at their edge (`grpc`, `events`); their
//! domain modules never see a generated type.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use ordermesh_proto::common;
use serde_json::{Map, Value};

use crate::actor::{Actor, ActorKind};
use crate::validate::Money;

/// A time as a protobuf `Timestamp`.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// [`timestamp`] of an optional time.
pub fn optional_timestamp(at: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    at.map(timestamp)
}

/// The current time, in the precision both databases store (microseconds).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A protobuf `Timestamp` as a time; `None` when it is out of range or its nanos are invalid.
pub fn from_timestamp(at: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(at.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    DateTime::from_timestamp(at.seconds, nanos)
}

impl From<&Money> for common::Money {
    fn from(money: &Money) -> Self {
        Self {
            amount_minor: money.amount_minor,
            currency_code: money.currency_code.clone(),
        }
    }
}

impl From<Money> for common::Money {
    fn from(money: Money) -> Self {
        Self {
            amount_minor: money.amount_minor,
            currency_code: money.currency_code,
        }
    }
}

/// Unvalidated: use [`crate::validate::money`] on requests.
impl From<&common::Money> for Money {
    fn from(money: &common::Money) -> Self {
        Self {
            amount_minor: money.amount_minor,
            currency_code: money.currency_code.clone(),
        }
    }
}

impl From<ActorKind> for common::ActorKind {
    fn from(kind: ActorKind) -> Self {
        match kind {
            ActorKind::Unspecified => Self::Unspecified,
            ActorKind::Customer => Self::Customer,
            ActorKind::Employee => Self::Employee,
            ActorKind::Service => Self::Service,
            ActorKind::System => Self::System,
        }
    }
}

impl From<common::ActorKind> for ActorKind {
    fn from(kind: common::ActorKind) -> Self {
        match kind {
            common::ActorKind::Unspecified => Self::Unspecified,
            common::ActorKind::Customer => Self::Customer,
            common::ActorKind::Employee => Self::Employee,
            common::ActorKind::Service => Self::Service,
            common::ActorKind::System => Self::System,
        }
    }
}

/// The actor kind of a proto enum value; unknown values are `Unspecified`.
pub fn actor_kind(value: i32) -> ActorKind {
    common::ActorKind::try_from(value)
        .unwrap_or(common::ActorKind::Unspecified)
        .into()
}

impl From<&Actor> for common::Actor {
    fn from(actor: &Actor) -> Self {
        Self {
            kind: common::ActorKind::from(actor.kind) as i32,
            id: actor.id.clone(),
            roles: actor.roles.clone(),
        }
    }
}

impl From<&common::Actor> for Actor {
    fn from(actor: &common::Actor) -> Self {
        Actor::new(actor_kind(actor.kind), actor.id.clone(), actor.roles.iter().cloned())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_reject_bad_nanos() {
        let at = now();
        assert_eq!(from_timestamp(&timestamp(at)), Some(at));
        let bad = prost_types::Timestamp { seconds: 0, nanos: -1 };
        assert_eq!(from_timestamp(&bad), None);
    }

    #[test]
    fn actors_round_trip() {
        let actor = Actor::new(ActorKind::Employee, "e-1", ["admin".to_owned()]);
        let proto = common::Actor::from(&actor);
        assert_eq!(proto.kind, common::ActorKind::Employee as i32);
        assert_eq!(Actor::from(&proto), actor);
        assert_eq!(actor_kind(99), ActorKind::Unspecified);
    }

    #[test]
    fn money_round_trips() {
        let money = Money {
            amount_minor: 1234,
            currency_code: "EUR".into(),
        };
        assert_eq!(Money::from(&common::Money::from(&money)), money);
    }
}
