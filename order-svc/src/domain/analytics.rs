//! Order analytics: the figures of the orders placed in a range of days, assembled from what
//! the store counts (see `Store::analytics`). Pure: no I/O, no generated types.

use chrono::NaiveDate;
use uuid::Uuid;

use super::OrderStatus;

/// The statuses whose orders count as sold.
pub const SOLD: [OrderStatus; 3] = [OrderStatus::Confirmed, OrderStatus::Shipped, OrderStatus::Delivered];

/// One product's sales in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSales {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub currency: String,
    pub units: i64,
    pub revenue_minor: i64,
}

/// Time from placement to confirmation, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ConfirmationTimes {
    pub count: i64,
    pub mean_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
}

/// Everything GetOrderAnalytics answers.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderFigures {
    pub orders: i64,
    pub by_status: Vec<(OrderStatus, i64)>,
    pub by_day: Vec<(NaiveDate, i64)>,
    pub top_by_units: Vec<ProductSales>,
    pub top_by_revenue: Vec<ProductSales>,
    pub time_to_confirm: ConfirmationTimes,
    /// Rejection code as stored (`OUT_OF_STOCK`, …) and count.
    pub rejections: Vec<(String, i64)>,
}

/// Counts per day for every day of `days`, zeros included, from counts keyed by day.
pub fn every_day(days: impl Iterator<Item = NaiveDate>, counted: &[(NaiveDate, i64)]) -> Vec<(NaiveDate, i64)> {
    days.map(|day| {
        let count = counted.iter().filter(|(d, _)| *d == day).map(|(_, n)| n).sum();
        (day, count)
    })
    .collect()
}

/// The `top` best sellers of `sales` by units and by revenue (ties broken by SKU, so the lists
/// are stable).
pub fn top_sellers(sales: &[ProductSales], top: usize) -> (Vec<ProductSales>, Vec<ProductSales>) {
    let mut by_units = sales.to_vec();
    by_units.sort_by(|a, b| b.units.cmp(&a.units).then_with(|| a.sku.cmp(&b.sku)));
    by_units.truncate(top);
    let mut by_revenue = sales.to_vec();
    by_revenue.sort_by(|a, b| b.revenue_minor.cmp(&a.revenue_minor).then_with(|| a.sku.cmp(&b.sku)));
    by_revenue.truncate(top);
    (by_units, by_revenue)
}

/// The 0-based position of the 95th percentile of `count` ordered values (nearest rank).
pub fn p95_rank(count: i64) -> Option<i64> {
    (count > 0).then(|| ((count * 95 + 99) / 100 - 1).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sales(sku: &str, units: i64, revenue_minor: i64) -> ProductSales {
        ProductSales {
            product_id: Uuid::nil(),
            sku: sku.into(),
            name: sku.into(),
            currency: "EUR".into(),
            units,
            revenue_minor,
        }
    }

    #[test]
    fn every_day_is_listed_with_its_count() {
        let d = |day: u32| NaiveDate::from_ymd_opt(2026, 1, day).unwrap();
        let days = (1..=3).map(d);
        assert_eq!(
            every_day(days, &[(d(3), 2), (d(1), 1), (d(3), 1)]),
            [(d(1), 1), (d(2), 0), (d(3), 3)]
        );
    }

    #[test]
    fn top_sellers_by_units_and_by_revenue() {
        let all = [sales("A", 5, 500), sales("B", 2, 9000), sales("C", 5, 100)];
        let (units, revenue) = top_sellers(&all, 2);
        assert_eq!(units.iter().map(|s| s.sku.as_str()).collect::<Vec<_>>(), ["A", "C"]);
        assert_eq!(revenue.iter().map(|s| s.sku.as_str()).collect::<Vec<_>>(), ["B", "A"]);
    }

    #[test]
    fn the_95th_percentile_is_the_nearest_rank() {
        assert_eq!(p95_rank(0), None);
        assert_eq!(p95_rank(1), Some(0));
        assert_eq!(p95_rank(20), Some(18));
        assert_eq!(p95_rank(100), Some(94));
        assert_eq!(p95_rank(101), Some(95));
    }
}
