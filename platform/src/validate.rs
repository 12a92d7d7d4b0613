//! Input rules shared by several services (money, currency codes, postal addresses, ids, field
//! masks), reported
//! as field violations so a request lists all its problems at once.

use ordermesh_proto::common;
use uuid::Uuid;

use crate::error::Violations;

/// A validated amount of money: minor units of an ISO-4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency_code: String,
}

impl Money {
    pub fn to_proto(&self) -> common::Money {
        common::Money {
            amount_minor: self.amount_minor,
            currency_code: self.currency_code.clone(),
        }
    }
}

/// A postal address, as customers keep them and orders ship to them. One type and one rule set,
/// so an address an order accepts is one a customer profile would accept too.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Address {
    pub label: String,
    pub recipient_name: String,
    pub line1: String,
    pub line2: String,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    pub country_code: String,
}

impl From<&common::Address> for Address {
    fn from(a: &common::Address) -> Self {
        Self {
            label: a.label.clone(),
            recipient_name: a.recipient_name.clone(),
            line1: a.line1.clone(),
            line2: a.line2.clone(),
            city: a.city.clone(),
            region: a.region.clone(),
            postal_code: a.postal_code.clone(),
            country_code: a.country_code.clone(),
        }
    }
}

impl From<&Address> for common::Address {
    fn from(a: &Address) -> Self {
        Self {
            label: a.label.clone(),
            recipient_name: a.recipient_name.clone(),
            line1: a.line1.clone(),
            line2: a.line2.clone(),
            city: a.city.clone(),
            region: a.region.clone(),
            postal_code: a.postal_code.clone(),
            country_code: a.country_code.clone(),
        }
    }
}

/// Checks a postal address field by field (`{field}.line1`, …): line 1 and city are required,
/// every part has a bounded length and the country is an ISO 3166-1 alpha-2 code.
pub fn address(violations: &mut Violations, field: &str, a: &Address) {
    let f = |name: &str| format!("{field}.{name}");
    length(violations, &f("label"), &a.label, 0, 64);
    length(violations, &f("recipient_name"), &a.recipient_name, 0, 200);
    length(violations, &f("line1"), a.line1.trim(), 1, 200);
    length(violations, &f("line2"), &a.line2, 0, 200);
    length(violations, &f("city"), a.city.trim(), 1, 100);
    length(violations, &f("region"), &a.region, 0, 100);
    length(violations, &f("postal_code"), &a.postal_code, 0, 20);
    let country_ok = a.country_code.len() == 2 && a.country_code.bytes().all(|b| b.is_ascii_uppercase());
    violations.check(
        country_ok,
        f("country_code"),
        "must be an ISO 3166-1 alpha-2 code such as DE",
    );
}

/// Whether `code` has the shape of an ISO-4217 alphabetic code (three upper-case ASCII letters).
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// Validates a money field. `None` with a violation when it is required and absent, or when
/// its currency is malformed or (unless `allow_negative`) its amount is negative.
pub fn money(
    violations: &mut Violations,
    field: &str,
    value: Option<&common::Money>,
    required: bool,
    allow_negative: bool,
) -> Option<Money> {
    let Some(value) = value else {
        if required {
            violations.add(field, "is required");
        }
        return None;
    };
    let mut ok = true;
    if !is_currency_code(&value.currency_code) {
        violations.add(
            format!("{field}.currency_code"),
            "must be an ISO-4217 code of three upper-case letters",
        );
        ok = false;
    }
    if !allow_negative && value.amount_minor < 0 {
        violations.add(format!("{field}.amount_minor"), "must not be negative");
        ok = false;
    }
    ok.then(|| Money {
        amount_minor: value.amount_minor,
        currency_code: value.currency_code.clone(),
    })
}

/// Parses a required UUID field; records a violation and returns `None` when it is empty or
/// malformed.
pub fn uuid(violations: &mut Violations, field: &str, value: &str) -> Option<Uuid> {
    if value.is_empty() {
        violations.add(field, "is required");
        return None;
    }
    match Uuid::parse_str(value) {
        Ok(id) => Some(id),
        Err(_) => {
            violations.add(field, "must be a UUID");
            None
        }
    }
}

/// Parses an optional UUID field (empty → `None` without a violation).
pub fn optional_uuid(violations: &mut Violations, field: &str, value: &str) -> Option<Uuid> {
    if value.is_empty() {
        None
    } else {
        uuid(violations, field, value)
    }
}

/// Checks a string's length in characters.
pub fn length(violations: &mut Violations, field: &str, value: &str, min: usize, max: usize) {
    let len = value.chars().count();
    if len < min {
        violations.add(
            field,
            if min == 1 {
                "is required".to_owned()
            } else {
                format!("must have at least {min} characters")
            },
        );
    } else if len > max {
        violations.add(field, format!("must have at most {max} characters"));
    }
}

/// The paths of an update mask, each checked against `allowed` (a path is allowed when it equals
/// an entry or, for entries ending in `.*`, starts with its prefix). An absent or empty mask is a
/// violation of `update_mask`.
pub fn update_mask<'a>(
    violations: &mut Violations,
    mask: Option<&'a prost_types::FieldMask>,
    allowed: &[&str],
) -> Vec<&'a str> {
    let paths: Vec<&str> = mask
        .map(|m| m.paths.iter().map(String::as_str).collect())
        .unwrap_or_default();
    if paths.is_empty() {
        violations.add("update_mask", "must name at least one field");
    }
    for path in &paths {
        let ok = allowed.iter().any(|a| match a.strip_suffix(".*") {
            Some(prefix) => path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1),
            None => a == path,
        });
        if !ok {
            violations.add(
                "update_mask",
                format!("path {path:?} is not one of {}", allowed.join(", ")),
            );
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_rules() {
        let mut v = Violations::new();
        let ok = money(
            &mut v,
            "price",
            Some(&common::Money {
                amount_minor: 5,
                currency_code: "EUR".into(),
            }),
            true,
            false,
        );
        assert_eq!(ok.unwrap().amount_minor, 5);
        assert!(
            money(
                &mut v,
                "price",
                Some(&common::Money {
                    amount_minor: -1,
                    currency_code: "eur".into()
                }),
                true,
                false
            )
            .is_none()
        );
        assert!(money(&mut v, "price", None, true, false).is_none());
        assert!(money(&mut v, "min", None, false, false).is_none());
        let err = v.into_result().unwrap_err().to_string();
        assert!(
            err.contains("price.currency_code")
                && err.contains("price.amount_minor")
                && err.contains("price: is required"),
            "{err}"
        );
    }

    #[test]
    fn masks() {
        let mut v = Violations::new();
        let mask = prost_types::FieldMask {
            paths: vec!["name".into(), "preferences.time_zone".into()],
        };
        assert_eq!(update_mask(&mut v, Some(&mask), &["name", "preferences.*"]).len(), 2);
        assert!(v.is_empty());
        update_mask(&mut v, None, &["name"]);
        let mask = prost_types::FieldMask {
            paths: vec!["id".into()],
        };
        update_mask(&mut v, Some(&mask), &["name"]);
        assert!(v.into_result().is_err());
    }
}
