//! product-svc's part of the order saga, end to end: the service runs in-process (`run_with_cache`)
//! with its event runtime; the test publishes `order-events` as order-svc would and reads what
//! product-svc answers on `inventory-events`. Runs on NATS JetStream at 127.0.0.1:4222 (or
//! `NATS_URL`, an isolated set of streams per test) with PostgreSQL, and on the in-process bus with
//! SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use ordermesh_platform::Cache;
use ordermesh_platform::db::Database;
use ordermesh_platform::events::{
    EventBus, EventsConfig, MemoryBus, NatsBus, OutgoingEvent, ReceivedEvent, Subscription, SubscriptionSpec,
};
use ordermesh_platform::testing::{self, RunningService, TestAuth, TestDatabase};
use ordermesh_platform::validate::Money;
use ordermesh_proto::events as ev;
use ordermesh_proto::order::OrderItem;
use product_svc::domain::{
    self, Adjustment, Category, Origin, Product, ProductPatch, ReservationStatus, StockLevel, StockLine,
};
use product_svc::store::Store;
use uuid::Uuid;

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

#[derive(Clone, Copy, Debug)]
enum BusKind {
    Nats,
    Memory,
}

struct Saga {
    bus: Arc<dyn EventBus>,
    memory: Option<MemoryBus>,
    inventory: Box<dyn Subscription>,
    store: Store,
    _service: RunningService,
    _auth: TestAuth,
    _db: TestDatabase,
}

impl Saga {
    async fn start(kind: BusKind, db: TestDatabase) -> Self {
        let auth = TestAuth::start().await.unwrap();
        let mut config = testing::service_config(product_svc::SERVICE, db.url(), auth.auth_config()).unwrap();
        let (bus, memory): (Arc<dyn EventBus>, Option<MemoryBus>) = match kind {
            BusKind::Nats => {
                config.events = EventsConfig::isolated();
                config.nats_url = Some(nats_url());
                let bus = NatsBus::connect(&nats_url(), config.events.clone()).await.unwrap();
                (Arc::new(bus), None)
            }
            BusKind::Memory => {
                let bus = MemoryBus::new();
                config.bus = Some(Arc::new(bus.clone()));
                (Arc::new(bus.clone()), Some(bus))
            }
        };
        let cache = Cache::connect(None, None, testing::unique_prefix("product-saga"))
            .await
            .unwrap();
        let service = RunningService::start(config, move |c, l, s| product_svc::run_with_cache(c, l, s, cache))
            .await
            .unwrap();
        // The service has migrated the database; the test seeds and inspects it through the store.
        let database = Database::connect(db.url(), product_svc::SERVICE).await.unwrap();
        let store = Store::new(&database);
        let inventory = bus
            .subscribe(&SubscriptionSpec {
                service: "saga-test".into(),
                topic: "inventory-events".into(),
                ack_wait: Duration::from_secs(30),
                max_deliver: 5,
                max_ack_pending: 64,
            })
            .await
            .unwrap();
        Self {
            bus,
            memory,
            inventory,
            store,
            _service: service,
            _auth: auth,
            _db: db,
        }
    }

    async fn product(&self, sku: &str, stock: i64) -> Uuid {
        let category = Category {
            id: Uuid::now_v7(),
            name: format!("Category {sku}"),
            parent_id: None,
            description: String::new(),
            create_time: domain::now(),
        };
        self.store.create_category(&category).await.unwrap();
        let now = domain::now();
        let product = Product {
            id: Uuid::now_v7(),
            sku: sku.into(),
            name: format!("Product {sku}"),
            description: String::new(),
            category_id: category.id,
            price: Money {
                amount_minor: 1_000,
                currency_code: "EUR".into(),
            },
            active: true,
            attributes: Default::default(),
            create_time: now,
            update_time: now,
            version: 1,
        };
        self.store.create_product(&product, &origin()).await.unwrap();
        self.store
            .adjust_stock(
                &Adjustment {
                    product_id: product.id,
                    delta: stock,
                    reason: "initial stock".into(),
                    idempotency_key: None,
                },
                &origin(),
            )
            .await
            .unwrap();
        product.id
    }

    /// (on hand, reserved) of `product`.
    async fn stock(&self, product: Uuid) -> (i64, i64) {
        let level: StockLevel = self.store.stock_levels(&[product]).await.unwrap().pop().unwrap();
        (level.on_hand, level.reserved)
    }

    async fn publish(&self, event: &OutgoingEvent) {
        self.bus.publish(event).await.unwrap();
    }

    /// The next event product-svc published on `inventory-events` (acked).
    async fn next_inventory(&mut self) -> ReceivedEvent {
        let delivery = tokio::time::timeout(Duration::from_secs(20), self.inventory.next())
            .await
            .expect("an inventory event within 20 s")
            .expect("subscription open");
        delivery.acker.ack().await.unwrap();
        delivery.event
    }
}

fn origin() -> Origin {
    Origin::system("saga-test")
}

fn correlation(order_id: Uuid) -> String {
    format!("corr-{order_id}")
}

/// An `order-events` event as order-svc publishes it.
fn order_event(order_id: Uuid, event_type: &str, message: &impl prost::Message) -> OutgoingEvent {
    OutgoingEvent::new(
        "order-svc",
        "order-events",
        event_type,
        &order_id.to_string(),
        &correlation(order_id),
        message,
    )
}

fn placed(order_id: Uuid, lines: &[(Uuid, i32)]) -> OutgoingEvent {
    let message = ev::OrderPlaced {
        order_id: order_id.to_string(),
        customer_id: Uuid::now_v7().to_string(),
        items: lines
            .iter()
            .map(|(product_id, quantity)| OrderItem {
                product_id: product_id.to_string(),
                quantity: *quantity,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    order_event(order_id, "OrderPlaced", &message)
}

fn cancelled(order_id: Uuid) -> OutgoingEvent {
    let message = ev::OrderCancelled {
        order_id: order_id.to_string(),
        reason: "changed my mind".into(),
        ..Default::default()
    };
    order_event(order_id, "OrderCancelled", &message)
}

/// Checks the envelope product-svc put around its answer about `order_id`.
fn assert_answer(event: &ReceivedEvent, order_id: Uuid, short_type: &str) {
    assert_eq!(event.short_type(), short_type, "{event:?}");
    assert_eq!(event.topic, "inventory-events");
    assert_eq!(event.aggregate_id, order_id.to_string());
    assert_eq!(event.correlation_id, correlation(order_id));
    assert_eq!(event.source, "product-svc");
}

fn sorted_lines(lines: &[ordermesh_proto::product::StockLine]) -> Vec<(String, i32)> {
    let mut lines: Vec<_> = lines.iter().map(|l| (l.product_id.clone(), l.quantity)).collect();
    lines.sort();
    lines
}

async fn saga(mut h: Saga) {
    let kettle = h.product("SAGA-KETTLE", 10).await;
    let mug = h.product("SAGA-MUG", 5).await;

    // Catalogue and stock writes publish through the outbox, in the order they committed.
    for (product, sku, stock) in [(kettle, "SAGA-KETTLE", 10), (mug, "SAGA-MUG", 5)] {
        let created = h.next_inventory().await;
        assert_eq!(created.short_type(), "ProductCreated");
        assert_eq!(created.aggregate_id, product.to_string());
        let message = created.decode::<ev::ProductCreated>().unwrap();
        assert_eq!(message.product.unwrap().sku, sku);
        assert_eq!(message.actor.unwrap().id, "saga-test");
        let adjusted = h.next_inventory().await;
        assert_eq!(adjusted.short_type(), "StockAdjusted");
        let message = adjusted.decode::<ev::StockAdjusted>().unwrap();
        assert_eq!((message.product_id, message.delta), (product.to_string(), stock));
        assert_eq!(message.stock_level.unwrap().on_hand, stock);
    }
    // A keyed adjustment repeated publishes once; an update publishes the changed fields.
    let restock = Adjustment {
        product_id: kettle,
        delta: 2,
        reason: "restock".into(),
        idempotency_key: Some(format!("restock-{kettle}")),
    };
    h.store.adjust_stock(&restock, &origin()).await.unwrap();
    h.store.adjust_stock(&restock, &origin()).await.unwrap();
    let patch = ProductPatch {
        price: Some(Money {
            amount_minor: 1_250,
            currency_code: "EUR".into(),
        }),
        name: Some("Product SAGA-KETTLE".into()),
        ..Default::default()
    };
    h.store.update_product(kettle, &patch, None, &origin()).await.unwrap();
    let adjusted = h.next_inventory().await;
    assert_eq!(adjusted.short_type(), "StockAdjusted");
    assert_eq!(
        adjusted
            .decode::<ev::StockAdjusted>()
            .unwrap()
            .stock_level
            .unwrap()
            .on_hand,
        12
    );
    let updated = h.next_inventory().await;
    assert_eq!(
        updated.short_type(),
        "ProductUpdated",
        "the repeated adjustment published nothing"
    );
    let message = updated.decode::<ev::ProductUpdated>().unwrap();
    assert_eq!(message.changed_fields, ["price"], "the name did not change");
    assert_eq!(message.product.unwrap().version, 2);
    h.store
        .adjust_stock(
            &Adjustment {
                delta: -2,
                idempotency_key: None,
                ..restock
            },
            &origin(),
        )
        .await
        .unwrap();
    assert_eq!(h.next_inventory().await.short_type(), "StockAdjusted");

    // OrderPlaced with enough stock → StockReserved, stock reserved.
    let order = Uuid::now_v7();
    let place = placed(order, &[(kettle, 3), (mug, 2)]);
    h.publish(&place).await;
    let answer = h.next_inventory().await;
    assert_answer(&answer, order, "StockReserved");
    let reserved = answer.decode::<ev::StockReserved>().unwrap();
    assert_eq!(reserved.order_id, order.to_string());
    let expected = sorted_lines(&[
        ordermesh_proto::product::StockLine {
            product_id: kettle.to_string(),
            quantity: 3,
        },
        ordermesh_proto::product::StockLine {
            product_id: mug.to_string(),
            quantity: 2,
        },
    ]);
    assert_eq!(sorted_lines(&reserved.lines), expected);
    assert_eq!(h.stock(kettle).await, (10, 3));
    assert_eq!(h.stock(mug).await, (5, 2));

    // The same OrderPlaced again: the same event (absorbed by broker de-duplication or, when
    // redelivered, by the inbox), then the same placement under a new event id (absorbed by the
    // store, which answers the same again). One reservation either way.
    h.publish(&place).await;
    if let Some(memory) = &h.memory {
        memory.publish_duplicate(&place);
    }
    h.publish(&placed(order, &[(kettle, 3), (mug, 2)])).await;
    let answer = h.next_inventory().await;
    assert_answer(&answer, order, "StockReserved");
    assert_eq!(
        sorted_lines(&answer.decode::<ev::StockReserved>().unwrap().lines),
        expected,
        "the repeat is answered with the stored outcome"
    );
    assert_eq!(h.stock(kettle).await, (10, 3), "one reservation");
    assert_eq!(h.stock(mug).await, (5, 2), "one reservation");

    // Not enough stock → StockRejected with the shortfall, nothing reserved.
    let short = Uuid::now_v7();
    h.publish(&placed(short, &[(kettle, 1), (mug, 4)])).await;
    let answer = h.next_inventory().await;
    assert_answer(&answer, short, "StockRejected");
    let rejected = answer.decode::<ev::StockRejected>().unwrap();
    assert_eq!(rejected.order_id, short.to_string());
    assert_eq!(rejected.reason, "insufficient stock for SKU SAGA-MUG");
    assert_eq!(rejected.shortfalls.len(), 1);
    let shortfall = &rejected.shortfalls[0];
    assert_eq!(
        (shortfall.product_id.as_str(), shortfall.requested, shortfall.available),
        (mug.to_string().as_str(), 4, 3)
    );
    assert_eq!(
        h.stock(kettle).await,
        (10, 3),
        "all or nothing: the kettle was not reserved"
    );
    assert_eq!(h.stock(mug).await, (5, 2));

    // OrderCancelled → stock restored, StockReleased with the released lines.
    h.publish(&cancelled(order)).await;
    let answer = h.next_inventory().await;
    assert_answer(&answer, order, "StockReleased");
    let released = answer.decode::<ev::StockReleased>().unwrap();
    assert_eq!(sorted_lines(&released.lines), expected);
    assert_eq!(released.reason, "order cancelled");
    assert_eq!(h.stock(kettle).await, (10, 0));
    assert_eq!(h.stock(mug).await, (5, 0));

    // Cancel before place (the OrderPlaced was waiting for a retry): the release leaves a
    // tombstone, the late OrderPlaced reserves nothing and publishes nothing. The second cancel
    // is on the same lane, after the late placement: had the placement answered, its answer
    // would come first.
    let early = Uuid::now_v7();
    h.publish(&cancelled(early)).await;
    let answer = h.next_inventory().await;
    assert_answer(&answer, early, "StockReleased");
    assert!(answer.decode::<ev::StockReleased>().unwrap().lines.is_empty());
    h.publish(&placed(early, &[(kettle, 2)])).await;
    h.publish(&cancelled(early)).await;
    let answer = h.next_inventory().await;
    assert_answer(&answer, early, "StockReleased");
    assert!(answer.decode::<ev::StockReleased>().unwrap().lines.is_empty());
    assert_eq!(h.stock(kettle).await, (10, 0), "the late placement reserved nothing");
    let line = StockLine {
        product_id: kettle,
        quantity: 2,
    };
    assert!(
        h.store
            .reserve_stock(early, &[line], "corr-early")
            .await
            .unwrap()
            .is_tombstone()
    );

    // OrderShipped → the reservation is committed: stock leaves the warehouse.
    let shipped = Uuid::now_v7();
    h.publish(&placed(shipped, &[(kettle, 4)])).await;
    assert_answer(&h.next_inventory().await, shipped, "StockReserved");
    let message = ev::OrderShipped {
        order_id: shipped.to_string(),
        carrier: "DHL".into(),
        tracking_number: "TRACK-1".into(),
        ..Default::default()
    };
    h.publish(&order_event(shipped, "OrderShipped", &message)).await;
    let answer = h.next_inventory().await;
    assert_answer(&answer, shipped, "StockCommitted");
    assert_eq!(answer.decode::<ev::StockCommitted>().unwrap().lines.len(), 1);
    assert_eq!(h.stock(kettle).await, (6, 0));
    let committed = h.store.reserve_stock(shipped, &[], "corr-shipped").await.unwrap();
    assert_eq!(committed.status, ReservationStatus::Committed);

    // Other order events are ignored; an undecodable one is dead-lettered at once.
    let other = Uuid::now_v7();
    let confirmed = ev::OrderConfirmed {
        order_id: other.to_string(),
        ..Default::default()
    };
    h.publish(&order_event(other, "OrderConfirmed", &confirmed)).await;
    let garbage = OutgoingEvent::from_bytes(
        "order-svc",
        "order-events",
        "OrderPlaced",
        &other.to_string(),
        &correlation(other),
        vec![0xff, 0xff, 0xff],
    );
    h.publish(&garbage).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let letters = h.bus.dead_letters().await.unwrap();
        if let Some(letter) = letters.iter().find(|l| l.event.id == garbage.id) {
            assert_eq!(letter.service, "product-svc");
            assert_eq!(letter.delivery_count, 1, "permanent: not retried");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "undecodable event not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing was answered to the ignored and the undecodable events: the next answer on their
    // lane is the one to a later cancel of the same order.
    h.publish(&cancelled(other)).await;
    assert_answer(&h.next_inventory().await, other, "StockReleased");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saga_on_nats_and_postgres() {
    saga(Saga::start(BusKind::Nats, TestDatabase::postgres().await.unwrap()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saga_on_memory_bus_and_sqlite() {
    saga(Saga::start(BusKind::Memory, TestDatabase::sqlite().unwrap()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saga_on_memory_bus_and_postgres() {
    saga(Saga::start(BusKind::Memory, TestDatabase::postgres().await.unwrap()).await).await;
}
