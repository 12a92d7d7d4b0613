//! Order analytics: the figures of the orders placed in a range of days, assembled from what
//! the store counts (see `Store::analytics`). Pure: no I/O, no generated types.

use std::sync::LazyLock;

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

/// Time from placement to confirmation, in seconds. `mean_seconds` is exact (a sum over a
/// count); `p95_seconds` is read from a histogram of [`latency_bin`]s and is within 1 % (or
/// 0.5 µs) of the exact nearest-rank 95th percentile.
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

/// Confirmation times are kept in bins, each `[lower, lower + max(1, lower / 50))`
/// microseconds: exact below 50 µs, at most 2 % of their lower bound wide above it, so the
/// middle of a bin is within 1 % of every value in it. The bounds are integers made by that
/// recurrence alone, so the SQL backfill (migration 0003) makes the very same ones.
const BIN_CAP_MICROS: i64 = 100_000_000_000_000;

/// The width of the bin starting at `lower`.
pub fn bin_width(lower: i64) -> i64 {
    (lower / 50).max(1)
}

/// The lower bounds of the bins, from 0 up to the first at or past [`BIN_CAP_MICROS`] (about
/// three years: that bin is open-ended).
fn bin_lowers() -> &'static [i64] {
    static LOWERS: LazyLock<Vec<i64>> = LazyLock::new(|| {
        let mut lowers = vec![0];
        while let Some(&last) = lowers.last().filter(|&&last| last < BIN_CAP_MICROS) {
            lowers.push(last + bin_width(last));
        }
        lowers
    });
    &LOWERS
}

/// The lower bound of the bin of a confirmation `micros` after placement (a negative time, from
/// clocks that disagree, goes to the first bin).
pub fn latency_bin(micros: i64) -> i64 {
    let lowers = bin_lowers();
    lowers[lowers.partition_point(|&lower| lower <= micros.max(0)) - 1]
}

/// Confirmation times from per-bin `(lower bound, count, sum of microseconds)` (any order, a
/// bin possibly repeated): the exact count and mean, and the 95th percentile (nearest rank) as
/// the middle of its bin.
pub fn confirmation_times(bins: &[(i64, i64, i64)]) -> ConfirmationTimes {
    let mut counts: Vec<(i64, i64)> = bins.iter().map(|&(lower, n, _)| (lower, n)).collect();
    counts.sort_unstable();
    let count: i64 = counts.iter().map(|(_, n)| n).sum();
    let micros: i64 = bins.iter().map(|&(_, _, sum)| sum).sum();
    let p95 = p95_rank(count).and_then(|rank| {
        let mut seen = 0;
        counts.iter().find_map(|&(lower, n)| {
            seen += n;
            (seen > rank).then(|| {
                let middle = if lower >= BIN_CAP_MICROS {
                    lower as f64
                } else {
                    lower as f64 + bin_width(lower) as f64 / 2.0
                };
                middle / 1e6
            })
        })
    });
    ConfirmationTimes {
        count,
        mean_seconds: (count > 0).then(|| micros as f64 / count as f64 / 1e6),
        p95_seconds: p95,
    }
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

    #[test]
    fn bins_are_exact_when_small_and_two_percent_wide_above() {
        for micros in [0, 1, 49] {
            assert_eq!(latency_bin(micros), micros);
        }
        assert_eq!(latency_bin(-5), 0);
        assert_eq!((latency_bin(50), latency_bin(51)), (50, 51));
        let lowers = bin_lowers();
        for pair in lowers.windows(2) {
            assert_eq!(pair[1] - pair[0], bin_width(pair[0]));
            assert!(pair[1] - pair[0] <= (pair[0] / 50).max(1));
        }
        // Every value lies in its bin, and the bin's middle is within 1 % of it.
        for micros in [50, 999, 1_234_567, 86_400_000_000, 7_777_777_777_777] {
            let lower = latency_bin(micros);
            assert!(lower <= micros && micros < lower + bin_width(lower), "{micros}");
            let middle = lower as f64 + bin_width(lower) as f64 / 2.0;
            assert!((middle - micros as f64).abs() <= micros as f64 * 0.01, "{micros}");
        }
        assert_eq!(latency_bin(i64::MAX), *lowers.last().unwrap());
        assert!(lowers.len() < 2000, "{}", lowers.len());
    }

    #[test]
    fn confirmation_times_from_bins() {
        assert_eq!(confirmation_times(&[]), ConfirmationTimes::default());
        // 100 confirmations of 1..=100 ms: mean 50.5 ms, 95th percentile 95 ms.
        let times: Vec<i64> = (1..=100).map(|ms| ms * 1000).collect();
        let bins: Vec<(i64, i64, i64)> = times.iter().map(|&t| (latency_bin(t), 1, t)).collect();
        let figures = confirmation_times(&bins);
        assert_eq!(figures.count, 100);
        assert!((figures.mean_seconds.unwrap() - 0.0505).abs() < 1e-12);
        let p95 = figures.p95_seconds.unwrap();
        // Within 1 % of 95 ms, so neither 94 nor 96 ms (the neighbouring ranks).
        assert!((p95 - 0.095).abs() <= 0.095 * 0.01, "{p95}");
        // The same bin in two units adds up; order does not matter.
        let split = [
            (latency_bin(2000), 1, 2000),
            (latency_bin(7), 3, 21),
            (latency_bin(2000), 1, 2000),
        ];
        let figures = confirmation_times(&split);
        assert_eq!(figures.count, 5);
        assert!((figures.mean_seconds.unwrap() - 4021e-6 / 5.0).abs() < 1e-15);
        let p95 = figures.p95_seconds.unwrap();
        assert!((p95 - 0.002).abs() <= 0.002 * 0.01, "{p95}");
    }
}
