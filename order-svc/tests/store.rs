//! The order store's behaviour, one suite on PostgreSQL and on SQLite.

use chrono::{Duration, Utc};
use order_svc::domain::{HistoryEntry, Order, OrderFilter, OrderStatus, PricedLine, TransitionFields};
use order_svc::store::{self, Store};
use ordermesh_platform::StoreResult;
use ordermesh_platform::db::Database;
use ordermesh_platform::testing::TestDatabase;
use uuid::Uuid;

fn new_order(customer_id: Uuid, key: Option<&str>, created_at: chrono::DateTime<Utc>) -> Order {
    let id = Uuid::now_v7();
    Order {
        id,
        customer_id,
        status: OrderStatus::Pending,
        items: vec![PricedLine {
            product_id: Uuid::now_v7().to_string(),
            sku: "SKU-1".into(),
            name: "Kettle".into(),
            unit_price_minor: 2500,
            currency: "EUR".into(),
            quantity: 2,
        }],
        total_minor: 5000,
        currency: "EUR".into(),
        payment_method_token: "tok_approved".into(),
        idempotency_key: key.map(str::to_owned),
        rejection_code: None,
        rejection_reason: None,
        cancellation_reason: None,
        payment_id: None,
        shipping_address: Some(vec![1, 2, 3]),
        carrier: None,
        tracking_number: None,
        correlation_id: "corr-1".into(),
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

async fn insert(store: &Store, order: &Order) -> StoreResult<()> {
    let mut tx = store.begin().await?;
    store.insert(&mut tx, order).await?;
    Ok(tx.commit().await?)
}

async fn suite(url: &str) {
    let db = Database::connect(url, "orders").await.unwrap();
    db.migrate(&store::migrations()).await.unwrap();
    let store = Store::new(&db);
    let customer = Uuid::now_v7();
    let t0 = Utc::now() - Duration::minutes(10);

    // Insert and read back, items and history included.
    let order = new_order(customer, Some("key-1"), t0);
    insert(&store, &order).await.unwrap();
    let read = store.get(order.id).await.unwrap().unwrap();
    assert_eq!(read.items, order.items);
    assert_eq!(read.history.len(), 1);
    assert_eq!(read.shipping_address, Some(vec![1, 2, 3]));
    assert_eq!(read.created_at.timestamp_millis(), t0.timestamp_millis());
    assert!(store.get(Uuid::now_v7()).await.unwrap().is_none());

    // Idempotency key: unique per customer.
    assert_eq!(
        store.find_by_idempotency_key(customer, "key-1").await.unwrap(),
        Some(order.id)
    );
    assert!(
        insert(&store, &new_order(customer, Some("key-1"), t0)).await.is_err(),
        "same customer and key"
    );
    insert(&store, &new_order(Uuid::now_v7(), Some("key-1"), t0))
        .await
        .expect("another customer may reuse a key");

    // Compare-and-set transitions: a stale version does not apply.
    let entry = |seq, from, to| HistoryEntry {
        seq,
        from: Some(from),
        to,
        reason: None,
        actor: "system".into(),
        cause_event_id: Some("ev-1".into()),
        changed_at: Utc::now(),
    };
    let mut tx = store.begin().await.unwrap();
    let current = store.get_in_tx(&mut tx, order.id).await.unwrap().unwrap();
    let applied = store
        .apply_transition(
            &mut tx,
            &current,
            OrderStatus::Reserved,
            &TransitionFields::default(),
            &entry(2, OrderStatus::Pending, OrderStatus::Reserved),
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(applied);
    let stale = store
        .apply_transition(
            &mut tx,
            &current,
            OrderStatus::Rejected,
            &TransitionFields::default(),
            &entry(3, OrderStatus::Pending, OrderStatus::Rejected),
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(!stale, "the order moved on since it was read");
    tx.commit().await.unwrap();
    let fields = TransitionFields {
        carrier: Some("DHL".into()),
        tracking_number: Some("JD0001".into()),
        ..Default::default()
    };
    let mut tx = store.begin().await.unwrap();
    let current = store.get_in_tx(&mut tx, order.id).await.unwrap().unwrap();
    assert_eq!(current.version, 2);
    assert!(
        store
            .apply_transition(
                &mut tx,
                &current,
                OrderStatus::Shipped,
                &fields,
                &entry(3, OrderStatus::Reserved, OrderStatus::Shipped),
                Utc::now()
            )
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let shipped = store.get(order.id).await.unwrap().unwrap();
    assert_eq!(shipped.status, OrderStatus::Shipped);
    assert_eq!(shipped.tracking_number.as_deref(), Some("JD0001"));
    assert!(shipped.shipped_at.is_some());
    let statuses: Vec<_> = shipped.history.iter().map(|h| h.to).collect();
    assert_eq!(
        statuses,
        [OrderStatus::Pending, OrderStatus::Reserved, OrderStatus::Shipped]
    );

    // Listing: newest first, stable pages, filters.
    let lister = Uuid::now_v7();
    let mut ids = Vec::new();
    for i in 0..5 {
        let o = new_order(lister, None, t0 + Duration::seconds(i));
        insert(&store, &o).await.unwrap();
        ids.push(o.id);
    }
    ids.reverse();
    let filter = OrderFilter {
        customer_id: Some(lister),
        ..Default::default()
    };
    let page1 = store.list(&filter, None, 2).await.unwrap();
    let last = page1.last().unwrap();
    let page2 = store.list(&filter, Some((last.created_at, last.id)), 2).await.unwrap();
    let last = page2.last().unwrap();
    let page3 = store.list(&filter, Some((last.created_at, last.id)), 2).await.unwrap();
    let seen: Vec<_> = page1.iter().chain(&page2).chain(&page3).map(|o| o.id).collect();
    assert_eq!(seen, ids);
    assert!(page1[0].items.len() == 1, "items are loaded");

    let shipped_only = OrderFilter {
        statuses: vec!["SHIPPED".into()],
        ..Default::default()
    };
    let found = store.list(&shipped_only, None, 50).await.unwrap();
    assert_eq!(found.iter().map(|o| o.id).collect::<Vec<_>>(), [order.id]);
    let window = OrderFilter {
        customer_id: Some(lister),
        created_after: Some(t0 + Duration::seconds(1)),
        created_before: Some(t0 + Duration::seconds(3)),
        ..Default::default()
    };
    assert_eq!(store.list(&window, None, 50).await.unwrap().len(), 2);
    db.close().await;
}

#[tokio::test]
async fn store_behaviour_on_postgres() {
    let db = TestDatabase::postgres().await.unwrap();
    suite(db.url()).await;
}

#[tokio::test]
async fn store_behaviour_on_sqlite() {
    let db = TestDatabase::sqlite().unwrap();
    suite(db.url()).await;
}

/// GDPR and retention: anonymising a customer's orders keeps ids, items, amounts and statuses but
/// no address, payment-method token or client id; another customer's orders are untouched. The
/// `idempotency` job forgets keys older than 7 days, and only those.
#[tokio::test]
async fn erasure_and_idempotency_retention_on_both_backends() {
    use ordermesh_platform::housekeeping::Job;
    for test_db in TestDatabase::both().await.unwrap() {
        let db = Database::connect(test_db.url(), "orders").await.unwrap();
        db.migrate(&store::migrations()).await.unwrap();
        let store = Store::new(&db);
        let (erased, other) = (Uuid::now_v7(), Uuid::now_v7());
        let now = Utc::now();
        let old = new_order(erased, Some("k-old"), now - Duration::days(8));
        let young = new_order(erased, Some("k-young"), now - Duration::days(6));
        let theirs = new_order(other, Some("k-theirs"), now - Duration::days(8));
        for order in [&old, &young, &theirs] {
            insert(&store, order).await.unwrap();
        }

        let report = order_svc::housekeeping::idempotency_keys().run(&db, now).await.unwrap();
        assert_eq!(report.count("idempotency keys forgotten"), 2, "{report}");
        assert_eq!(
            store.find_by_idempotency_key(erased, "k-young").await.unwrap(),
            Some(young.id)
        );
        assert_eq!(store.find_by_idempotency_key(erased, "k-old").await.unwrap(), None);

        let mut tx = store.begin().await.unwrap();
        assert_eq!(store.anonymise_customer(&mut tx, erased).await.unwrap(), 2);
        tx.commit().await.unwrap();
        for id in [old.id, young.id] {
            let order = store.get(id).await.unwrap().unwrap();
            assert_eq!(
                (order.shipping_address, order.payment_method_token.as_str()),
                (None, "")
            );
            assert_eq!((order.total_minor, order.items.len()), (5000, 1));
            assert_eq!(order.history[0].actor, "client:erased");
        }
        let kept = store.get(theirs.id).await.unwrap().unwrap();
        assert_eq!(kept.shipping_address, theirs.shipping_address);
        assert_eq!(kept.history[0].actor, "client:c1");
        db.close().await;
    }
}
