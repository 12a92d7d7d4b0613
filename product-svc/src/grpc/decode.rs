//! Requests decoded into validated domain values. Every problem of a request is reported at once,
//! as field violations named after the request's fields.

use std::collections::BTreeSet;

use ordermesh_platform::{ServiceError, Violations, validate};
use ordermesh_proto::common;
use ordermesh_proto::product as pb;
use uuid::Uuid;

use crate::domain::{self, Adjustment, Category, Product, ProductFilter, ProductPatch, StockLine};

/// `CreateProductRequest.product` as a new product (version 1, created now).
pub fn new_product(input: Option<&pb::Product>) -> Result<Product, ServiceError> {
    let Some(p) = input else {
        return Err(ServiceError::invalid("product", "is required"));
    };
    let mut v = Violations::new();
    domain::check_sku(&mut v, "product.sku", &p.sku);
    validate::length(&mut v, "product.name", &p.name, 1, 200);
    validate::length(&mut v, "product.description", &p.description, 0, 5000);
    let category_id = validate::uuid(&mut v, "product.category_id", &p.category_id);
    let price = validate::money(&mut v, "product.price", p.price.as_ref(), true, false);
    let attributes = domain::check_attributes(&mut v, &p.attributes);
    v.into_result()?;
    let now = domain::now();
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

/// An `UpdateProductRequest` as the product id and the patch of its masked fields.
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
                domain::check_sku(&mut v, "product.sku", &p.sku);
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
            "attributes" => patch.attributes = Some(domain::check_attributes(&mut v, &p.attributes)),
            _ => {}
        }
    }
    v.into_result()?;
    Ok((id.expect("validated"), patch))
}

/// The filters shared by `ListProducts` and `SearchProducts`.
pub fn product_filter(
    v: &mut Violations,
    category_id: &str,
    active: Option<bool>,
    min_price: Option<&common::Money>,
    max_price: Option<&common::Money>,
) -> ProductFilter {
    let filter = ProductFilter {
        category_id: validate::optional_uuid(v, "category_id", category_id),
        active,
        min_price: validate::money(v, "min_price", min_price, false, false),
        max_price: validate::money(v, "max_price", max_price, false, false),
    };
    filter.check_price_range(v);
    filter
}

/// A new category.
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
        create_time: domain::now(),
    })
}

pub fn adjustment(req: &pb::AdjustStockRequest) -> Result<Adjustment, ServiceError> {
    let mut v = Violations::new();
    let product_id = validate::uuid(&mut v, "product_id", &req.product_id);
    v.check(
        req.delta != 0 && req.delta.unsigned_abs() <= 1_000_000,
        "delta",
        "must be non-zero with an absolute value of at most 1000000",
    );
    validate::length(&mut v, "reason", req.reason.trim(), 1, 500);
    validate::length(&mut v, "idempotency_key", &req.idempotency_key, 0, 128);
    v.into_result()?;
    Ok(Adjustment {
        product_id: product_id.expect("validated"),
        delta: req.delta,
        reason: req.reason.trim().to_owned(),
        idempotency_key: (!req.idempotency_key.is_empty()).then(|| req.idempotency_key.clone()),
    })
}

/// A `ReserveStock` request; lines come back sorted by product id, the order in which the store
/// locks rows (so concurrent reservations cannot deadlock).
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

/// A required UUID field.
pub fn id(field: &str, value: &str) -> Result<Uuid, ServiceError> {
    let mut v = Violations::new();
    let id = validate::uuid(&mut v, field, value);
    v.into_result()?;
    Ok(id.expect("validated"))
}

/// A list of ids (1-100, duplicates removed, request order kept).
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

    #[test]
    fn an_adjustment_needs_a_bounded_delta_and_a_reason_that_says_something() {
        let request = |delta: i64, reason: &str| pb::AdjustStockRequest {
            product_id: "0190a0b0-0000-7000-8000-000000000001".into(),
            delta,
            reason: reason.into(),
            idempotency_key: String::new(),
        };
        assert_eq!(adjustment(&request(-3, " damaged ")).unwrap().reason, "damaged");
        for (delta, reason) in [(0, "x"), (i64::MIN, "x"), (1_000_001, "x"), (1, "   "), (1, "")] {
            let Err(ServiceError::InvalidArgument(violations)) = adjustment(&request(delta, reason)) else {
                panic!("{delta} {reason:?} accepted")
            };
            assert_eq!(violations.len(), 1, "{delta} {reason:?}: {violations:?}");
        }
    }
}
