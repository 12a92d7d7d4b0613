//! What a write of an order changes in the analytics rollups: the difference between what the
//! order counts for after the write and before it. The store adds that difference in the
//! transaction of the write (`store::rollups`), so the rollups are never out of step with the
//! orders. Pure: no I/O.
//!
//! An order counts, in the bucket of its placement, for: its placement; its status; its
//! rejection code while REJECTED; its lines while sold ([`SOLD`]); and the time from placement
//! to each confirmation in its history. So a transition moves one count from the old status to
//! the new, and entering or leaving the sold set (a cancellation after confirmation) adds or
//! takes back the lines.
//!
//! A write does not add its delta to the rollups itself: their rows are few and hot (every
//! order of a quarter hour counts in the same ones), and writers holding their locks to commit
//! queued up behind each other. It records the delta beside the order, and a folder adds the
//! recorded deltas up ([`merge`]) and applies them in one transaction (`store::rollups`).

use std::collections::BTreeMap;

use ordermesh_platform::analytics::bucket_of;
use serde::{Deserialize, Serialize};

use super::analytics::SOLD;
use super::{Order, OrderStatus};

/// One line's change to a product's sales.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleChange {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub currency: String,
    pub units: i64,
    pub revenue_minor: i64,
}

/// The changes to add to the rollups of bucket `bucket`. Counts are signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupDelta {
    pub bucket: i64,
    pub placed: i64,
    /// The old status first (a decrement), then the new one.
    pub statuses: Vec<(OrderStatus, i64)>,
    pub rejections: Vec<(String, i64)>,
    /// Sorted by product, SKU and currency, so concurrent writers touch rows in one order.
    pub sales: Vec<SaleChange>,
    /// Microseconds from placement to each new confirmation.
    pub confirmations: Vec<i64>,
}

impl RollupDelta {
    /// What placing `order` adds.
    pub fn placed(order: &Order) -> Self {
        Self::between(None, order)
    }

    /// What a write that turned `before` into `after` (the same order) changes.
    pub fn transition(before: &Order, after: &Order) -> Self {
        Self::between(Some(before), after)
    }

    fn between(before: Option<&Order>, after: &Order) -> Self {
        let mut statuses = Vec::new();
        let old_status = before.map(|o| o.status);
        if old_status != Some(after.status) {
            statuses.extend(old_status.map(|s| (s, -1)));
            statuses.push((after.status, 1));
        }
        let mut rejections = Vec::new();
        let old_rejection = before.and_then(rejection);
        if old_rejection != rejection(after) {
            rejections.extend(old_rejection.map(|code| (code, -1)));
            rejections.extend(rejection(after).map(|code| (code, 1)));
        }
        let sign = i64::from(is_sold(after)) - i64::from(before.is_some_and(is_sold));
        let mut sales: Vec<SaleChange> = if sign == 0 {
            Vec::new()
        } else {
            after
                .items
                .iter()
                .map(|line| SaleChange {
                    product_id: line.product_id.clone(),
                    sku: line.sku.clone(),
                    name: line.name.clone(),
                    currency: line.currency.clone(),
                    units: sign * i64::from(line.quantity),
                    revenue_minor: sign * i64::from(line.quantity) * line.unit_price_minor,
                })
                .collect()
        };
        sales.sort_by(|a, b| (&a.product_id, &a.sku, &a.currency).cmp(&(&b.product_id, &b.sku, &b.currency)));
        let seen = before.map_or(0, |o| o.history.len());
        // Whole microseconds, as both databases keep times.
        let placed_at = after.created_at.timestamp_micros();
        let confirmations = after
            .history
            .iter()
            .skip(seen)
            .filter(|entry| entry.to == OrderStatus::Confirmed)
            .map(|entry| entry.changed_at.timestamp_micros() - placed_at)
            .collect();
        Self {
            bucket: bucket_of(after.created_at),
            placed: i64::from(before.is_none()),
            statuses,
            rejections,
            sales,
            confirmations,
        }
    }
}

/// The deltas added up: one per bucket (in bucket order), each count summed per key and the
/// counts that add up to nothing left out, sales in the order [`RollupDelta::sales`] asks (the
/// name of a product's last sale kept), confirmations all kept.
pub fn merge(deltas: impl IntoIterator<Item = RollupDelta>) -> Vec<RollupDelta> {
    #[derive(Default)]
    struct Sums {
        placed: i64,
        statuses: BTreeMap<&'static str, (OrderStatus, i64)>,
        rejections: BTreeMap<String, i64>,
        sales: BTreeMap<(String, String, String), SaleChange>,
        confirmations: Vec<i64>,
    }
    let mut buckets: BTreeMap<i64, Sums> = BTreeMap::new();
    for delta in deltas {
        let sums = buckets.entry(delta.bucket).or_default();
        sums.placed += delta.placed;
        for (status, n) in delta.statuses {
            sums.statuses.entry(status.as_str()).or_insert((status, 0)).1 += n;
        }
        for (code, n) in delta.rejections {
            *sums.rejections.entry(code).or_default() += n;
        }
        for sale in delta.sales {
            let key = (sale.product_id.clone(), sale.sku.clone(), sale.currency.clone());
            sums.sales
                .entry(key)
                .and_modify(|sum| {
                    sum.units += sale.units;
                    sum.revenue_minor += sale.revenue_minor;
                    sum.name.clone_from(&sale.name);
                })
                .or_insert(sale);
        }
        sums.confirmations.extend(delta.confirmations);
    }
    buckets
        .into_iter()
        .map(|(bucket, sums)| RollupDelta {
            bucket,
            placed: sums.placed,
            statuses: sums.statuses.into_values().filter(|(_, n)| *n != 0).collect(),
            rejections: sums.rejections.into_iter().filter(|(_, n)| *n != 0).collect(),
            sales: sums
                .sales
                .into_values()
                .filter(|s| s.units != 0 || s.revenue_minor != 0)
                .collect(),
            confirmations: sums.confirmations,
        })
        .collect()
}

fn is_sold(order: &Order) -> bool {
    SOLD.contains(&order.status)
}

/// The rejection code an order counts for (none stored counts as the empty code).
fn rejection(order: &Order) -> Option<String> {
    (order.status == OrderStatus::Rejected).then(|| order.rejection_code.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::domain::{HistoryEntry, PricedLine, TransitionFields};

    fn line(product: &str, quantity: i32, price: i64) -> PricedLine {
        PricedLine {
            product_id: product.into(),
            sku: format!("SKU-{product}"),
            name: product.into(),
            unit_price_minor: price,
            currency: "EUR".into(),
            quantity,
        }
    }

    fn placed_at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T10:20:00.000001Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn order() -> Order {
        let at = placed_at();
        Order {
            id: Uuid::nil(),
            customer_id: Uuid::nil(),
            status: OrderStatus::Pending,
            items: vec![line("b", 2, 300), line("a", 1, 1000)],
            total_minor: 1600,
            currency: "EUR".into(),
            payment_method_token: String::new(),
            idempotency_key: None,
            rejection_code: None,
            rejection_reason: None,
            cancellation_reason: None,
            payment_id: None,
            shipping_address: None,
            carrier: None,
            tracking_number: None,
            correlation_id: String::new(),
            version: 1,
            created_at: at,
            updated_at: at,
            shipped_at: None,
            delivered_at: None,
            history: vec![entry(1, None, OrderStatus::Pending, at)],
        }
    }

    fn entry(seq: i32, from: Option<OrderStatus>, to: OrderStatus, at: DateTime<Utc>) -> HistoryEntry {
        HistoryEntry {
            seq,
            from,
            to,
            reason: None,
            actor: "test".into(),
            cause_event_id: None,
            changed_at: at,
        }
    }

    /// `order` moved to `to` `after` its placement, and the delta of that move.
    fn moved(order: &Order, to: OrderStatus, fields: TransitionFields, after: Duration) -> (Order, RollupDelta) {
        let mut next = order.clone();
        let seq = order.next_history_seq();
        next.record_transition(to, fields, entry(seq, Some(order.status), to, order.created_at + after));
        let delta = RollupDelta::transition(order, &next);
        (next, delta)
    }

    #[test]
    fn placing_counts_the_order_in_its_bucket() {
        let delta = RollupDelta::placed(&order());
        assert_eq!(delta.bucket, placed_at().timestamp() / 900);
        assert_eq!(delta.placed, 1);
        assert_eq!(delta.statuses, [(OrderStatus::Pending, 1)]);
        assert!(delta.rejections.is_empty() && delta.sales.is_empty() && delta.confirmations.is_empty());
    }

    #[test]
    fn a_confirmation_sells_the_lines_and_a_later_cancellation_takes_them_back() {
        let placed = order();
        let (reserved, delta) = moved(&placed, OrderStatus::Reserved, Default::default(), Duration::seconds(1));
        assert_eq!(delta.placed, 0);
        assert_eq!(delta.statuses, [(OrderStatus::Pending, -1), (OrderStatus::Reserved, 1)]);
        assert!(delta.sales.is_empty());
        let (confirmed, delta) = moved(
            &reserved,
            OrderStatus::Confirmed,
            Default::default(),
            Duration::milliseconds(2500),
        );
        assert_eq!(delta.confirmations, [2_500_000]);
        // Sorted by product: "a" before "b".
        let sold: Vec<(&str, i64, i64)> = delta
            .sales
            .iter()
            .map(|s| (s.product_id.as_str(), s.units, s.revenue_minor))
            .collect();
        assert_eq!(sold, [("a", 1, 1000), ("b", 2, 600)]);
        let (shipped, delta) = moved(
            &confirmed,
            OrderStatus::Shipped,
            Default::default(),
            Duration::seconds(9),
        );
        assert!(delta.sales.is_empty() && delta.confirmations.is_empty(), "still sold");
        assert_eq!(
            delta.statuses,
            [(OrderStatus::Confirmed, -1), (OrderStatus::Shipped, 1)]
        );
        let (_, delta) = moved(
            &confirmed,
            OrderStatus::Cancelled,
            Default::default(),
            Duration::seconds(9),
        );
        let unsold: Vec<(i64, i64)> = delta.sales.iter().map(|s| (s.units, s.revenue_minor)).collect();
        assert_eq!(unsold, [(-1, -1000), (-2, -600)]);
        assert!(
            delta.confirmations.is_empty(),
            "the confirmation happened and stays counted"
        );
        assert_eq!(shipped.status, OrderStatus::Shipped);
    }

    #[test]
    fn a_rejection_counts_its_code() {
        let fields = TransitionFields {
            rejection_code: Some("OUT_OF_STOCK".into()),
            ..Default::default()
        };
        let (_, delta) = moved(&order(), OrderStatus::Rejected, fields, Duration::seconds(1));
        assert_eq!(delta.rejections, [("OUT_OF_STOCK".to_owned(), 1)]);
        assert!(delta.sales.is_empty());
        let (_, delta) = moved(
            &order(),
            OrderStatus::Rejected,
            Default::default(),
            Duration::seconds(1),
        );
        assert_eq!(delta.rejections, [(String::new(), 1)]);
    }

    #[test]
    fn merged_deltas_add_up_per_bucket_and_key() {
        let (placed, confirmed) = {
            let order = order();
            let placed = RollupDelta::placed(&order);
            let (_, confirmed) = moved(
                &order,
                OrderStatus::Confirmed,
                TransitionFields::default(),
                Duration::seconds(2),
            );
            (placed, confirmed)
        };
        let later = RollupDelta {
            bucket: placed.bucket + 1,
            ..RollupDelta::placed(&order())
        };
        let merged = merge([placed.clone(), later.clone(), confirmed.clone(), placed.clone()]);
        assert_eq!(merged.len(), 2);
        let first = &merged[0];
        assert_eq!(first.bucket, placed.bucket);
        assert_eq!(first.placed, 2);
        // PENDING twice, then one moved on to CONFIRMED.
        assert_eq!(first.statuses, [(OrderStatus::Confirmed, 1), (OrderStatus::Pending, 1)]);
        assert_eq!(first.sales, confirmed.sales);
        assert_eq!(first.confirmations, confirmed.confirmations);
        assert_eq!(merged[1], later);
        // What cancels out is not written at all.
        let undone = RollupDelta {
            placed: -1,
            statuses: vec![(OrderStatus::Pending, -1)],
            ..placed.clone()
        };
        let nothing = merge([placed.clone(), undone]);
        assert_eq!(nothing[0].statuses, []);
        assert_eq!(nothing[0].placed, 0);
    }

    #[test]
    fn a_delta_survives_its_record() {
        let order = order();
        let (_, delta) = moved(
            &order,
            OrderStatus::Confirmed,
            TransitionFields::default(),
            Duration::seconds(2),
        );
        let recorded = serde_json::to_string(&delta).unwrap();
        assert_eq!(serde_json::from_str::<RollupDelta>(&recorded).unwrap(), delta);
    }
}
