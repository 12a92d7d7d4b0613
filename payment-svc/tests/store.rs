//! The one behaviour suite of the payment store, run against PostgreSQL and SQLite.

use ordermesh_platform::convert::now;
use ordermesh_platform::db::Database;
use ordermesh_platform::events::Tx;
use ordermesh_platform::testing::TestDatabase;
use ordermesh_platform::validate::Money;
use ordermesh_platform::{Actor, ActorKind, ServiceError};
use payment_svc::domain::{
    Payment, PaymentFilter, PaymentStatus, Refund, RefundStatus, Transaction, TransactionKind, TransactionStatus,
};
use payment_svc::store::{self, Store};
use uuid::Uuid;

async fn open(db: &TestDatabase) -> Store {
    let database = Database::connect(db.url(), payment_svc::SERVICE)
        .await
        .expect("connect");
    database.migrate(&store::migrations()).await.expect("migrate");
    Store::new(&database)
}

fn payment(order_id: Uuid, customer_id: Uuid, status: PaymentStatus) -> Payment {
    let now = now();
    Payment {
        id: Uuid::now_v7(),
        order_id,
        customer_id,
        amount: Money {
            amount_minor: 4200,
            currency_code: "EUR".into(),
        },
        captured_minor: 0,
        refunded_minor: 0,
        status,
        decline_reason: String::new(),
        gateway_reference: String::new(),
        create_time: now,
        update_time: now,
    }
}

fn transaction(payment_id: Uuid, kind: TransactionKind, key: Option<&str>, refund_id: Option<Uuid>) -> Transaction {
    let now = now();
    Transaction {
        id: Uuid::now_v7(),
        payment_id,
        kind,
        amount_minor: 4200,
        status: TransactionStatus::Pending,
        gateway_reference: String::new(),
        failure_reason: String::new(),
        idempotency_key: key.map(str::to_owned),
        request_hash: "h".into(),
        capture: kind == TransactionKind::Authorize,
        refund_id,
        create_time: now,
        update_time: now,
    }
}

async fn behaviour(store: Store) {
    let db = store.database().clone();
    let (order, customer) = (Uuid::now_v7(), Uuid::now_v7());

    // Intent: a PENDING payment and its authorisation with an idempotency key.
    let mut p = payment(order, customer, PaymentStatus::Pending);
    let auth = transaction(p.id, TransactionKind::Authorize, Some("key-1"), None);
    let mut tx = Tx::begin(&db).await.unwrap();
    store.insert_payment(&mut tx, &p).await.unwrap();
    store.insert_transaction(&mut tx, &auth).await.unwrap();
    tx.commit().await.unwrap();

    // The key is unique; the order has one active payment at most.
    let mut tx = Tx::begin(&db).await.unwrap();
    assert_eq!(
        store.transaction_by_key(&mut tx, "key-1").await.unwrap(),
        Some(auth.clone())
    );
    assert!(store.transaction_by_key(&mut tx, "nope").await.unwrap().is_none());
    let dup = store
        .insert_transaction(
            &mut tx,
            &transaction(p.id, TransactionKind::Capture, Some("key-1"), None),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            dup,
            ServiceError::AlreadyExists {
                field: "idempotency_key",
                ..
            }
        ),
        "{dup}"
    );
    tx.rollback().await.unwrap();
    let mut tx = Tx::begin(&db).await.unwrap();
    let second = store
        .insert_payment(&mut tx, &payment(order, customer, PaymentStatus::Pending))
        .await
        .unwrap_err();
    assert!(
        matches!(second, ServiceError::AlreadyExists { field: "order_id", .. }),
        "{second}"
    );
    tx.rollback().await.unwrap();

    // Outcome: captured.
    let mut tx = Tx::begin(&db).await.unwrap();
    let mut settled = store.lock_transaction(&mut tx, auth.id).await.unwrap().unwrap();
    settled.status = TransactionStatus::Succeeded;
    settled.gateway_reference = "ch_1".into();
    settled.update_time = now();
    store.update_transaction(&mut tx, &settled).await.unwrap();
    let locked = store.lock_payment(&mut tx, p.id).await.unwrap().unwrap();
    assert_eq!(locked, p);
    p.status = PaymentStatus::Captured;
    p.captured_minor = 4200;
    p.gateway_reference = "ch_1".into();
    p.update_time = now();
    store.update_payment(&mut tx, &p).await.unwrap();
    tx.commit().await.unwrap();

    // A refund with its transaction.
    let now = now();
    let mut refund = Refund {
        id: Uuid::now_v7(),
        payment_id: p.id,
        amount_minor: 1000,
        reason: "damaged".into(),
        status: RefundStatus::Pending,
        gateway_reference: String::new(),
        requested_by: Actor {
            kind: ActorKind::Employee,
            id: "emp-1".into(),
            roles: vec!["admin".into(), "customer-service".into()],
        },
        create_time: now,
        update_time: now,
    };
    let mut tx = Tx::begin(&db).await.unwrap();
    store.insert_refund(&mut tx, &refund).await.unwrap();
    let mut refund_txn = transaction(p.id, TransactionKind::Refund, Some("refund-1"), Some(refund.id));
    refund_txn.amount_minor = 1000;
    store.insert_transaction(&mut tx, &refund_txn).await.unwrap();
    assert_eq!(store.transactions_of(&mut tx, p.id).await.unwrap().len(), 2);
    assert_eq!(store.refund(&mut tx, refund.id).await.unwrap(), Some(refund.clone()));
    refund.status = RefundStatus::Succeeded;
    refund.gateway_reference = "re_1".into();
    store.update_refund(&mut tx, &refund).await.unwrap();
    tx.commit().await.unwrap();

    let view = store.get_payment(p.id).await.unwrap().unwrap();
    assert_eq!(view.payment, p);
    assert_eq!(view.transactions.len(), 2);
    assert_eq!(view.transactions[0].kind, TransactionKind::Authorize);
    assert_eq!(view.transactions[0].gateway_reference, "ch_1");
    assert_eq!(view.refunds, vec![refund.clone()]);
    assert!(store.get_payment(Uuid::now_v7()).await.unwrap().is_none());

    // A declined payment frees the order for another attempt.
    let mut tx = Tx::begin(&db).await.unwrap();
    let mut declined = payment(Uuid::now_v7(), customer, PaymentStatus::Declined);
    declined.decline_reason = "card_declined".into();
    store.insert_payment(&mut tx, &declined).await.unwrap();
    let retry = payment(declined.order_id, customer, PaymentStatus::Pending);
    store.insert_payment(&mut tx, &retry).await.unwrap();
    assert_eq!(
        store
            .active_payment_for_order(&mut tx, declined.order_id)
            .await
            .unwrap()
            .map(|p| p.id),
        Some(retry.id)
    );
    // More payments of another customer.
    let other = Uuid::now_v7();
    for _ in 0..3 {
        store
            .insert_payment(&mut tx, &payment(Uuid::now_v7(), other, PaymentStatus::Authorized))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    // Lists: newest first, filtered, paged by id.
    let all = store.list_payments(&PaymentFilter::default(), None, 100).await.unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].payment.id > w[1].payment.id));
    let mine = PaymentFilter {
        customer_id: Some(customer),
        ..Default::default()
    };
    let page1 = store.list_payments(&mine, None, 2).await.unwrap();
    let page2 = store.list_payments(&mine, Some(page1[1].payment.id), 2).await.unwrap();
    let ids: Vec<Uuid> = page1.iter().chain(&page2).map(|v| v.payment.id).collect();
    assert_eq!(ids, vec![retry.id, declined.id, p.id]);
    assert_eq!(page2[0].refunds.len(), 1, "views carry their refunds");
    let by_status = PaymentFilter {
        status: Some(PaymentStatus::Authorized),
        ..Default::default()
    };
    assert_eq!(store.list_payments(&by_status, None, 10).await.unwrap().len(), 3);
    let by_order = PaymentFilter {
        order_id: Some(declined.order_id),
        status: Some(PaymentStatus::Declined),
        ..Default::default()
    };
    let found = store.list_payments(&by_order, None, 10).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].payment.decline_reason, "card_declined");
}

#[tokio::test]
async fn store_behaviour_on_postgres_and_sqlite() {
    for db in TestDatabase::both().await.unwrap() {
        let store = open(&db).await;
        behaviour(store).await;
    }
}
