//! GDPR in the customer store, on PostgreSQL and SQLite: the erasure request and its
//! confirmations, export jobs, and the retention jobs (with controlled timestamps).

use chrono::{TimeDelta, Utc};
use customer_svc::domain::{self, Address, Customer, CustomerInput, CustomerStatus, DataExport, Identity};
use customer_svc::housekeeping::{ExpiredExports, InactiveCustomers, idempotency_keys};
use customer_svc::store::{self, Erased, Store};
use ordermesh_platform::db::Database;
use ordermesh_platform::db::columns::{Id, Time};
use ordermesh_platform::events::{TopicEvents, Tx};
use ordermesh_platform::housekeeping::Job;
use ordermesh_platform::testing::TestDatabase;
use ordermesh_platform::{Origin, ServiceError};
use ordermesh_proto::event_types::GdprEvent;
use uuid::Uuid;

const PARTICIPANTS: [&str; 3] = ["order", "payment", "notification"];

async fn open(test_db: &TestDatabase) -> (Database, Store) {
    let db = Database::connect(test_db.url(), customer_svc::SERVICE).await.unwrap();
    db.migrate(&store::migrations()).await.unwrap();
    (db.clone(), Store::new(&db))
}

fn customer(email: &str, subject: &str) -> Customer {
    let input = CustomerInput {
        display_name: "Grace Hopper".into(),
        email: email.into(),
        phone: "+4915112345678".into(),
        addresses: vec![Address {
            line1: "Navy Yard 1".into(),
            city: "Arlington".into(),
            country_code: "US".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let identity = Identity {
        issuer: "https://login.example/clients".into(),
        subject: subject.into(),
    };
    domain::new_customer(&input, Some(identity), "").unwrap()
}

fn anyone(_: &Customer) -> bool {
    true
}

/// The gdpr-events in the outbox, by type name.
async fn gdpr_events(db: &Database) -> Vec<GdprEvent> {
    let rows: Vec<(String, Vec<u8>)> = ordermesh_platform::on_pool!(db, |pool| {
        sqlx::query_as("SELECT event_type, payload FROM event_outbox WHERE topic = 'gdpr-events' ORDER BY seq")
            .fetch_all(pool)
            .await
    })
    .unwrap();
    rows.iter()
        .map(|(kind, payload)| GdprEvent::decode(kind, payload).unwrap().unwrap())
        .collect()
}

async fn set_time(db: &Database, sql: &str, id: Uuid, at: chrono::DateTime<Utc>) {
    ordermesh_platform::on_pool!(db, |pool| {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(Time(at))
            .bind(Id(id))
            .execute(pool)
            .await
            .map(drop)
    })
    .unwrap();
}

async fn confirm(db: &Database, store: &Store, erasure: Uuid, service: &str) -> domain::Erasure {
    let mut tx = Tx::begin(db).await.unwrap();
    let erasure = store
        .confirm_erasure(&mut tx, erasure, service, &PARTICIPANTS, "corr-1")
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    erasure
}

#[tokio::test]
async fn an_erasure_clears_the_profile_at_once_and_completes_when_every_service_confirmed() {
    for test_db in TestDatabase::both().await.unwrap() {
        let (db, store) = open(&test_db).await;
        let grace = customer("grace@example.com", "sub-grace");
        store
            .create_customer(&grace, Some("k-grace"), &Origin::system("test"))
            .await
            .unwrap();
        let export = DataExport::new(grace.id, Origin::system("test").actor, "c".into(), Utc::now());
        store.request_export(&export).await.unwrap();

        let Erased {
            customer: erased,
            erasure,
            now,
        } = store
            .erase_customer(
                grace.id,
                "data subject request".into(),
                &anyone,
                &Origin::system("test"),
            )
            .await
            .unwrap();
        assert!(now);
        assert_eq!(erased.status, CustomerStatus::Erasing);
        let stored = store.get_customer(grace.id).await.unwrap().unwrap();
        assert_eq!(
            (
                stored.display_name.as_str(),
                stored.email.as_str(),
                stored.phone.as_str()
            ),
            ("", "", "")
        );
        assert!(stored.addresses.is_empty() && stored.identity.is_none() && stored.erase_time.is_some());
        assert!(
            store
                .get_customer_by_identity("https://login.example/clients", "sub-grace")
                .await
                .unwrap()
                .is_none(),
            "the sign-in maps to no customer"
        );
        assert!(
            store.get_export(export.id).await.unwrap().is_none(),
            "export bundles are erased too"
        );

        // A repeat changes nothing and answers with the same request.
        let again = store
            .erase_customer(grace.id, "again".into(), &anyone, &Origin::system("test"))
            .await
            .unwrap();
        assert!(!again.now);
        assert_eq!(again.erasure.id, erasure.id);

        // ERASED only when all three have confirmed; a repeated confirmation counts once.
        assert_eq!(
            confirm(&db, &store, erasure.id, "order").await.pending(&PARTICIPANTS),
            ["payment", "notification"]
        );
        confirm(&db, &store, erasure.id, "order").await;
        confirm(&db, &store, erasure.id, "payment").await;
        let status = store.get_customer(grace.id).await.unwrap().unwrap().status;
        assert_eq!(status, CustomerStatus::Erasing);
        let done = confirm(&db, &store, erasure.id, "notification").await;
        assert!(done.complete_time.is_some());
        assert_eq!(
            store.get_customer(grace.id).await.unwrap().unwrap().status,
            CustomerStatus::Erased
        );
        let events = gdpr_events(&db).await;
        let names: Vec<&str> = events
            .iter()
            .map(|e| e.type_name().rsplit('.').next().unwrap())
            .collect();
        assert_eq!(
            names,
            ["ErasureRequested", "CustomerErased"],
            "one request, one completion"
        );

        // Changes are refused; the same person signing up again is a new customer.
        let refused = store
            .update_customer(grace.id, &Default::default(), None, &anyone, &Origin::system("test"))
            .await;
        assert!(matches!(refused, Err(ServiceError::FailedPrecondition { .. })));
        let new = customer("grace@example.com", "sub-grace");
        store
            .create_customer(&new, None, &Origin::system("test"))
            .await
            .unwrap();
        assert_ne!(new.id, grace.id);
        db.close().await;
    }
}

#[tokio::test]
async fn retention_jobs_remove_exactly_what_is_past_their_rule() {
    for test_db in TestDatabase::both().await.unwrap() {
        let (db, store) = open(&test_db).await;
        let now = Utc::now();
        let years = |n: i64| TimeDelta::days(365 * n);

        // Exports: one expired, one still downloadable, one pending.
        let mut ids = Vec::new();
        for (i, expire) in [Some(now - TimeDelta::hours(1)), Some(now + TimeDelta::hours(1)), None]
            .into_iter()
            .enumerate()
        {
            let owner = customer(&format!("e{i}@example.com"), &format!("sub-e{i}"));
            store
                .create_customer(&owner, None, &Origin::system("test"))
                .await
                .unwrap();
            let mut export = DataExport::new(owner.id, Origin::system("test").actor, "c".into(), now);
            store.request_export(&export).await.unwrap();
            if let Some(expire) = expire {
                export.complete_time = Some(expire - TimeDelta::days(7));
                export.expire_time = Some(expire);
                export.document = Some("{}".into());
                let event = customer_svc::events::data_exported(&export);
                assert!(store.complete_export(&export, &event).await.unwrap());
            }
            ids.push(export.id);
        }
        let report = ExpiredExports.run(&db, now).await.unwrap();
        assert_eq!(report.count("expired exports deleted"), 1, "{report}");
        let left: Vec<bool> = exports_exist(&db, &ids).await;
        assert_eq!(left, [false, true, true]);

        // Idempotency keys: forgotten after 7 days.
        let (old, young) = (
            customer("old@example.com", "sub-old"),
            customer("young@example.com", "sub-young"),
        );
        store
            .create_customer(&old, Some("k-old"), &Origin::system("test"))
            .await
            .unwrap();
        store
            .create_customer(&young, Some("k-young"), &Origin::system("test"))
            .await
            .unwrap();
        set_time(
            &db,
            "UPDATE customers SET create_time = $1 WHERE id = $2",
            old.id,
            now - TimeDelta::days(8),
        )
        .await;
        let report = idempotency_keys().run(&db, now).await.unwrap();
        assert_eq!(report.count("idempotency keys forgotten"), 1, "{report}");

        // Inactivity: 7 years without activity is erased, 6 years is not; activity resets it.
        let (dormant, quiet) = (
            customer("dormant@example.com", "sub-d"),
            customer("quiet@example.com", "sub-q"),
        );
        for c in [&dormant, &quiet] {
            store.create_customer(c, None, &Origin::system("test")).await.unwrap();
        }
        let activity = "UPDATE customers SET last_activity_time = $1 WHERE id = $2";
        set_time(&db, activity, dormant.id, now - years(8)).await;
        set_time(&db, activity, quiet.id, now - years(8)).await;
        store.touch_activity(quiet.id, now - years(6)).await.unwrap();
        let report = InactiveCustomers.run(&db, now).await.unwrap();
        assert_eq!(report.count("inactive customers erased"), 1, "{report}");
        let status = |id| {
            let store = store.clone();
            async move { store.get_customer(id).await.unwrap().unwrap().status }
        };
        assert_eq!(status(dormant.id).await, CustomerStatus::Erasing);
        assert_eq!(status(quiet.id).await, CustomerStatus::Active);
        let erasure = store.erasure_of(dormant.id).await.unwrap().unwrap();
        assert_eq!(erasure.reason, customer_svc::housekeeping::INACTIVITY_REASON);
        let again = InactiveCustomers.run(&db, now).await.unwrap();
        assert_eq!(again.count("inactive customers erased"), 0, "idempotent");
        db.close().await;
    }
}

/// Whether each export still exists (expired or not).
async fn exports_exist(db: &Database, ids: &[Uuid]) -> Vec<bool> {
    let mut exists = Vec::new();
    for id in ids {
        let n: i64 = ordermesh_platform::on_pool!(db, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM data_exports WHERE id = $1")
                .bind(Id(*id))
                .fetch_one(pool)
                .await
        })
        .unwrap();
        exists.push(n == 1);
    }
    exists
}

#[tokio::test]
async fn two_instances_of_the_inactivity_job_erase_each_customer_once() {
    let test_db = TestDatabase::postgres().await.unwrap();
    let (db, store) = open(&test_db).await;
    let long_ago = Utc::now() - TimeDelta::days(8 * 365);
    let mut ids = Vec::new();
    for i in 0..30 {
        let c = customer(&format!("c{i}@example.com"), &format!("sub-{i}"));
        store.create_customer(&c, None, &Origin::system("test")).await.unwrap();
        set_time(
            &db,
            "UPDATE customers SET last_activity_time = $1 WHERE id = $2",
            c.id,
            long_ago,
        )
        .await;
        ids.push(c.id);
    }
    let (a, b) = tokio::join!(
        InactiveCustomers.run(&db, Utc::now()),
        InactiveCustomers.run(&db, Utc::now())
    );
    let erased = a.unwrap().count("inactive customers erased") + b.unwrap().count("inactive customers erased");
    assert_eq!(erased, 30);
    let requests = gdpr_events(&db).await.len();
    assert_eq!(requests, 30, "one ErasureRequested per customer");
    db.close().await;
}
