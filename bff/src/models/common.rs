//! What the resources share: timestamps, money, addresses, actors and pages.

use chrono::{DateTime, Utc};
use ordermesh_proto::common;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::{FieldError, Problem};

pub fn time(ts: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    ts.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.clamp(0, 999_999_999) as u32))
}

/// `None` for an empty string (proto3 has no absent strings).
pub(crate) fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// Declares a page of a list: `items` and `nextPageToken` (absent on the last page), then any
/// further fields, e.g. `page!(OrderPage, Order);`.
macro_rules! page {
    ($name:ident, $item:ty $(, $field:ident: $ty:ty)* $(,)?) => {
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            pub items: Vec<$item>,
            pub next_page_token: Option<String>,
            $(pub $field: $ty,)*
        }
    };
}
pub(crate) use page;

/// An amount of money in minor units of a currency (EUR 12.34 is `{"amount": 1234, "currency": "EUR"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Minor units (cents), within the integers a JSON number holds exactly.
    #[schema(minimum = -9_007_199_254_740_991_i64, maximum = 9_007_199_254_740_991_i64)]
    pub amount: i64,
    /// ISO-4217 code, e.g. `EUR`.
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
}

impl Money {
    pub fn from_proto(m: Option<common::Money>) -> Option<Self> {
        m.map(|m| Self {
            amount: m.amount_minor,
            currency: m.currency_code,
        })
    }

    pub fn to_proto(&self) -> common::Money {
        common::Money {
            amount_minor: self.amount,
            currency_code: self.currency.clone(),
        }
    }
}

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Address {
    #[serde(default)]
    #[schema(max_length = 64)]
    pub label: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub recipient_name: String,
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub line1: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub line2: String,
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub city: String,
    #[serde(default)]
    #[schema(max_length = 100)]
    pub region: String,
    #[serde(default)]
    #[schema(max_length = 20)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    #[schema(pattern = "^[A-Z]{2}$", example = "DE")]
    pub country_code: String,
}

impl Address {
    pub fn from_proto(a: common::Address) -> Self {
        Self {
            label: a.label,
            recipient_name: a.recipient_name,
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            region: a.region,
            postal_code: a.postal_code,
            country_code: a.country_code,
        }
    }

    pub fn to_proto(&self) -> common::Address {
        common::Address {
            label: self.label.clone(),
            recipient_name: self.recipient_name.clone(),
            line1: self.line1.clone(),
            line2: self.line2.clone(),
            city: self.city.clone(),
            region: self.region.clone(),
            postal_code: self.postal_code.clone(),
            country_code: self.country_code.clone(),
        }
    }
}

/// Who performed an action.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// `customer`, `employee`, `service`, `system` or `unspecified`.
    pub kind: String,
    pub id: String,
    pub roles: Vec<String>,
}

impl Actor {
    pub fn from_proto(a: Option<common::Actor>) -> Option<Self> {
        a.map(|a| Self {
            kind: match common::ActorKind::try_from(a.kind).unwrap_or(common::ActorKind::Unspecified) {
                common::ActorKind::Unspecified => "unspecified",
                common::ActorKind::Customer => "customer",
                common::ActorKind::Employee => "employee",
                common::ActorKind::Service => "service",
                common::ActorKind::System => "system",
            }
            .to_owned(),
            id: a.id,
            roles: a.roles,
        })
    }
}

/// Problem for a body whose `field` is missing or empty.
pub fn required(field: &str) -> Problem {
    Problem::validation(vec![FieldError {
        field: field.to_owned(),
        message: "is required".to_owned(),
    }])
}
