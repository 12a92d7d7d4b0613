//! The store's behaviour, on PostgreSQL and on SQLite.

use std::collections::BTreeMap;

use chrono::{SubsecRound, Utc};
use notification_svc::domain::{Channel, Kind, NewNotification, Preferences, Recipient, Scope};
use notification_svc::events::store_all;
use notification_svc::store::{self, Store, View};
use ordermesh_platform::auth::Role;
use ordermesh_platform::db::Database;
use ordermesh_platform::testing::TestDatabase;
use uuid::Uuid;

async fn open(test_db: &TestDatabase) -> (Database, Store) {
    let db = Database::connect(test_db.url(), notification_svc::SERVICE)
        .await
        .unwrap();
    db.migrate(&store::migrations()).await.unwrap();
    (db.clone(), Store::new(&db))
}

fn note(recipient: Recipient, kind: Kind, title: &str) -> NewNotification {
    NewNotification {
        recipient,
        kind,
        title: title.to_owned(),
        body: format!("{title} body"),
        data: BTreeMap::from([("order_id".to_owned(), "o-1".to_owned())]),
        correlation_id: "corr-1".into(),
        sender_id: String::new(),
        idempotency_key: None,
    }
}

async fn insert(store: &Store, new: &NewNotification) -> i64 {
    let mut tx = store.begin().await.unwrap();
    let stored = store.insert(&mut tx, new, Utc::now().trunc_subsecs(6)).await.unwrap();
    tx.commit().await.unwrap();
    stored.id
}

fn view<'a>(scope: &'a Scope, reader: Option<&'a str>, kinds: &'a [Kind]) -> View<'a> {
    View { scope, reader, kinds }
}

#[tokio::test]
async fn store_behaviour_on_both_backends() {
    for test_db in TestDatabase::both().await.unwrap() {
        let backend = if test_db.is_postgres() { "postgres" } else { "sqlite" };
        let (db, store) = open(&test_db).await;
        let alice = Uuid::now_v7();
        let bob = Uuid::now_v7();
        assert_eq!(store.max_id().await.unwrap(), 0, "{backend}");

        let a1 = insert(&store, &note(Recipient::Customer(alice), Kind::OrderStatus, "a1")).await;
        let b1 = insert(&store, &note(Recipient::Customer(bob), Kind::OrderStatus, "b1")).await;
        let om = insert(
            &store,
            &note(Recipient::Role(Role::OrderManager), Kind::OrderStatus, "om"),
        )
        .await;
        let a2 = insert(&store, &note(Recipient::Customer(alice), Kind::Payment, "a2")).await;
        let cs = insert(
            &store,
            &note(Recipient::Role(Role::CustomerService), Kind::System, "cs"),
        )
        .await;
        assert!(a1 < b1 && b1 < om && om < a2 && a2 < cs, "{backend}: ids increase");
        assert_eq!(store.max_id().await.unwrap(), cs);

        // Round trip.
        let got = store.get(a1).await.unwrap().unwrap();
        assert_eq!(got.recipient, Recipient::Customer(alice));
        assert_eq!((got.title.as_str(), got.kind), ("a1", Kind::OrderStatus));
        assert_eq!(got.data["order_id"], "o-1");
        assert_eq!(got.correlation_id, "corr-1");
        assert!(store.get(999_999).await.unwrap().is_none());

        // Scopes: a customer, role groups, everything.
        let alice_scope = Scope::customer(alice);
        let reader = notification_svc::domain::customer_key(alice);
        let list = store
            .list(&view(&alice_scope, Some(&reader), &[]), false, None, 10)
            .await
            .unwrap();
        assert_eq!(
            list.iter().map(|n| n.id).collect::<Vec<_>>(),
            [a2, a1],
            "{backend}: newest first"
        );
        let staff = Scope::roles([Role::OrderManager, Role::CustomerService]);
        let list = store.list(&view(&staff, None, &[]), false, None, 10).await.unwrap();
        assert_eq!(list.iter().map(|n| n.id).collect::<Vec<_>>(), [cs, om]);
        let all = Scope::everything();
        assert_eq!(
            store.list(&view(&all, None, &[]), false, None, 10).await.unwrap().len(),
            5
        );
        // Type filter and keyset pages.
        let payments = store
            .list(&view(&alice_scope, None, &[Kind::Payment]), false, None, 10)
            .await
            .unwrap();
        assert_eq!(payments.iter().map(|n| n.id).collect::<Vec<_>>(), [a2]);
        let page = store.list(&view(&all, None, &[]), false, Some(om), 10).await.unwrap();
        assert_eq!(page.iter().map(|n| n.id).collect::<Vec<_>>(), [b1, a1]);

        // Replay after an id, oldest first.
        let replay = store.after(&view(&alice_scope, None, &[]), a1, 10).await.unwrap();
        assert_eq!(replay.iter().map(|n| n.id).collect::<Vec<_>>(), [a2]);
        let replay = store.after(&view(&all, None, &[]), 0, 2).await.unwrap();
        assert_eq!(replay.iter().map(|n| n.id).collect::<Vec<_>>(), [a1, b1]);

        // Read state per reader; ids outside the scope are ignored.
        let now = Utc::now().trunc_subsecs(6);
        assert_eq!(store.unread_count(&alice_scope, Some(&reader)).await.unwrap(), 2);
        let updated = store
            .mark_read(&alice_scope, &reader, Some(&[a1, b1, a1]), now)
            .await
            .unwrap();
        assert_eq!(updated, 1, "{backend}: only a1 changes");
        assert_eq!(store.unread_count(&alice_scope, Some(&reader)).await.unwrap(), 1);
        let list = store
            .list(&view(&alice_scope, Some(&reader), &[]), false, None, 10)
            .await
            .unwrap();
        assert_eq!(list[1].read_at, Some(now));
        assert!(list[0].read_at.is_none());
        let unread = store
            .list(&view(&alice_scope, Some(&reader), &[]), true, None, 10)
            .await
            .unwrap();
        assert_eq!(unread.iter().map(|n| n.id).collect::<Vec<_>>(), [a2]);
        let bob_reader = notification_svc::domain::customer_key(bob);
        assert_eq!(
            store
                .unread_count(&Scope::customer(bob), Some(&bob_reader))
                .await
                .unwrap(),
            1
        );
        let updated = store.mark_read(&alice_scope, &reader, None, now).await.unwrap();
        assert_eq!(updated, 1);
        assert_eq!(store.unread_count(&alice_scope, Some(&reader)).await.unwrap(), 0);
        // Role-group read state is per employee.
        let emp = notification_svc::domain::employee_key("e-1");
        assert_eq!(store.mark_read(&staff, &emp, None, now).await.unwrap(), 2);
        assert_eq!(store.unread_count(&staff, Some("employee:e-2")).await.unwrap(), 2);

        // Idempotency key lookup.
        let mut keyed = note(Recipient::Customer(bob), Kind::Message, "keyed");
        keyed.sender_id = "agent".into();
        keyed.idempotency_key = Some("k-1".into());
        let id = insert(&store, &keyed).await;
        let mut tx = store.begin().await.unwrap();
        store.lock_inserts(&mut tx).await.unwrap();
        assert_eq!(
            store.find_by_key(&mut tx, "agent", "k-1").await.unwrap().unwrap().id,
            id
        );
        assert!(store.find_by_key(&mut tx, "other", "k-1").await.unwrap().is_none());
        tx.rollback().await.unwrap();

        // Preferences; muted types are not stored for that customer (ACCOUNT always is).
        let key = notification_svc::domain::customer_key(alice);
        assert!(store.preferences(&key).await.unwrap().is_none());
        let prefs = Preferences {
            channels: vec![Channel::Email, Channel::Sms],
            muted: vec![Kind::Payment, Kind::System],
            updated_at: Some(now),
        };
        store.put_preferences(&key, &prefs).await.unwrap();
        assert_eq!(store.preferences(&key).await.unwrap().unwrap(), prefs);
        let before = store.max_id().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let stored = store_all(
            &store,
            &mut tx,
            &[
                note(Recipient::Customer(alice), Kind::Payment, "muted"),
                note(Recipient::Customer(alice), Kind::Account, "account"),
                note(Recipient::Customer(bob), Kind::Payment, "bob's"),
            ],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let titles: Vec<&str> = stored.iter().map(|n| n.title.as_str()).collect();
        assert_eq!(titles, ["account", "bob's"], "{backend}");
        assert_eq!(store.max_id().await.unwrap(), stored[1].id);
        assert!(stored[0].id > before);

        // A rolled-back insert leaves nothing visible.
        let mut tx = store.begin().await.unwrap();
        let gone = store
            .insert(&mut tx, &note(Recipient::Customer(alice), Kind::Message, "gone"), now)
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        assert!(store.get(gone.id).await.unwrap().is_none());
        db.close().await;
    }
}

#[tokio::test]
async fn concurrent_inserts_become_visible_in_id_order() {
    for test_db in TestDatabase::both().await.unwrap() {
        let (db, store) = open(&test_db).await;
        let customer = Uuid::now_v7();
        let mut writers = Vec::new();
        for w in 0..4 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..15 {
                    let mut tx = store.begin().await.unwrap();
                    store
                        .insert(
                            &mut tx,
                            &note(Recipient::Customer(customer), Kind::Message, &format!("{w}-{i}")),
                            Utc::now(),
                        )
                        .await
                        .unwrap();
                    // Hold the transaction open a little so writers overlap.
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    tx.commit().await.unwrap();
                }
            }));
        }
        // A reader tailing "after the last id seen" must never skip an id that shows up later.
        let scope = Scope::customer(customer);
        let mut cursor = 0;
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while seen.len() < 60 {
            assert!(tokio::time::Instant::now() < deadline, "only {} seen", seen.len());
            for n in store.after(&view(&scope, None, &[]), cursor, 100).await.unwrap() {
                cursor = n.id;
                seen.push(n.id);
            }
            tokio::task::yield_now().await;
        }
        for writer in writers {
            writer.await.unwrap();
        }
        let all: Vec<i64> = store
            .after(&view(&scope, None, &[]), 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(seen, all, "tailing saw every id exactly once, in order");
        db.close().await;
    }
}

async fn insert_at(store: &Store, new: &NewNotification, at: chrono::DateTime<Utc>) -> i64 {
    let mut tx = store.begin().await.unwrap();
    let stored = store.insert(&mut tx, new, at).await.unwrap();
    tx.commit().await.unwrap();
    stored.id
}

/// `notifications`: a customer's notification goes 30 days after it was read, any notification
/// after 90 days; nothing younger is touched. GDPR: a customer's notifications, read marks and
/// preferences are exported, then forgotten.
#[tokio::test]
async fn retention_and_erasure_of_notifications_on_both_backends() {
    use notification_svc::housekeeping::NotificationRetention;
    use ordermesh_platform::gdpr::PersonalData;
    use ordermesh_platform::housekeeping::Job;

    for test_db in TestDatabase::both().await.unwrap() {
        let (db, store) = open(&test_db).await;
        let now = Utc::now().trunc_subsecs(6);
        let days = chrono::Duration::days;
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let to_alice = note(Recipient::Customer(alice), Kind::OrderStatus, "for alice");
        let read_long_ago = insert_at(&store, &to_alice, now - days(60)).await;
        let read_recently = insert_at(&store, &to_alice, now - days(60)).await;
        let unread = insert_at(&store, &to_alice, now - days(60)).await;
        let ancient = insert_at(&store, &to_alice, now - days(91)).await;
        let staff = insert_at(
            &store,
            &note(Recipient::Role(Role::Admin), Kind::System, "ops"),
            now - days(60),
        )
        .await;
        let reader = notification_svc::domain::customer_key(alice);
        let scope = Scope::customer(alice);
        store
            .mark_read(&scope, &reader, Some(&[read_long_ago]), now - days(31))
            .await
            .unwrap();
        store
            .mark_read(&scope, &reader, Some(&[read_recently]), now - days(29))
            .await
            .unwrap();

        let report = NotificationRetention.run(&db, now).await.unwrap();
        assert_eq!(report.count("read notifications deleted"), 1, "{report}");
        assert_eq!(report.count("old notifications deleted"), 1, "{report}");
        for (id, kept) in [
            (read_long_ago, false),
            (read_recently, true),
            (unread, true),
            (ancient, false),
            (staff, true),
        ] {
            assert_eq!(store.get(id).await.unwrap().is_some(), kept, "notification {id}");
        }

        // Export, then erasure of alice: bob keeps everything.
        let to_bob = insert_at(&store, &note(Recipient::Customer(bob), Kind::Message, "for bob"), now).await;
        let prefs = Preferences {
            channels: vec![Channel::Email],
            muted: vec![Kind::System],
            updated_at: Some(now),
        };
        store.put_preferences(&reader, &prefs).await.unwrap();
        let part = notification_svc::gdpr::NotificationPersonalData::new(store.clone());
        let exported = part.export(alice).await.unwrap();
        assert_eq!(exported["notifications"].as_array().unwrap().len(), 2);
        assert_eq!(exported["preferences"]["channels"], serde_json::json!(["EMAIL"]));
        let mut tx = store.begin().await.unwrap();
        assert_eq!(store.forget_customer(&mut tx, alice).await.unwrap(), 2);
        tx.commit().await.unwrap();
        let after = part.export(alice).await.unwrap();
        assert_eq!(after["notifications"], serde_json::json!([]));
        assert!(after["preferences"].is_null());
        // Whatever arrives after the erasure (its cancelled order's news) is not stored.
        let mut tx = store.begin().await.unwrap();
        let late = store_all(&store, &mut tx, std::slice::from_ref(&to_alice))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert!(late.is_empty(), "a notification stored for an erased customer");
        assert!(store.get(to_bob).await.unwrap().is_some());
        db.close().await;
    }
}
