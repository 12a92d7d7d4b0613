//! Outbox and inbox stay bounded: after a run of orders through the whole saga, the `outbox`
//! job leaves every service only the rows still inside their windows — nothing when run as of
//! a month later — and removes nothing that is younger.

use std::time::Duration;

use chrono::Utc;
use ordermesh_e2e::{CountingGateway, Platform};
use ordermesh_platform::db::Database;
use ordermesh_platform::housekeeping::{Job, OutboxRetention};
use ordermesh_proto::order::OrderStatus;

const SERVICES: [&str; 6] = ["product", "customer", "order", "payment", "audit", "notification"];

async fn rows(db: &Database, table: &str) -> i64 {
    ordermesh_platform::on_pool!(db, |pool| sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {table}"
    )))
    .fetch_one(pool)
    .await
    .unwrap())
}

#[tokio::test]
async fn outbox_and_inbox_stay_bounded_under_a_run_of_orders() {
    let platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let product = platform.product(100, 1000).await.unwrap();
    let (token, customer) = platform.client("bounded").await.unwrap();
    let mut orders = Vec::new();
    for i in 0..40 {
        let key = format!("bounded-{i}");
        let placed = platform
            .place(&token, &customer, &[(&product.id, 1)], "tok_approved", &key)
            .await
            .unwrap();
        orders.push(placed.order.unwrap().id);
    }
    for id in &orders {
        platform
            .wait_for(id, &[OrderStatus::Confirmed], Duration::from_secs(60))
            .await
            .unwrap();
    }
    // Every relay has published (and marked sent) what the saga wrote.
    for service in SERVICES {
        let db = Database::connect(platform.database_url(), service).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while rows(&db, "event_outbox WHERE sent_at IS NULL").await > 0 {
            assert!(tokio::time::Instant::now() < deadline, "{service}: outbox not drained");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        db.close().await;
    }
    // Let the last events reach their consumers.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let retention = OutboxRetention::new(&platform.events);
    let month_later = Utc::now() + chrono::Duration::days(31);
    let (mut before, mut removed_now) = (0, 0);
    for service in SERVICES {
        let db = Database::connect(platform.database_url(), service).await.unwrap();
        let outbox = rows(&db, "event_outbox").await;
        let inbox = rows(&db, "event_inbox").await;
        before += outbox + inbox;
        let now = retention.run(&db, Utc::now()).await.unwrap();
        removed_now += now.count("outbox rows deleted") + now.count("inbox ids deleted");
        let later = retention.run(&db, month_later).await.unwrap();
        assert_eq!(
            later.count("outbox rows deleted") as i64,
            outbox,
            "{service}: every sent outbox row, once past its window"
        );
        assert_eq!(
            later.count("inbox ids deleted") as i64,
            inbox,
            "{service}: every inbox id"
        );
        assert_eq!(
            rows(&db, "event_outbox").await + rows(&db, "event_inbox").await,
            0,
            "{service}"
        );
        db.close().await;
    }
    assert!(before > 200, "the run left {before} outbox and inbox rows");
    assert_eq!(removed_now, 0, "nothing young is removed");
}
