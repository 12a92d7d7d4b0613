//! Order totals in integer minor units: no floating point, overflow is an error, and every line
//! must be in the order's currency.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    /// Unit price snapshot at the time of ordering, minor units.
    pub unit_price_minor: i64,
    pub currency: String,
    pub quantity: i32,
}

impl PricedLine {
    pub fn line_total(&self) -> Option<i64> {
        self.unit_price_minor.checked_mul(i64::from(self.quantity))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("items[{index}] is priced in {found}, the order in {expected}")]
    MixedCurrencies {
        index: usize,
        expected: String,
        found: String,
    },
    #[error("the order total is too large")]
    Overflow,
    #[error("an order needs at least one item")]
    Empty,
    #[error("items[{index}] has a negative price")]
    NegativePrice { index: usize },
}

/// The order total and its currency.
pub fn price_lines(lines: &[PricedLine]) -> Result<(i64, String), PricingError> {
    let first = lines.first().ok_or(PricingError::Empty)?;
    let mut total: i64 = 0;
    for (index, line) in lines.iter().enumerate() {
        if line.currency != first.currency {
            return Err(PricingError::MixedCurrencies {
                index,
                expected: first.currency.clone(),
                found: line.currency.clone(),
            });
        }
        if line.unit_price_minor < 0 {
            return Err(PricingError::NegativePrice { index });
        }
        let line_total = line.line_total().ok_or(PricingError::Overflow)?;
        total = total.checked_add(line_total).ok_or(PricingError::Overflow)?;
    }
    Ok((total, first.currency.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(price: i64, currency: &str, quantity: i32) -> PricedLine {
        PricedLine {
            product_id: "p".into(),
            sku: "s".into(),
            name: "n".into(),
            unit_price_minor: price,
            currency: currency.into(),
            quantity,
        }
    }

    #[test]
    fn totals_are_exact_in_minor_units() {
        assert_eq!(
            price_lines(&[line(1999, "EUR", 3), line(1, "EUR", 1)]).unwrap(),
            (5998, "EUR".into())
        );
    }

    #[test]
    fn mixed_currencies_overflow_and_empty_orders_are_errors() {
        assert!(matches!(
            price_lines(&[line(1, "EUR", 1), line(1, "USD", 1)]),
            Err(PricingError::MixedCurrencies { index: 1, .. })
        ));
        assert_eq!(price_lines(&[line(i64::MAX, "EUR", 2)]), Err(PricingError::Overflow));
        assert_eq!(
            price_lines(&[line(i64::MAX, "EUR", 1), line(1, "EUR", 1)]),
            Err(PricingError::Overflow)
        );
        assert_eq!(price_lines(&[]), Err(PricingError::Empty));
    }
}
