//! Catalogue and inventory types and rules. No I/O: everything here is unit-tested directly.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use ordermesh_platform::validate::{self, Money};
use ordermesh_platform::{ServiceError, Violations};
use ordermesh_proto::product as pb;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The current time, truncated to microseconds so it round-trips through both databases
/// unchanged (and page tokens built from it compare equal).
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// Who caused a catalogue or stock write, and in which business flow: carried into the events
/// the write publishes (in its own transaction, through the outbox).
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub actor: ordermesh_proto::common::Actor,
    pub correlation_id: String,
}

impl Origin {
    /// The principal of a request and its correlation id (a fresh one if the request had none).
    pub fn of(principal: &ordermesh_platform::auth::Principal, correlation_id: Option<&str>) -> Self {
        use ordermesh_platform::auth::Principal;
        use ordermesh_proto::common::{Actor, ActorKind};
        let actor = match principal {
            Principal::Employee { subject, roles } => Actor {
                kind: ActorKind::Employee as i32,
                id: subject.clone(),
                roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            },
            // The customer id of a client is not known here (catalogue writes are admin-only).
            Principal::Client { .. } => Actor {
                kind: ActorKind::Customer as i32,
                ..Default::default()
            },
            Principal::Service { name } => Actor {
                kind: ActorKind::Service as i32,
                id: name.clone(),
                roles: Vec::new(),
            },
        };
        Self {
            actor,
            correlation_id: correlation_id.map_or_else(|| Uuid::now_v7().to_string(), str::to_owned),
        }
    }

    /// A scheduled or housekeeping job (and tests).
    pub fn system(job: &str) -> Self {
        Self {
            actor: ordermesh_proto::common::Actor {
                kind: ordermesh_proto::common::ActorKind::System as i32,
                id: job.to_owned(),
                roles: Vec::new(),
            },
            correlation_id: Uuid::now_v7().to_string(),
        }
    }
}

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    pub id: Uuid,
    pub name: String,
    pub parent_id: Option<Uuid>,
    pub description: String,
    pub create_time: DateTime<Utc>,
}

impl Category {
    pub fn to_proto(&self) -> pb::Category {
        pb::Category {
            id: self.id.to_string(),
            name: self.name.clone(),
            parent_id: self.parent_id.map(|p| p.to_string()).unwrap_or_default(),
            description: self.description.clone(),
            create_time: Some(timestamp(self.create_time)),
        }
    }
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

    pub fn to_proto(&self) -> pb::Product {
        pb::Product {
            id: self.id.to_string(),
            sku: self.sku.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            category_id: self.category_id.to_string(),
            price: Some(self.price.to_proto()),
            active: self.active,
            attributes: self.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            create_time: Some(timestamp(self.create_time)),
            update_time: Some(timestamp(self.update_time)),
            version: self.version,
        }
    }

    /// The keyset of `ListProducts` (newest first).
    pub fn list_key(&self) -> ListCursor {
        ListCursor {
            create_time_us: self.create_time.timestamp_micros(),
            id: self.id,
        }
    }
}

/// Position after the last product of a `ListProducts` page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListCursor {
    pub create_time_us: i64,
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

fn check_sku(v: &mut Violations, field: &str, sku: &str) {
    let ok = (1..=64).contains(&sku.len())
        && sku
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    v.check(ok, field, "must be 1-64 characters of A-Z, 0-9, '-' and '_'");
}

fn check_attributes(
    v: &mut Violations,
    attributes: &std::collections::HashMap<String, String>,
) -> BTreeMap<String, String> {
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

/// Validates `CreateProductRequest.product` into a new product (version 1, created now).
pub fn new_product(input: Option<&pb::Product>) -> Result<Product, ServiceError> {
    let Some(p) = input else {
        return Err(ServiceError::invalid("product", "is required"));
    };
    let mut v = Violations::new();
    check_sku(&mut v, "product.sku", &p.sku);
    validate::length(&mut v, "product.name", &p.name, 1, 200);
    validate::length(&mut v, "product.description", &p.description, 0, 5000);
    let category_id = validate::uuid(&mut v, "product.category_id", &p.category_id);
    let price = validate::money(&mut v, "product.price", p.price.as_ref(), true, false);
    let attributes = check_attributes(&mut v, &p.attributes);
    v.into_result()?;
    let now = now();
    Ok(Product {
        id: Uuid::now_v7(),
        sku: p.sku.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        category_id: category_id.expect("validated"),
        price: price.expect("validated"),
        active: p.active,
        attributes,
        create_time: now,
        update_time: now,
        version: 1,
    })
}

/// Validates an `UpdateProductRequest` into the product id and the patch.
pub fn product_patch(
    input: Option<&pb::Product>,
    mask: Option<&prost_types::FieldMask>,
) -> Result<(Uuid, ProductPatch), ServiceError> {
    let Some(p) = input else {
        return Err(ServiceError::invalid("product", "is required"));
    };
    let mut v = Violations::new();
    let id = validate::uuid(&mut v, "product.id", &p.id);
    let paths = validate::update_mask(
        &mut v,
        mask,
        &[
            "sku",
            "name",
            "description",
            "category_id",
            "price",
            "active",
            "attributes",
        ],
    );
    let mut patch = ProductPatch::default();
    for path in paths {
        match path {
            "sku" => {
                check_sku(&mut v, "product.sku", &p.sku);
                patch.sku = Some(p.sku.clone());
            }
            "name" => {
                validate::length(&mut v, "product.name", &p.name, 1, 200);
                patch.name = Some(p.name.clone());
            }
            "description" => {
                validate::length(&mut v, "product.description", &p.description, 0, 5000);
                patch.description = Some(p.description.clone());
            }
            "category_id" => patch.category_id = validate::uuid(&mut v, "product.category_id", &p.category_id),
            "price" => patch.price = validate::money(&mut v, "product.price", p.price.as_ref(), true, false),
            "active" => patch.active = Some(p.active),
            "attributes" => patch.attributes = Some(check_attributes(&mut v, &p.attributes)),
            _ => {}
        }
    }
    v.into_result()?;
    Ok((id.expect("validated"), patch))
}

/// Validates the filters shared by `ListProducts` and `SearchProducts`.
pub fn product_filter(
    v: &mut Violations,
    category_id: &str,
    active: Option<bool>,
    min_price: Option<&ordermesh_proto::common::Money>,
    max_price: Option<&ordermesh_proto::common::Money>,
) -> ProductFilter {
    let filter = ProductFilter {
        category_id: validate::optional_uuid(v, "category_id", category_id),
        active,
        min_price: validate::money(v, "min_price", min_price, false, false),
        max_price: validate::money(v, "max_price", max_price, false, false),
    };
    if let (Some(min), Some(max)) = (&filter.min_price, &filter.max_price) {
        if min.currency_code != max.currency_code {
            v.add("max_price.currency_code", "must equal min_price.currency_code");
        } else if min.amount_minor > max.amount_minor {
            v.add("max_price.amount_minor", "must not be below min_price.amount_minor");
        }
    }
    filter
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

/// Validates a new category.
pub fn new_category(req: &pb::CreateCategoryRequest) -> Result<Category, ServiceError> {
    let mut v = Violations::new();
    validate::length(&mut v, "name", req.name.trim(), 1, 100);
    validate::length(&mut v, "description", &req.description, 0, 1000);
    let parent_id = validate::optional_uuid(&mut v, "parent_id", &req.parent_id);
    v.into_result()?;
    Ok(Category {
        id: Uuid::now_v7(),
        name: req.name.trim().to_owned(),
        parent_id,
        description: req.description.clone(),
        create_time: now(),
    })
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

    /// The level as shown to a caller; clients see only `available`.
    pub fn to_proto(&self, full: bool) -> pb::StockLevel {
        pb::StockLevel {
            product_id: self.product_id.to_string(),
            sku: self.sku.clone(),
            on_hand: if full { self.on_hand } else { 0 },
            reserved: if full { self.reserved } else { 0 },
            available: self.available(),
            update_time: Some(timestamp(self.update_time)),
        }
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

pub fn adjustment(req: &pb::AdjustStockRequest) -> Result<Adjustment, ServiceError> {
    let mut v = Violations::new();
    let product_id = validate::uuid(&mut v, "product_id", &req.product_id);
    v.check(
        req.delta != 0 && req.delta.abs() <= 1_000_000,
        "delta",
        "must be non-zero with an absolute value of at most 1000000",
    );
    validate::length(&mut v, "reason", &req.reason, 1, 500);
    validate::length(&mut v, "idempotency_key", &req.idempotency_key, 0, 128);
    v.into_result()?;
    Ok(Adjustment {
        product_id: product_id.expect("validated"),
        delta: req.delta,
        reason: req.reason.clone(),
        idempotency_key: (!req.idempotency_key.is_empty()).then(|| req.idempotency_key.clone()),
    })
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

    fn to_proto(self) -> pb::StockReservationStatus {
        match self {
            Self::Reserved => pb::StockReservationStatus::Reserved,
            Self::Rejected => pb::StockReservationStatus::Rejected,
            Self::Released => pb::StockReservationStatus::Released,
            Self::Committed => pb::StockReservationStatus::Committed,
        }
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

impl Reservation {
    /// A release that came before any reservation of the order (RELEASED, no lines): it keeps a
    /// late reserve for the same order from reserving anything.
    pub fn is_tombstone(&self) -> bool {
        self.status == ReservationStatus::Released && self.lines.is_empty()
    }

    pub fn to_proto(&self) -> pb::StockReservation {
        pb::StockReservation {
            order_id: self.order_id.to_string(),
            status: self.status.to_proto() as i32,
            lines: self
                .lines
                .iter()
                .map(|l| pb::StockLine {
                    product_id: l.product_id.to_string(),
                    quantity: l.quantity,
                })
                .collect(),
            shortfalls: self
                .shortfalls
                .iter()
                .map(|s| pb::StockShortfall {
                    product_id: s.product_id.to_string(),
                    requested: s.requested,
                    available: s.available,
                    reason: s.reason.clone(),
                })
                .collect(),
            create_time: Some(timestamp(self.create_time)),
            update_time: Some(timestamp(self.update_time)),
        }
    }
}

/// What the store knows about one product of a reservation, read under lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockedStock {
    pub product_id: Uuid,
    pub active: bool,
    pub available: i64,
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

/// Validates a `ReserveStock` request; lines come back sorted by product id, the order in which
/// stores lock rows (so concurrent reservations cannot deadlock).
pub fn reservation_request(req: &pb::ReserveStockRequest) -> Result<(Uuid, Vec<StockLine>), ServiceError> {
    let mut v = Violations::new();
    let order_id = validate::uuid(&mut v, "order_id", &req.order_id);
    if req.lines.is_empty() || req.lines.len() > 100 {
        v.add("lines", "must have 1-100 lines");
    }
    let mut seen = BTreeSet::new();
    let mut lines = Vec::with_capacity(req.lines.len());
    for (i, line) in req.lines.iter().enumerate() {
        let product_id = validate::uuid(&mut v, &format!("lines[{i}].product_id"), &line.product_id);
        v.check(
            (1..=999).contains(&line.quantity),
            format!("lines[{i}].quantity"),
            "must be 1-999",
        );
        if let Some(product_id) = product_id {
            if !seen.insert(product_id) {
                v.add(format!("lines[{i}].product_id"), "appears more than once");
            }
            lines.push(StockLine {
                product_id,
                quantity: line.quantity,
            });
        }
    }
    v.into_result()?;
    lines.sort_by_key(|l| l.product_id);
    Ok((order_id.expect("validated"), lines))
}

/// Parses an order id field (required UUID).
pub fn order_id(value: &str) -> Result<Uuid, ServiceError> {
    let mut v = Violations::new();
    let id = validate::uuid(&mut v, "order_id", value);
    v.into_result()?;
    Ok(id.expect("validated"))
}

/// Parses a list of ids (1-100, duplicates removed, request order kept).
pub fn id_list(ids: &[String], field: &str) -> Result<Vec<Uuid>, ServiceError> {
    let mut v = Violations::new();
    v.check((1..=100).contains(&ids.len()), field, "must have 1-100 ids");
    let mut out: Vec<Uuid> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(id) = validate::uuid(&mut v, &format!("{field}[{i}]"), id)
            && !out.contains(&id)
        {
            out.push(id);
        }
    }
    v.into_result()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordermesh_proto::common;

    fn valid() -> pb::Product {
        pb::Product {
            sku: "SKU-1".into(),
            name: "Kettle".into(),
            category_id: Uuid::now_v7().to_string(),
            price: Some(common::Money {
                amount_minor: 1999,
                currency_code: "EUR".into(),
            }),
            active: true,
            ..Default::default()
        }
    }

    fn fields(err: ServiceError) -> Vec<String> {
        match err {
            ServiceError::InvalidArgument(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("not invalid: {other}"),
        }
    }

    #[test]
    fn new_product_is_validated_field_by_field() {
        let p = new_product(Some(&valid())).unwrap();
        assert_eq!((p.version, p.price.amount_minor), (1, 1999));
        let bad = pb::Product {
            sku: "bad sku".into(),
            name: String::new(),
            category_id: "x".into(),
            price: None,
            ..valid()
        };
        assert_eq!(
            fields(new_product(Some(&bad)).unwrap_err()),
            ["product.sku", "product.name", "product.category_id", "product.price"]
        );
    }

    #[test]
    fn patch_reads_only_masked_fields() {
        let mut input = valid();
        input.id = Uuid::now_v7().to_string();
        input.name = String::new(); // not in the mask: ignored
        let mask = prost_types::FieldMask {
            paths: vec!["price".into(), "active".into()],
        };
        let (_, patch) = product_patch(Some(&input), Some(&mask)).unwrap();
        assert_eq!(patch.name, None);
        assert_eq!(patch.active, Some(true));
        let mask = prost_types::FieldMask {
            paths: vec!["name".into()],
        };
        assert_eq!(
            fields(product_patch(Some(&input), Some(&mask)).unwrap_err()),
            ["product.name"]
        );
        assert_eq!(fields(product_patch(Some(&input), None).unwrap_err()), ["update_mask"]);
    }

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
    fn reservation_request_rules() {
        let id = Uuid::now_v7().to_string();
        let req = pb::ReserveStockRequest {
            order_id: "nope".into(),
            lines: vec![
                pb::StockLine {
                    product_id: id.clone(),
                    quantity: 0,
                },
                pb::StockLine {
                    product_id: id,
                    quantity: 1,
                },
            ],
        };
        assert_eq!(
            fields(reservation_request(&req).unwrap_err()),
            ["order_id", "lines[0].quantity", "lines[1].product_id"]
        );
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
    fn price_filters_must_agree() {
        let mut v = Violations::new();
        let eur = common::Money {
            amount_minor: 10,
            currency_code: "EUR".into(),
        };
        let usd = common::Money {
            amount_minor: 5,
            currency_code: "USD".into(),
        };
        product_filter(&mut v, "", None, Some(&eur), Some(&usd));
        assert!(!v.is_empty());
    }
}
