//! Validation of a new order's request, reporting every problem at once as field violations.

use ordermesh_platform::Violations;
use ordermesh_platform::validate::{self, Address};

pub const MAX_LINES: usize = 100;
pub const MAX_QUANTITY: i32 = 1000;
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrderLine {
    pub product_id: uuid::Uuid,
    pub quantity: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub customer_id: uuid::Uuid,
    pub lines: Vec<NewOrderLine>,
    pub payment_method_token: String,
    pub idempotency_key: Option<String>,
}

/// Raw request fields, as decoded from the wire.
pub struct RawLine<'a> {
    pub product_id: &'a str,
    pub quantity: i32,
}

pub fn validate_new_order(
    customer_id: &str,
    lines: &[RawLine<'_>],
    shipping_address: Option<&Address>,
    payment_method_token: &str,
    idempotency_key: &str,
) -> Result<NewOrder, ordermesh_platform::ServiceError> {
    let mut v = Violations::new();
    let customer = uuid::Uuid::parse_str(customer_id).ok();
    v.check(customer.is_some(), "customer_id", "must be a UUID");
    v.check(!lines.is_empty(), "items", "must contain at least one item");
    v.check(
        lines.len() <= MAX_LINES,
        "items",
        format!("must contain at most {MAX_LINES} items"),
    );
    let mut parsed: Vec<NewOrderLine> = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let product = uuid::Uuid::parse_str(line.product_id).ok();
        v.check(product.is_some(), format!("items[{i}].product_id"), "must be a UUID");
        v.check(
            (1..=MAX_QUANTITY).contains(&line.quantity),
            format!("items[{i}].quantity"),
            format!("must be between 1 and {MAX_QUANTITY}"),
        );
        let Some(product) = product else { continue };
        // A product named on several lines (a cart where it was added twice) is one line with
        // the quantities added up: at most 100 lines of 1000, so the sum fits.
        match parsed.iter_mut().find(|known| known.product_id == product) {
            Some(known) => known.quantity = known.quantity.saturating_add(line.quantity),
            None => parsed.push(NewOrderLine {
                product_id: product,
                quantity: line.quantity,
            }),
        }
    }
    if let Some(address) = shipping_address {
        validate::address(&mut v, "shipping_address", address);
    }
    v.check(
        !payment_method_token.trim().is_empty(),
        "payment_method_token",
        "is required",
    );
    v.check(
        payment_method_token.chars().count() <= 256,
        "payment_method_token",
        "must be at most 256 characters",
    );
    v.check(
        idempotency_key.len() <= MAX_IDEMPOTENCY_KEY_LEN,
        "idempotency_key",
        format!("must be at most {MAX_IDEMPOTENCY_KEY_LEN} characters"),
    );
    v.into_result()?;
    Ok(NewOrder {
        customer_id: customer.expect("checked above"),
        lines: parsed,
        payment_method_token: payment_method_token.to_owned(),
        idempotency_key: (!idempotency_key.is_empty()).then(|| idempotency_key.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordermesh_platform::ServiceError;

    const P1: &str = "0190a0b0-0000-7000-8000-000000000001";
    const C1: &str = "0190a0b0-0000-7000-8000-0000000000c1";

    fn shipping_address() -> Address {
        Address {
            recipient_name: "Ada Lovelace".into(),
            line1: "1 Main Street".into(),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country_code: "DE".into(),
            ..Address::default()
        }
    }

    #[test]
    fn a_good_request_is_parsed() {
        let order = validate_new_order(
            C1,
            &[RawLine {
                product_id: P1,
                quantity: 2,
            }],
            Some(&shipping_address()),
            "tok_approved",
            "key-1",
        )
        .unwrap();
        assert_eq!(order.lines.len(), 1);
        assert_eq!(order.idempotency_key.as_deref(), Some("key-1"));
    }

    #[test]
    fn lines_of_the_same_product_become_one_in_the_order_first_named() {
        const P2: &str = "0190a0b0-0000-7000-8000-000000000002";
        let line = |product_id, quantity| RawLine { product_id, quantity };
        let order = validate_new_order(
            C1,
            &[line(P2, 1), line(P1, 2), line(P2, 1000), line(P1, 3)],
            Some(&shipping_address()),
            "tok_approved",
            "key-1",
        )
        .unwrap();
        let lines: Vec<_> = order
            .lines
            .iter()
            .map(|l| (l.product_id.to_string(), l.quantity))
            .collect();
        assert_eq!(lines, [(P2.to_owned(), 1001), (P1.to_owned(), 5)]);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let err = validate_new_order(
            "nope",
            &[
                RawLine {
                    product_id: P1,
                    quantity: 0,
                },
                RawLine {
                    product_id: "P1",
                    quantity: 1,
                },
            ],
            Some(&Address {
                city: " ".into(),
                country_code: "de".into(),
                ..shipping_address()
            }),
            " ",
            &"k".repeat(200),
        )
        .unwrap_err();
        let ServiceError::InvalidArgument(violations) = err else {
            panic!("{err:?}")
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "customer_id",
                "items[0].quantity",
                "items[1].product_id",
                "shipping_address.city",
                "shipping_address.country_code",
                "payment_method_token",
                "idempotency_key"
            ]
        );
    }
}
