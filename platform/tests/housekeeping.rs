//! The jobs every service has, on both backends, with controlled timestamps: `outbox` removes
//! exactly the sent outbox rows and inbox ids past their windows (never an unsent row, never a
//! younger one), in batches, and two instances at once do the work once; `maintenance` runs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ordermesh_platform::db::columns::Id;
use ordermesh_platform::db::{Database, Migrations};
use ordermesh_platform::events::{OutgoingEvent, Tx, outbox};
use ordermesh_platform::housekeeping::{BATCH, Job, Maintenance, OutboxRetention};
use ordermesh_platform::testing::TestDatabase;
use ordermesh_proto::events::OrderPlaced;
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn retention() -> OutboxRetention {
    OutboxRetention {
        sent_outbox_age: DAY,
        inbox_age: 30 * DAY,
    }
}

async fn open(test_db: &TestDatabase) -> Database {
    let db = Database::connect_with(test_db.url(), "housekeeping", 8).await.unwrap();
    db.migrate(&Migrations::with_platform(&[], &[])).await.unwrap();
    db
}

/// An outbox row sent at `sent_at` (`None`: not sent yet).
async fn outbox_row(db: &Database, sent_at: Option<DateTime<Utc>>) -> Uuid {
    let event = OutgoingEvent::new(
        "test-svc",
        "order-events",
        "OrderPlaced",
        "o-1",
        "c-1",
        &OrderPlaced::default(),
    );
    let mut tx = Tx::begin(db).await.unwrap();
    tx.enqueue(&event).await.unwrap();
    tx.commit().await.unwrap();
    if let Some(at) = sent_at {
        ordermesh_platform::on_pool!(db, |pool| {
            sqlx::query("UPDATE event_outbox SET sent_at = $1 WHERE event_id = $2")
                .bind(at)
                .bind(Id(event.id))
                .execute(pool)
                .await
                .map(drop)
        })
        .unwrap();
    }
    event.id
}

/// An inbox id recorded at `at`.
async fn inbox_row(db: &Database, at: DateTime<Utc>) {
    let id = Uuid::now_v7();
    let mut tx = Tx::begin(db).await.unwrap();
    assert!(outbox::record_inbox(&mut tx, "test-consumer", id).await.unwrap());
    tx.commit().await.unwrap();
    match db {
        Database::Postgres(pool) => sqlx::query("UPDATE event_inbox SET processed_at = $1 WHERE event_id = $2")
            .bind(at)
            .bind(id)
            .execute(pool)
            .await
            .map(drop),
        Database::Sqlite(pool) => sqlx::query("UPDATE event_inbox SET processed_at = $1 WHERE event_id = $2")
            .bind(at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .bind(id.to_string())
            .execute(pool)
            .await
            .map(drop),
    }
    .unwrap();
}

async fn count(db: &Database, sql: &str) -> i64 {
    ordermesh_platform::on_pool!(db, |pool| sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap())
}

#[tokio::test]
async fn outbox_retention_removes_exactly_what_is_past_its_window() {
    for test_db in TestDatabase::both().await.unwrap() {
        let db = open(&test_db).await;
        let now = Utc::now();
        let hour = chrono::Duration::hours(1);
        // Sent rows: two past the window, one just inside it; one never sent, however old.
        for at in [now - hour * 48, now - hour * 25, now - hour * 23] {
            outbox_row(&db, Some(at)).await;
        }
        outbox_row(&db, None).await;
        // Inbox ids: one past 30 days, two inside.
        for at in [now - hour * 24 * 31, now - hour * 24 * 29, now - hour] {
            inbox_row(&db, at).await;
        }

        let report = retention().run(&db, now).await.unwrap();
        assert_eq!(report.count("outbox rows deleted"), 2, "{report}");
        assert_eq!(report.count("inbox ids deleted"), 1, "{report}");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM event_outbox").await, 2);
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM event_outbox WHERE sent_at IS NULL").await,
            1
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM event_inbox").await, 2);
        // Idempotent: a second run finds nothing.
        let again = retention().run(&db, now).await.unwrap();
        assert_eq!(
            (again.count("outbox rows deleted"), again.count("inbox ids deleted")),
            (0, 0)
        );

        Maintenance.run(&db, now).await.unwrap();
        db.close().await;
    }
}

#[tokio::test]
async fn two_instances_at_once_remove_each_row_once() {
    let test_db = TestDatabase::postgres().await.unwrap();
    let db = open(&test_db).await;
    let old = Utc::now() - chrono::Duration::days(3);
    // Several batches' worth of old sent rows, written in one statement.
    let rows = 3 * BATCH + 17;
    ordermesh_platform::on_pool!(&db, |pool| {
        sqlx::query(
            "INSERT INTO event_outbox (event_id, topic, event_type, aggregate_id, source, correlation_id, payload, \
             occur_time, sent_at) SELECT gen_random_uuid(), 'order-events', 'OrderPlaced', 'o', 'test-svc', 'c', \
             '\\x00', $1, $1 FROM generate_series(1, $2)",
        )
        .bind(old)
        .bind(rows)
        .execute(pool)
        .await
        .map(drop)
    })
    .unwrap();
    let (first, second) = (retention(), retention());
    let (a, b) = tokio::join!(first.run(&db, Utc::now()), second.run(&db, Utc::now()));
    let deleted = a.unwrap().count("outbox rows deleted") + b.unwrap().count("outbox rows deleted");
    assert_eq!(deleted, rows as u64, "every row deleted exactly once between the two");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM event_outbox").await, 0);
    db.close().await;
}
