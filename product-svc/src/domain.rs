//! Catalogue and inventory types and rules. No I/O and no generated types: everything here is
//! unit-tested directly; `grpc` and `events` convert to and from the wire.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use ordermesh_platform::validate::{self, Money};
use ordermesh_platform::{ServiceError, Violations};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The current time, truncated to microseconds so it round-trips through both databases
/// unchanged (and page tokens built from it compare equal).
pub use ordermesh_platform::convert::now;

/// Who caused a catalogue or stock write, and in which business flow.
pub use ordermesh_platform::Origin;

#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    pub id: Uuid,
    pub name: String,
    pub parent_id: Option<Uuid>,
    pub description: String,
    pub create_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category_id: Uuid,
    pub price: Money,
    pub active: bool,
    pub attributes: BTreeMap<String, String>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub version: i64,
}

impl Product {
    /// Field paths (as in `UpdateProduct`'s mask) whose values differ between `self` and `after`.
    pub fn changed_fields(&self, after: &Product) -> Vec<String> {
        let mut changed = Vec::new();
        let mut check = |name: &str, differs: bool| {
            if differs {
                changed.push(name.to_owned());
            }
        };
        check("sku", self.sku != after.sku);
        check("name", self.name != after.name);
        check("description", self.description != after.description);
        check("category_id", self.category_id != after.category_id);
        check("price", self.price != after.price);
        check("active", self.active != after.active);
        check("attributes", self.attributes != after.attributes);
        changed
    }

    /// The keyset of `ListProducts` (newest first).
    pub fn list_key(&self) -> ListCursor {
        ListCursor {
            create_time: self.create_time,
            id: self.id,
        }
    }
}

/// Position after the last product of a `ListProducts` page. In a page token the time is integer
/// microseconds; one out of range does not decode (the token is invalid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListCursor {
    #[serde(rename = "create_time_us", with = "chrono::serde::ts_microseconds")]
    pub create_time: DateTime<Utc>,
    pub id: Uuid,
}

/// Filters of `ListProducts` / `SearchProducts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProductFilter {
    pub category_id: Option<Uuid>,
    pub active: Option<bool>,
    pub min_price: Option<Money>,
    pub max_price: Option<Money>,
}

impl ProductFilter {
    /// The currency every price filter is in (they must agree).
    pub fn currency(&self) -> Option<&str> {
        self.min_price
            .as_ref()
            .or(self.max_price.as_ref())
            .map(|m| m.currency_code.as_str())
    }

    /// Records a violation unless the price bounds share a currency and are in order.
    pub fn check_price_range(&self, v: &mut Violations) {
        if let (Some(min), Some(max)) = (&self.min_price, &self.max_price) {
            if min.currency_code != max.currency_code {
                v.add("max_price.currency_code", "must equal min_price.currency_code");
            } else if min.amount_minor > max.amount_minor {
                v.add("max_price.amount_minor", "must not be below min_price.amount_minor");
            }
        }
    }
}

/// What `UpdateProduct` changes (only the masked fields are `Some`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductPatch {
    pub sku: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub category_id: Option<Uuid>,
    pub price: Option<Money>,
    pub active: Option<bool>,
    pub attributes: Option<BTreeMap<String, String>>,
}

impl ProductPatch {
    pub fn apply(&self, product: &mut Product) {
        if let Some(v) = &self.sku {
            product.sku = v.clone();
        }
        if let Some(v) = &self.name {
            product.name = v.clone();
        }
        if let Some(v) = &self.description {
            product.description = v.clone();
        }
        if let Some(v) = self.category_id {
            product.category_id = v;
        }
        if let Some(v) = &self.price {
            product.price = v.clone();
        }
        if let Some(v) = self.active {
            product.active = v;
        }
        if let Some(v) = &self.attributes {
            product.attributes = v.clone();
        }
    }
}

pub fn check_sku(v: &mut Violations, field: &str, sku: &str) {
    let ok = (1..=64).contains(&sku.len())
        && sku
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    v.check(ok, field, "must be 1-64 characters of A-Z, 0-9, '-' and '_'");
}

/// Checks the attribute limits and returns the attributes in key order.
pub fn check_attributes(v: &mut Violations, attributes: &HashMap<String, String>) -> BTreeMap<String, String> {
    if attributes.len() > 50 {
        v.add("product.attributes", "must have at most 50 entries");
    }
    for (key, value) in attributes {
        if !(1..=64).contains(&key.chars().count()) {
            v.add("product.attributes", "keys must have 1-64 characters");
        }
        if value.chars().count() > 500 {
            v.add(format!("product.attributes[{key}]"), "must have at most 500 characters");
        }
    }
    attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Validates a search text and returns its words (letters and digits, lower-cased), the form
/// both backends' full-text engines match on.
pub fn search_words(v: &mut Violations, query: &str) -> Vec<String> {
    validate::length(v, "query", query, 1, 200);
    let words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .take(32)
        .collect();
    if words.is_empty() && !query.is_empty() {
        v.add("query", "must contain at least one letter or digit");
    }
    words
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLevel {
    pub product_id: Uuid,
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub update_time: DateTime<Utc>,
}

impl StockLevel {
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

/// How much of a product can be ordered, as clients may see it (never the count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    InStock,
    Low,
    OutOfStock,
}

/// The low-stock threshold (`LOW_STOCK_THRESHOLD`): a product with at most this many units
/// available, and some, is low on stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowStock(pub i64);

impl Default for LowStock {
    fn default() -> Self {
        Self(5)
    }
}

impl LowStock {
    pub fn availability(self, available: i64) -> Availability {
        match available {
            n if n <= 0 => Availability::OutOfStock,
            n if n <= self.0 => Availability::Low,
            _ => Availability::InStock,
        }
    }

    /// Whether a change from `before` to `after` available units brings the product down to
    /// the threshold or below it (once per crossing: not again while it stays low).
    pub fn crossed(self, before: i64, after: i64) -> bool {
        before > self.0 && after <= self.0
    }
}

/// A validated `AdjustStock` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub product_id: Uuid,
    pub delta: i64,
    pub reason: String,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLine {
    pub product_id: Uuid,
    pub quantity: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortfall {
    pub product_id: Uuid,
    pub requested: i32,
    pub available: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    Reserved,
    Rejected,
    Released,
    Committed,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "RESERVED",
            Self::Rejected => "REJECTED",
            Self::Released => "RELEASED",
            Self::Committed => "COMMITTED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RESERVED" => Self::Reserved,
            "REJECTED" => Self::Rejected,
            "RELEASED" => Self::Released,
            "COMMITTED" => Self::Committed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub order_id: Uuid,
    pub status: ReservationStatus,
    pub lines: Vec<StockLine>,
    pub shortfalls: Vec<Shortfall>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// What committing or releasing does with a stored reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// It is RESERVED: move it on and apply the stock change of its lines.
    Apply,
    /// It already is where the call would take it (or was rejected and is released): answer
    /// with it unchanged, so that commit and release are idempotent.
    Unchanged,
    /// A tombstone released again: there is no reservation to answer with.
    Tombstone,
}

impl Reservation {
    /// A release that came before any reservation of the order (RELEASED, no lines): it keeps a
    /// late reserve for the same order from reserving anything.
    pub fn is_tombstone(&self) -> bool {
        self.status == ReservationStatus::Released && self.lines.is_empty()
    }

    /// The state machine of commit (`to` COMMITTED) and release (`to` RELEASED): RESERVED moves
    /// to either; a committed reservation cannot be released nor a released or rejected one
    /// committed (FAILED_PRECONDITION).
    pub fn settle(&self, to: ReservationStatus) -> Result<Settlement, ServiceError> {
        use ReservationStatus::{Committed, Rejected, Released, Reserved};
        if self.is_tombstone() {
            return match to {
                Released => Ok(Settlement::Tombstone),
                _ => Err(reservation_state(self.status, "committed")),
            };
        }
        match (self.status, to) {
            (Reserved, _) => Ok(Settlement::Apply),
            (status, to) if status == to => Ok(Settlement::Unchanged),
            (Rejected | Released, Released) => Ok(Settlement::Unchanged),
            (status, Committed) => Err(reservation_state(status, "committed")),
            (status, _) => Err(reservation_state(status, "released")),
        }
    }
}

fn reservation_state(status: ReservationStatus, action: &str) -> ServiceError {
    ServiceError::precondition(
        "RESERVATION_STATE",
        format!(
            "the reservation is {} and cannot be {action}",
            status.as_str().to_lowercase()
        ),
    )
}

/// What the store knows about one product of a reservation, read under lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockedStock {
    pub product_id: Uuid,
    pub active: bool,
    pub available: i64,
}

/// The products a reservation of `lines` (from `stock`, as locked before it) brings down to the
/// low-stock threshold, with the units left available.
pub fn became_low(lines: &[StockLine], stock: &[LockedStock], low: LowStock) -> Vec<(Uuid, i64)> {
    lines
        .iter()
        .filter_map(|line| {
            let before = stock.iter().find(|s| s.product_id == line.product_id)?.available;
            let after = before - i64::from(line.quantity);
            low.crossed(before, after).then_some((line.product_id, after))
        })
        .collect()
}

/// The all-or-nothing decision of a reservation: the shortfalls of every line that cannot be
/// reserved (empty → reserve every line). Unknown and inactive products are short too.
pub fn shortfalls(lines: &[StockLine], stock: &[LockedStock]) -> Vec<Shortfall> {
    lines
        .iter()
        .filter_map(|line| {
            let found = stock.iter().find(|s| s.product_id == line.product_id);
            let (available, reason) = match found {
                None => (0, "PRODUCT_NOT_FOUND"),
                Some(s) if !s.active => (0, "PRODUCT_INACTIVE"),
                Some(s) if s.available < i64::from(line.quantity) => (s.available, "INSUFFICIENT_STOCK"),
                Some(_) => return None,
            };
            Some(Shortfall {
                product_id: line.product_id,
                requested: line.quantity,
                available,
                reason: reason.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_is_all_or_nothing() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let lines = [
            StockLine {
                product_id: a,
                quantity: 3,
            },
            StockLine {
                product_id: b,
                quantity: 1,
            },
            StockLine {
                product_id: c,
                quantity: 1,
            },
        ];
        let stock = [
            LockedStock {
                product_id: a,
                active: true,
                available: 2,
            },
            LockedStock {
                product_id: b,
                active: false,
                available: 10,
            },
        ];
        let short = shortfalls(&lines, &stock);
        let reasons: Vec<_> = short.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(reasons, ["INSUFFICIENT_STOCK", "PRODUCT_INACTIVE", "PRODUCT_NOT_FOUND"]);
        assert_eq!(short[0].available, 2);
        let ok = [LockedStock {
            product_id: a,
            active: true,
            available: 3,
        }];
        assert!(shortfalls(&lines[..1], &ok).is_empty());
    }

    #[test]
    fn settling_follows_the_reservation_state_machine() {
        use ReservationStatus::{Committed, Rejected, Released, Reserved};
        let reservation = |status, lines: usize| Reservation {
            order_id: Uuid::now_v7(),
            status,
            lines: vec![
                StockLine {
                    product_id: Uuid::now_v7(),
                    quantity: 1,
                };
                lines
            ],
            shortfalls: Vec::new(),
            create_time: now(),
            update_time: now(),
        };
        let settle = |status, lines, to| reservation(status, lines).settle(to).ok();
        assert_eq!(settle(Reserved, 1, Committed), Some(Settlement::Apply));
        assert_eq!(settle(Reserved, 1, Released), Some(Settlement::Apply));
        assert_eq!(settle(Committed, 1, Committed), Some(Settlement::Unchanged));
        assert_eq!(settle(Rejected, 1, Released), Some(Settlement::Unchanged));
        assert_eq!(settle(Released, 0, Released), Some(Settlement::Tombstone));
        assert_eq!(settle(Released, 0, Committed), None);
        assert_eq!(settle(Released, 1, Committed), None);
        assert_eq!(settle(Committed, 1, Released), None);
    }

    #[test]
    fn search_words_are_normalised() {
        let mut v = Violations::new();
        assert_eq!(
            search_words(&mut v, "Stainless-STEEL  kettle!"),
            ["stainless", "steel", "kettle"]
        );
        assert!(v.is_empty());
        search_words(&mut v, "!!!");
        assert!(!v.is_empty());
    }

    #[test]
    fn list_cursors_keep_their_token_form() {
        let cursor = ListCursor {
            create_time: now(),
            id: Uuid::now_v7(),
        };
        let json = serde_json::to_value(cursor).unwrap();
        assert_eq!(json["create_time_us"], cursor.create_time.timestamp_micros());
        assert_eq!(serde_json::from_value::<ListCursor>(json).unwrap(), cursor);
        let beyond = serde_json::json!({ "create_time_us": i64::MAX, "id": cursor.id });
        assert!(serde_json::from_value::<ListCursor>(beyond).is_err());
    }

    #[test]
    fn availability_and_the_low_stock_crossing() {
        let low = LowStock(5);
        assert_eq!(low.availability(6), Availability::InStock);
        assert_eq!(low.availability(5), Availability::Low);
        assert_eq!(low.availability(1), Availability::Low);
        assert_eq!(low.availability(0), Availability::OutOfStock);
        assert!(low.crossed(6, 5) && low.crossed(20, 0));
        assert!(!low.crossed(5, 4), "already low: told once");
        assert!(!low.crossed(7, 6) && !low.crossed(3, 9));
    }
}
