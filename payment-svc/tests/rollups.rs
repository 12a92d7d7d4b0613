//! The revenue rollup agrees with the transactions: captures and refunds that succeed when
//! inserted or later (and one that fails, an authorisation, a capture in another currency),
//! read for a range, equal the sums recomputed from the transactions; the backfill of migration 0003 rebuilds the same rollup. Both backends.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use ordermesh_platform::analytics::DayRange;
use ordermesh_platform::db::Database;
use ordermesh_platform::testing::TestDatabase;
use ordermesh_platform::validate::Money;
use ordermesh_proto::common;
use payment_svc::domain::{DayRevenue, Payment, PaymentStatus, Transaction, TransactionKind, TransactionStatus};
use payment_svc::store::{self, Store};
use uuid::Uuid;

fn payment(currency: &str, at: DateTime<Utc>) -> Payment {
    Payment {
        id: Uuid::now_v7(),
        order_id: Uuid::now_v7(),
        customer_id: Uuid::now_v7(),
        amount: Money {
            amount_minor: 10_000,
            currency_code: currency.into(),
        },
        captured_minor: 0,
        refunded_minor: 0,
        status: PaymentStatus::Authorized,
        decline_reason: String::new(),
        gateway_reference: String::new(),
        create_time: at,
        update_time: at,
    }
}

fn transaction(payment: &Payment, kind: TransactionKind, amount: i64, status: TransactionStatus) -> Transaction {
    Transaction {
        id: Uuid::now_v7(),
        payment_id: payment.id,
        kind,
        amount_minor: amount,
        status,
        gateway_reference: String::new(),
        failure_reason: String::new(),
        idempotency_key: Some(Uuid::now_v7().to_string()),
        request_hash: "h".into(),
        capture: false,
        refund_id: None,
        create_time: payment.create_time,
        update_time: payment.create_time,
    }
}

/// The revenue recomputed from the transactions as they ended up.
fn recomputed(transactions: &[(String, Transaction)], range: &DayRange) -> Vec<DayRevenue> {
    let (from, to) = range.instants();
    let mut sums: BTreeMap<(chrono::NaiveDate, String), (i64, i64)> = BTreeMap::new();
    for (currency, t) in transactions {
        if t.status != TransactionStatus::Succeeded || t.update_time < from || t.update_time >= to {
            continue;
        }
        let sum = sums
            .entry((t.update_time.with_timezone(&range.zone).date_naive(), currency.clone()))
            .or_default();
        match t.kind {
            TransactionKind::Capture => sum.0 += t.amount_minor,
            TransactionKind::Refund => sum.1 += t.amount_minor,
            _ => {}
        }
    }
    sums.into_iter()
        .map(|((day, currency), (captured_minor, refunded_minor))| DayRevenue {
            day,
            currency,
            captured_minor,
            refunded_minor,
        })
        .filter(|r| r.captured_minor != 0 || r.refunded_minor != 0)
        .collect()
}

async fn revenue_agrees(url: &str, postgres: bool) {
    let db = Database::connect(url, payment_svc::SERVICE).await.unwrap();
    db.migrate(&store::migrations()).await.unwrap();
    let store = Store::new(&db);
    let now = Utc::now();
    let mut written: Vec<(String, Transaction)> = Vec::new();
    // (currency, placed ago, kind, amount, inserted as, settled as `Some(status)` some time later)
    use TransactionKind::*;
    use TransactionStatus::*;
    let plans = [
        (
            "EUR",
            Duration::days(10),
            Capture,
            4000,
            Pending,
            Some((Succeeded, Duration::minutes(20))),
        ),
        ("EUR", Duration::days(10), Refund, 1500, Succeeded, None),
        (
            "EUR",
            Duration::days(3),
            Capture,
            999,
            Pending,
            Some((Failed, Duration::seconds(5))),
        ),
        ("EUR", Duration::days(3), Authorize, 7000, Succeeded, None),
        ("USD", Duration::hours(5), Capture, 2500, Succeeded, None),
        (
            "USD",
            Duration::hours(1),
            Refund,
            700,
            Pending,
            Some((Succeeded, Duration::days(2))),
        ),
        ("EUR", Duration::days(500), Capture, 123, Succeeded, None),
    ];
    for (currency, ago, kind, amount, status, settled) in plans {
        let at = now - ago + Duration::microseconds(654_321);
        let p = payment(currency, at);
        let mut t = transaction(&p, kind, amount, status);
        let mut tx = ordermesh_platform::events::Tx::begin(store.database()).await.unwrap();
        store.insert_payment(&mut tx, &p).await.unwrap();
        store.insert_transaction(&mut tx, &t).await.unwrap();
        tx.commit().await.unwrap();
        if let Some((status, later)) = settled {
            t.status = status;
            t.update_time = at + later;
            let mut tx = ordermesh_platform::events::Tx::begin(store.database()).await.unwrap();
            store.update_transaction(&mut tx, &t).await.unwrap();
            tx.commit().await.unwrap();
        }
        written.push((currency.to_owned(), t));
    }

    let today = now.date_naive();
    let ranges: Vec<DayRange> = [(30, "Europe/Berlin"), (1, "Pacific/Auckland"), (364, "UTC")]
        .into_iter()
        .map(|(days, zone)| {
            let range = common::DateRange {
                start_date: (today - Duration::days(days)).format("%Y-%m-%d").to_string(),
                end_date: (today + Duration::days(3)).format("%Y-%m-%d").to_string(),
                time_zone: zone.into(),
            };
            DayRange::parse(Some(&range), "range", 400).unwrap()
        })
        .collect();
    let read_all = async || {
        let mut all = Vec::new();
        for range in &ranges {
            let (days, _) = payment_svc::domain::revenue_by_day(&store.revenue(range).await.unwrap());
            all.push(days);
        }
        all
    };
    let incremental = read_all().await;
    for (range, read) in ranges.iter().zip(&incremental) {
        assert_eq!(read, &recomputed(&written, range), "{range:?}");
    }
    let captured: i64 = incremental[2].iter().map(|r| r.captured_minor).sum();
    assert_eq!(
        captured,
        4000 + 2500,
        "the failed capture, the authorisation and the old capture are not counted"
    );

    // The backfill of migration 0003 rebuilds the same rollup from the rows.
    let migration = if postgres {
        include_str!("../migrations/postgres/0003_rollups.sql")
    } else {
        include_str!("../migrations/sqlite/0003_rollups.sql")
    };
    let backfill = &migration[migration.find("-- Backfill").expect("a backfill section")..];
    match &db {
        Database::Postgres(pool) => {
            sqlx::raw_sql("DELETE FROM payment_rollup_revenue")
                .execute(pool)
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(backfill))
                .execute(pool)
                .await
                .unwrap();
        }
        Database::Sqlite(pool) => {
            sqlx::raw_sql("DELETE FROM payment_rollup_revenue")
                .execute(pool)
                .await
                .unwrap();
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
async fn revenue_rollup_agrees_with_the_transactions_on_both_backends() {
    for db in TestDatabase::both().await.unwrap() {
        revenue_agrees(db.url(), db.is_postgres()).await;
    }
}
