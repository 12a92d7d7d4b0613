//! The analytics rollups agree with the orders: after a mix of transitions (sold and then
//! cancelled, rejected with and without a code, shipped and delivered, left pending) on
//! orders spread over a year, the figures read from the rollups equal those recomputed from
//! the orders themselves; erasing a customer changes none of them; and the backfill of
//! migration 0003 rebuilds the very same rollups from the rows. On PostgreSQL and SQLite.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use order_svc::domain::analytics::{OrderFigures, SOLD, p95_rank};
use order_svc::domain::{HistoryEntry, Order, OrderStatus, PricedLine, TransitionFields};
use order_svc::store::{self, Store};
use ordermesh_platform::analytics::DayRange;
use ordermesh_platform::db::Database;
use ordermesh_platform::testing::TestDatabase;
use ordermesh_proto::common;
use uuid::Uuid;

const KETTLE: &str = "0190a0a0-0000-7000-8000-00000000000a";
const LAMP: &str = "0190a0a0-0000-7000-8000-00000000000b";

fn line(product_id: &str, sku: &str, quantity: i32, price: i64) -> PricedLine {
    PricedLine {
        product_id: product_id.into(),
        sku: sku.into(),
        name: format!("{sku} name"),
        unit_price_minor: price,
        currency: "EUR".into(),
        quantity,
    }
}

fn new_order(customer_id: Uuid, items: Vec<PricedLine>, created_at: DateTime<Utc>) -> Order {
    Order {
        id: Uuid::now_v7(),
        customer_id,
        status: OrderStatus::Pending,
        total_minor: items.iter().map(|l| l.unit_price_minor * i64::from(l.quantity)).sum(),
        items,
        currency: "EUR".into(),
        payment_method_token: "tok_approved".into(),
        idempotency_key: None,
        rejection_code: None,
        rejection_reason: None,
        cancellation_reason: None,
        payment_id: None,
        shipping_address: Some(vec![1]),
        carrier: None,
        tracking_number: None,
        correlation_id: "corr".into(),
        version: 1,
        created_at,
        updated_at: created_at,
        shipped_at: None,
        delivered_at: None,
        history: vec![HistoryEntry {
            seq: 1,
            from: None,
            to: OrderStatus::Pending,
            reason: None,
            actor: "client:c1".into(),
            cause_event_id: None,
            changed_at: created_at,
        }],
    }
}

/// Moves order `id` to `to` at `after` past its placement, as the saga does.
async fn go(store: &Store, id: Uuid, to: OrderStatus, code: Option<&str>, after: Duration) {
    let mut tx = store.begin().await.unwrap();
    let order = store.get_in_tx(&mut tx, id).await.unwrap().unwrap();
    let at = order.created_at + after;
    let entry = HistoryEntry {
        seq: order.next_history_seq(),
        from: Some(order.status),
        to,
        reason: None,
        actor: "order-svc".into(),
        cause_event_id: None,
        changed_at: at,
    };
    let fields = TransitionFields {
        rejection_code: code.map(str::to_owned),
        ..Default::default()
    };
    assert!(
        store
            .apply_transition(&mut tx, &order, to, &fields, &entry, at)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
}

fn range(start: NaiveDate, end: NaiveDate, zone: &str) -> DayRange {
    let range = common::DateRange {
        start_date: start.format("%Y-%m-%d").to_string(),
        end_date: end.format("%Y-%m-%d").to_string(),
        time_zone: zone.into(),
    };
    DayRange::parse(Some(&range), "range", 400).unwrap()
}

/// The figures recomputed from the orders placed in `range` (as read back from the store).
fn recomputed(orders: &[Order], range: &DayRange, top: usize) -> OrderFigures {
    let (from, to) = range.instants();
    let placed: Vec<&Order> = orders
        .iter()
        .filter(|o| o.created_at >= from && o.created_at < to)
        .collect();
    let mut by_status: BTreeMap<&str, i64> = BTreeMap::new();
    let mut rejections: BTreeMap<String, i64> = BTreeMap::new();
    let mut sales: BTreeMap<(Uuid, String, String), (String, i64, i64)> = BTreeMap::new();
    let mut times: Vec<i64> = Vec::new();
    let mut by_day: Vec<(NaiveDate, i64)> = Vec::new();
    for order in &placed {
        *by_status.entry(order.status.as_str()).or_default() += 1;
        if order.status == OrderStatus::Rejected {
            *rejections
                .entry(order.rejection_code.clone().unwrap_or_default())
                .or_default() += 1;
        }
        if SOLD.contains(&order.status) {
            for l in &order.items {
                let key = (
                    Uuid::parse_str(&l.product_id).unwrap(),
                    l.sku.clone(),
                    l.currency.clone(),
                );
                let sold = sales.entry(key).or_insert((l.name.clone(), 0, 0));
                sold.1 += i64::from(l.quantity);
                sold.2 += i64::from(l.quantity) * l.unit_price_minor;
            }
        }
        for entry in order.history.iter().filter(|h| h.to == OrderStatus::Confirmed) {
            times.push(entry.changed_at.timestamp_micros() - order.created_at.timestamp_micros());
        }
        by_day.push((order.created_at.with_timezone(&range.zone).date_naive(), 1));
    }
    times.sort();
    let count = times.len() as i64;
    let sales: Vec<_> = sales
        .into_iter()
        .map(
            |((product_id, sku, currency), (name, units, revenue_minor))| order_svc::domain::analytics::ProductSales {
                product_id,
                sku,
                name,
                currency,
                units,
                revenue_minor,
            },
        )
        .collect();
    let (top_by_units, top_by_revenue) = order_svc::domain::analytics::top_sellers(&sales, top);
    OrderFigures {
        orders: placed.len() as i64,
        by_status: by_status
            .into_iter()
            .map(|(s, n)| (OrderStatus::parse(s).unwrap(), n))
            .collect(),
        by_day: order_svc::domain::analytics::every_day(range.days(), &by_day),
        top_by_units,
        top_by_revenue,
        time_to_confirm: order_svc::domain::analytics::ConfirmationTimes {
            count,
            mean_seconds: (count > 0).then(|| times.iter().sum::<i64>() as f64 / count as f64 / 1e6),
            p95_seconds: p95_rank(count).map(|rank| times[rank as usize] as f64 / 1e6),
        },
        rejections: rejections.into_iter().collect(),
    }
}

/// `read` equals `expected`, the 95th percentile within the histogram's 1 % and the mean to
/// floating-point rounding; lists compared regardless of order.
fn assert_agree(mut read: OrderFigures, mut expected: OrderFigures, what: &str) {
    let (r, e) = (read.time_to_confirm, expected.time_to_confirm);
    assert_eq!(r.count, e.count, "{what}: confirmations");
    match (r.p95_seconds, e.p95_seconds) {
        (Some(r), Some(e)) => assert!((r - e).abs() <= e.abs() * 0.01 + 5e-7, "{what}: p95 {r} vs {e}"),
        (r, e) => assert_eq!(r, e, "{what}: p95"),
    }
    match (r.mean_seconds, e.mean_seconds) {
        (Some(r), Some(e)) => assert!((r - e).abs() <= 1e-9, "{what}: mean {r} vs {e}"),
        (r, e) => assert_eq!(r, e, "{what}: mean"),
    }
    read.time_to_confirm = expected.time_to_confirm;
    for figures in [&mut read, &mut expected] {
        figures.by_status.sort_by_key(|(s, _)| s.as_str());
        figures.rejections.sort();
    }
    assert_eq!(read, expected, "{what}");
}

async fn rollups_agree(url: &str, postgres: bool) {
    let db = Database::connect(url, "orders").await.unwrap();
    db.migrate(&store::migrations()).await.unwrap();
    let store = Store::new(&db);
    let (customer, other) = (Uuid::now_v7(), Uuid::now_v7());
    let now = Utc::now();
    let kettle = |n| line(KETTLE, "KETTLE", n, 1000);
    let lamp = |n| line(LAMP, "LAMP", n, 2500);
    let s = Duration::seconds;
    let ms = Duration::milliseconds;
    // (placed ago, lines, customer, steps: status, rejection code, time after placement)
    use OrderStatus::*;
    type Steps = Vec<(OrderStatus, Option<&'static str>, Duration)>;
    let plans: Vec<(Duration, Vec<PricedLine>, Uuid, Steps)> = vec![
        (
            Duration::days(100),
            vec![kettle(2), lamp(1)],
            customer,
            vec![
                (Reserved, None, s(1)),
                (Confirmed, None, ms(1500)),
                (Shipped, None, s(90)),
                (Delivered, None, s(900)),
            ],
        ),
        (
            Duration::days(40),
            vec![kettle(1)],
            customer,
            vec![
                (Reserved, None, ms(300)),
                (Confirmed, None, ms(250)),
                (Cancelled, None, s(60)),
            ],
        ),
        (
            Duration::days(1),
            vec![lamp(3)],
            other,
            vec![(Rejected, Some("OUT_OF_STOCK"), s(1))],
        ),
        (
            Duration::minutes(5),
            vec![kettle(1)],
            other,
            vec![(Reserved, None, s(1)), (Rejected, Some("PAYMENT_DECLINED"), s(2))],
        ),
        (Duration::minutes(3), vec![lamp(1)], other, vec![(Rejected, None, s(1))]),
        (
            Duration::hours(2),
            vec![lamp(2), kettle(4)],
            other,
            vec![(Reserved, None, s(1)), (Confirmed, None, ms(42_123))],
        ),
        (Duration::hours(3), vec![kettle(1)], customer, vec![]),
        (
            Duration::days(200),
            vec![kettle(7)],
            other,
            vec![(Reserved, None, s(1)), (Confirmed, None, s(3600))],
        ),
        (
            Duration::days(400),
            vec![lamp(9)],
            other,
            vec![(Reserved, None, s(1)), (Confirmed, None, s(5))],
        ),
    ];
    let mut ids = Vec::new();
    let mut writes = 0;
    for (ago, items, customer_id, steps) in plans {
        writes += 1 + steps.len() as u64;
        // Microseconds past the second, so the rollups' times are checked to the microsecond.
        let order = new_order(customer_id, items, now - ago + Duration::microseconds(123_457));
        let mut tx = store.begin().await.unwrap();
        store.insert(&mut tx, &order).await.unwrap();
        tx.commit().await.unwrap();
        for (to, code, after) in steps {
            go(&store, order.id, to, code, after).await;
        }
        ids.push(order.id);
    }
    let mut orders = Vec::new();
    for id in &ids {
        orders.push(store.get(*id).await.unwrap().unwrap());
    }

    let today = now.date_naive();
    let ranges = [
        range(today - Duration::days(364), today + Duration::days(1), "Europe/Berlin"),
        range(today - Duration::days(1), today + Duration::days(1), "Asia/Kathmandu"),
        range(today - Duration::days(45), today - Duration::days(30), "UTC"),
    ];
    // Folds racing each other (replicas, reads) fold each recorded change exactly once.
    let (a, b, c, d) = tokio::join!(
        store.fold_rollups(),
        store.fold_rollups(),
        store.fold_rollups(),
        store.fold_rollups()
    );
    assert_eq!(a.unwrap() + b.unwrap() + c.unwrap() + d.unwrap(), writes);
    assert_eq!(store.fold_rollups().await.unwrap(), 0, "nothing left to fold");
    let read_all = async || {
        let mut all = Vec::new();
        for range in &ranges {
            all.push(store.analytics(range, 5).await.unwrap());
        }
        all
    };
    let incremental = read_all().await;
    for (range, read) in ranges.iter().zip(&incremental) {
        assert_agree(read.clone(), recomputed(&orders, range, 5), &format!("{range:?}"));
    }
    assert_eq!(
        incremental[0].orders, 8,
        "the order of 400 days ago is outside the year"
    );
    assert_eq!(incremental[0].time_to_confirm.count, 4);

    // Erasure keeps amounts, statuses and times: no figure changes.
    let mut tx = store.begin().await.unwrap();
    store.anonymise_customer(&mut tx, customer).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(read_all().await, incremental, "after an erasure");

    // The backfill of migration 0003, run on the same rows, builds the same rollups.
    let migration = if postgres {
        include_str!("../migrations/postgres/0003_rollups.sql")
    } else {
        include_str!("../migrations/sqlite/0003_rollups.sql")
    };
    let backfill = &migration[migration.find("-- Backfill").expect("a backfill section")..];
    let wipe = "DELETE FROM order_rollup_placed; DELETE FROM order_rollup_status; DELETE FROM order_rollup_rejections; \
                DELETE FROM order_rollup_sales; DELETE FROM order_rollup_confirm;";
    match &db {
        Database::Postgres(pool) => {
            sqlx::raw_sql(wipe).execute(pool).await.unwrap();
            assert_eq!(store.analytics(&ranges[0], 5).await.unwrap().orders, 0, "wiped");
            sqlx::raw_sql(sqlx::AssertSqlSafe(backfill))
                .execute(pool)
                .await
                .unwrap();
        }
        Database::Sqlite(pool) => {
            sqlx::raw_sql(wipe).execute(pool).await.unwrap();
            assert_eq!(store.analytics(&ranges[0], 5).await.unwrap().orders, 0, "wiped");
            sqlx::raw_sql(sqlx::AssertSqlSafe(backfill))
                .execute(pool)
                .await
                .unwrap();
        }
    }
    assert_eq!(read_all().await, incremental, "after the backfill");
    db.close().await;
}

#[tokio::test]
async fn rollups_agree_with_the_orders_on_both_backends() {
    for db in TestDatabase::both().await.unwrap() {
        rollups_agree(db.url(), db.is_postgres()).await;
    }
}
