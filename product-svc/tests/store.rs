//! The one behaviour suite of the product store, run against PostgreSQL and SQLite.

use std::collections::BTreeMap;

use ordermesh_platform::ServiceError;
use ordermesh_platform::db::Database;
use ordermesh_platform::testing::TestDatabase;
use ordermesh_platform::validate::Money;
use product_svc::domain::{
    self, Adjustment, Category, Origin, Product, ProductFilter, ProductPatch, ReservationStatus, StockLine,
};
use product_svc::store::{self, Store};
use uuid::Uuid;

async fn open(db: &TestDatabase) -> Store {
    let database = Database::connect(db.url(), product_svc::SERVICE)
        .await
        .expect("connect");
    database.migrate(&store::migrations()).await.expect("migrate");
    Store::new(&database)
}

fn origin() -> Origin {
    Origin::system("store-test")
}

fn category(name: &str, parent_id: Option<Uuid>) -> Category {
    Category {
        id: Uuid::now_v7(),
        name: name.into(),
        parent_id,
        description: String::new(),
        create_time: domain::now(),
    }
}

fn product(sku: &str, description: &str, category_id: Uuid, amount: i64) -> Product {
    let now = domain::now();
    Product {
        id: Uuid::now_v7(),
        sku: sku.into(),
        name: format!("Product {sku}"),
        description: description.into(),
        category_id,
        price: Money {
            amount_minor: amount,
            currency_code: "EUR".into(),
        },
        active: true,
        attributes: BTreeMap::from([("color".to_owned(), "red".to_owned())]),
        create_time: now,
        update_time: now,
        version: 1,
    }
}

fn adjustment(product_id: Uuid, delta: i64, key: Option<&str>) -> Adjustment {
    Adjustment {
        product_id,
        delta,
        reason: "restock".into(),
        idempotency_key: key.map(str::to_owned),
    }
}

async fn behaviour(store: Store) {
    // Categories: unique among siblings, ordered by name, paged.
    let kitchen = category("Kitchen", None);
    store.create_category(&kitchen).await.unwrap();
    let dup = store.create_category(&category("kitchen", None)).await.unwrap_err();
    assert!(matches!(dup, ServiceError::AlreadyExists { .. }), "{dup}");
    store
        .create_category(&category("Kettles", Some(kitchen.id)))
        .await
        .unwrap();
    let orphan = store
        .create_category(&category("X", Some(Uuid::now_v7())))
        .await
        .unwrap_err();
    assert!(matches!(orphan, ServiceError::InvalidArgument(_)), "{orphan}");
    let first = store.list_categories(None, None, 1).await.unwrap();
    assert_eq!(first[0].name, "Kettles");
    let rest = store
        .list_categories(None, Some((first[0].name.clone(), first[0].id)), 10)
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["Kitchen"]);
    assert_eq!(
        store.list_categories(Some(kitchen.id), None, 10).await.unwrap().len(),
        1
    );

    // Products: create, read back exactly, unique SKU, unknown category.
    let kettle = product("KETTLE-1", "A stainless steel kettle that whistles", kitchen.id, 2999);
    store.create_product(&kettle, &origin()).await.unwrap();
    assert_eq!(
        store.get_products(&[kettle.id]).await.unwrap(),
        std::slice::from_ref(&kettle)
    );
    let taken = store
        .create_product(&product("KETTLE-1", "", kitchen.id, 1), &origin())
        .await
        .unwrap_err();
    assert!(
        matches!(taken, ServiceError::AlreadyExists { field: "sku", .. }),
        "{taken}"
    );
    let no_cat = store
        .create_product(&product("X-1", "", Uuid::now_v7(), 1), &origin())
        .await
        .unwrap_err();
    assert!(matches!(no_cat, ServiceError::InvalidArgument(_)), "{no_cat}");
    assert!(store.get_products(&[Uuid::now_v7()]).await.unwrap().is_empty());

    // Update: masked fields, version check, SKU collision.
    let toaster = product("TOASTER-1", "Two slots, crumb tray", kitchen.id, 4999);
    store.create_product(&toaster, &origin()).await.unwrap();
    let patch = ProductPatch {
        name: Some("Toaster Deluxe".into()),
        active: Some(false),
        ..Default::default()
    };
    let updated = store
        .update_product(toaster.id, &patch, Some(1), &origin())
        .await
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.active, updated.version),
        ("Toaster Deluxe", false, 2)
    );
    assert_eq!(store.get_products(&[toaster.id]).await.unwrap()[0], updated);
    let stale = store
        .update_product(toaster.id, &patch, Some(1), &origin())
        .await
        .unwrap_err();
    assert!(matches!(stale, ServiceError::Aborted(_)), "{stale}");
    let clash = ProductPatch {
        sku: Some("KETTLE-1".into()),
        ..Default::default()
    };
    assert!(matches!(
        store
            .update_product(toaster.id, &clash, None, &origin())
            .await
            .unwrap_err(),
        ServiceError::AlreadyExists { .. }
    ));
    assert!(matches!(
        store
            .update_product(Uuid::now_v7(), &patch, None, &origin())
            .await
            .unwrap_err(),
        ServiceError::NotFound { .. }
    ));

    // List: newest first, keyset pages, filters.
    let mut ids = vec![toaster.id, kettle.id];
    for i in 0..5 {
        let p = product(&format!("MUG-{i}"), "A mug", kitchen.id, 500 + i);
        store.create_product(&p, &origin()).await.unwrap();
        ids.insert(0, p.id);
    }
    let all = ProductFilter::default();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_products(&all, after, 3).await.unwrap();
        seen.extend(page.iter().map(|p| p.id));
        if page.len() < 3 {
            break;
        }
        after = Some(page.last().unwrap().list_key());
    }
    assert_eq!(seen, ids);
    let active_cheap = ProductFilter {
        active: Some(true),
        max_price: Some(Money {
            amount_minor: 502,
            currency_code: "EUR".into(),
        }),
        ..Default::default()
    };
    assert_eq!(store.list_products(&active_cheap, None, 50).await.unwrap().len(), 3);
    let usd = ProductFilter {
        min_price: Some(Money {
            amount_minor: 0,
            currency_code: "USD".into(),
        }),
        ..Default::default()
    };
    assert!(store.list_products(&usd, None, 50).await.unwrap().is_empty());

    // Search: a (stemmed) word of the description, of the name, of the SKU; filters apply.
    let words = |q: &str| q.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let found = store.search_products(&words("whistle"), &all, 0, 10).await.unwrap();
    assert_eq!(found.iter().map(|p| p.id).collect::<Vec<_>>(), [kettle.id]);
    let found = store.search_products(&words("deluxe"), &all, 0, 10).await.unwrap();
    assert_eq!(found.iter().map(|p| p.id).collect::<Vec<_>>(), [toaster.id]);
    let found = store.search_products(&words("kettle 1"), &all, 0, 10).await.unwrap();
    assert_eq!(found[0].id, kettle.id);
    let active = ProductFilter {
        active: Some(true),
        ..Default::default()
    };
    assert!(
        store
            .search_products(&words("deluxe"), &active, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.search_products(&words("mug"), &all, 3, 10).await.unwrap().len(),
        2
    );

    // Stock: starts at zero; adjustments idempotent per key; never below reserved.
    let level = store.stock_levels(&[kettle.id]).await.unwrap().pop().unwrap();
    assert_eq!((level.on_hand, level.reserved), (0, 0));
    let level = store
        .adjust_stock(&adjustment(kettle.id, 10, Some("k1")), &origin())
        .await
        .unwrap();
    assert_eq!(level.on_hand, 10);
    let again = store
        .adjust_stock(&adjustment(kettle.id, 10, Some("k1")), &origin())
        .await
        .unwrap();
    assert_eq!(again.on_hand, 10, "a repeated key does not adjust twice");
    assert!(matches!(
        store
            .adjust_stock(&adjustment(kettle.id, -11, None), &origin())
            .await
            .unwrap_err(),
        ServiceError::FailedPrecondition { .. }
    ));
    assert!(matches!(
        store
            .adjust_stock(&adjustment(Uuid::now_v7(), 1, None), &origin())
            .await
            .unwrap_err(),
        ServiceError::NotFound { .. }
    ));

    // Reservations: all or nothing, idempotent, release and commit.
    let mug = ids[0];
    store.adjust_stock(&adjustment(mug, 5, None), &origin()).await.unwrap();
    let mut lines = vec![
        StockLine {
            product_id: kettle.id,
            quantity: 4,
        },
        StockLine {
            product_id: mug,
            quantity: 6,
        },
    ];
    lines.sort_by_key(|l| l.product_id);
    let order = Uuid::now_v7();
    let rejected = store.reserve_stock(order, &lines, "corr-test").await.unwrap();
    assert_eq!(rejected.status, ReservationStatus::Rejected);
    assert_eq!(rejected.shortfalls.len(), 1);
    assert_eq!(
        (rejected.shortfalls[0].product_id, rejected.shortfalls[0].available),
        (mug, 5)
    );
    let levels = store.stock_levels(&[kettle.id, mug]).await.unwrap();
    assert!(
        levels.iter().all(|l| l.reserved == 0),
        "nothing reserved when one line is short"
    );

    let order = Uuid::now_v7();
    let lines = [StockLine {
        product_id: kettle.id,
        quantity: 4,
    }];
    let reserved = store.reserve_stock(order, &lines, "corr-test").await.unwrap();
    assert_eq!(reserved.status, ReservationStatus::Reserved);
    let repeat = store
        .reserve_stock(
            order,
            &[StockLine {
                product_id: kettle.id,
                quantity: 9,
            }],
            "corr-test",
        )
        .await
        .unwrap();
    assert_eq!(
        (repeat.status, repeat.lines.clone()),
        (ReservationStatus::Reserved, lines.to_vec())
    );
    assert_eq!(
        store.stock_levels(&[kettle.id]).await.unwrap()[0].reserved,
        4,
        "a repeat changes nothing"
    );
    assert!(matches!(
        store
            .adjust_stock(&adjustment(kettle.id, -7, None), &origin())
            .await
            .unwrap_err(),
        ServiceError::FailedPrecondition { .. }
    ));
    let released = store.release_stock(order, "order cancelled").await.unwrap().unwrap();
    assert_eq!(released.status, ReservationStatus::Released);
    assert_eq!(
        store.release_stock(order, "again").await.unwrap().unwrap().status,
        ReservationStatus::Released
    );
    assert!(store.release_stock(Uuid::now_v7(), "unknown").await.unwrap().is_none());
    assert_eq!(store.stock_levels(&[kettle.id]).await.unwrap()[0].reserved, 0);
    assert!(matches!(
        store.commit_stock(order).await.unwrap_err(),
        ServiceError::FailedPrecondition { .. }
    ));

    let shipped = Uuid::now_v7();
    store
        .reserve_stock(
            shipped,
            &[StockLine {
                product_id: kettle.id,
                quantity: 2,
            }],
            "corr-test",
        )
        .await
        .unwrap();
    assert_eq!(
        store.commit_stock(shipped).await.unwrap().status,
        ReservationStatus::Committed
    );
    assert_eq!(
        store.commit_stock(shipped).await.unwrap().status,
        ReservationStatus::Committed
    );
    let level = store.stock_levels(&[kettle.id]).await.unwrap().pop().unwrap();
    assert_eq!((level.on_hand, level.reserved), (8, 0));
    assert!(matches!(
        store.release_stock(shipped, "late").await.unwrap_err(),
        ServiceError::FailedPrecondition { .. }
    ));
    assert!(matches!(
        store.commit_stock(Uuid::now_v7()).await.unwrap_err(),
        ServiceError::NotFound { .. }
    ));

    // Concurrency: 50 reservations of 3 against 100 → exactly 33 succeed, never negative.
    let bulk = product("BULK-1", "", kitchen.id, 1);
    store.create_product(&bulk, &origin()).await.unwrap();
    store
        .adjust_stock(&adjustment(bulk.id, 100, None), &origin())
        .await
        .unwrap();
    let orders: Vec<Uuid> = (0..50).map(|_| Uuid::now_v7()).collect();
    let tasks = orders.iter().map(|order| {
        let store = store.clone();
        let order = *order;
        tokio::spawn(async move {
            store
                .reserve_stock(
                    order,
                    &[StockLine {
                        product_id: bulk.id,
                        quantity: 3,
                    }],
                    "corr-test",
                )
                .await
        })
    });
    let outcomes: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let ok = outcomes
        .iter()
        .filter(|r| r.status == ReservationStatus::Reserved)
        .count();
    assert_eq!(ok, 33);
    let level = store.stock_levels(&[bulk.id]).await.unwrap().pop().unwrap();
    assert_eq!((level.on_hand, level.reserved, level.available()), (100, 99, 1));
    for (order, outcome) in orders.iter().zip(&outcomes) {
        let again = store
            .reserve_stock(
                *order,
                &[StockLine {
                    product_id: bulk.id,
                    quantity: 3,
                }],
                "corr-test",
            )
            .await
            .unwrap();
        assert_eq!(again.status, outcome.status);
    }
    assert_eq!(
        store.stock_levels(&[bulk.id]).await.unwrap()[0].available(),
        1,
        "repeats change nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_behaviour_on_postgres() {
    let db = TestDatabase::postgres().await.unwrap();
    behaviour(open(&db).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_behaviour_on_sqlite() {
    let db = TestDatabase::sqlite().unwrap();
    behaviour(open(&db).await).await;
}

/// A release that comes before the reservation (a cancel handled before its OrderPlaced) leaves
/// a tombstone: the late reserve reserves nothing, and racing reserves and releases never leak
/// stock.
async fn release_before_reserve(store: Store) {
    let kitchen = category("Kitchen", None);
    store.create_category(&kitchen).await.unwrap();
    let kettle = product("TOMB-KETTLE", "", kitchen.id, 100);
    store.create_product(&kettle, &origin()).await.unwrap();
    store
        .adjust_stock(&adjustment(kettle.id, 100, None), &origin())
        .await
        .unwrap();
    let line = |quantity| StockLine {
        product_id: kettle.id,
        quantity,
    };

    let order = Uuid::now_v7();
    assert!(store.release_stock(order, "order cancelled").await.unwrap().is_none());
    assert!(
        store.release_stock(order, "again").await.unwrap().is_none(),
        "a repeated early release stays a tombstone"
    );
    let late = store.reserve_stock(order, &[line(3)], "corr-test").await.unwrap();
    assert_eq!(late.status, ReservationStatus::Released);
    assert!(late.is_tombstone() && late.lines.is_empty());
    let again = store.reserve_stock(order, &[line(3)], "corr-test").await.unwrap();
    assert_eq!(again.status, ReservationStatus::Released);
    let level = store.stock_levels(&[kettle.id]).await.unwrap().pop().unwrap();
    assert_eq!(
        (level.on_hand, level.reserved),
        (100, 0),
        "the late reserve reserved nothing"
    );
    assert!(matches!(
        store.commit_stock(order).await.unwrap_err(),
        ServiceError::FailedPrecondition { .. }
    ));

    // Reserve and release of the same orders racing each other: whichever wins, nothing stays
    // reserved once both have run.
    let orders: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    let tasks = orders.iter().enumerate().flat_map(|(i, order)| {
        let (reserve_store, release_store, order) = (store.clone(), store.clone(), *order);
        let reserve = tokio::spawn(async move {
            reserve_store
                .reserve_stock(
                    order,
                    &[StockLine {
                        product_id: kettle.id,
                        quantity: 2,
                    }],
                    "corr-test",
                )
                .await
                .map(|_| ())
        });
        let release = tokio::spawn(async move {
            if i % 2 == 0 {
                tokio::task::yield_now().await;
            }
            release_store.release_stock(order, "order cancelled").await.map(|_| ())
        });
        [reserve, release]
    });
    for outcome in futures::future::join_all(tasks).await {
        outcome.unwrap().unwrap();
    }
    let level = store.stock_levels(&[kettle.id]).await.unwrap().pop().unwrap();
    assert_eq!((level.on_hand, level.reserved), (100, 0), "no stock leaked");
    for order in &orders {
        let status = store
            .reserve_stock(*order, &[line(2)], "corr-test")
            .await
            .unwrap()
            .status;
        assert_eq!(
            status,
            ReservationStatus::Released,
            "{order} is released or a tombstone"
        );
    }
    assert_eq!(store.stock_levels(&[kettle.id]).await.unwrap()[0].reserved, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_before_reserve_leaves_a_tombstone_on_postgres() {
    let db = TestDatabase::postgres().await.unwrap();
    release_before_reserve(open(&db).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_before_reserve_leaves_a_tombstone_on_sqlite() {
    let db = TestDatabase::sqlite().unwrap();
    release_before_reserve(open(&db).await).await;
}
