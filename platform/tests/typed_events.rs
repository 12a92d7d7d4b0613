//! Typed consumers on the in-process bus and SQLite: a known event reaches the handler as its
//! enum variant; an event type the consumer does not know (a newer producer) is acknowledged and
//! skipped — never handled, never redelivered, never dead-lettered; a payload that does not
//! decode is dead-lettered at once. And `Tx::after_commit` runs only after a commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ordermesh_platform::Shutdown;
use ordermesh_platform::db::{Database, Migrations};
use ordermesh_platform::events::{
    Consumer, ConsumerConfig, EventBus, HandlerError, MemoryBus, OutgoingEvent, ReceivedEvent, Relay, RelayConfig,
    TopicHandler, Tx, dispatch, topics,
};
use ordermesh_platform::testing::TestDatabase;
use ordermesh_proto::event_types::OrderEvent;
use ordermesh_proto::events::{OrderCancelled, OrderPlaced};

#[derive(Default)]
struct Placed {
    placed: AtomicUsize,
    other: AtomicUsize,
}

#[async_trait]
impl TopicHandler<OrderEvent> for Placed {
    async fn handle(&self, event: OrderEvent, _envelope: &ReceivedEvent, _tx: &mut Tx) -> Result<(), HandlerError> {
        match event {
            OrderEvent::OrderPlaced(_) => self.placed.fetch_add(1, Ordering::SeqCst),
            _ => self.other.fetch_add(1, Ordering::SeqCst),
        };
        Ok(())
    }
}

async fn database() -> (TestDatabase, Database) {
    let test_db = TestDatabase::sqlite().unwrap();
    let db = Database::connect(test_db.url(), "typed").await.unwrap();
    db.migrate(&Migrations::with_platform(&[], &[])).await.unwrap();
    (test_db, db)
}

async fn until(deadline: Duration, mut done: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + deadline;
    while Instant::now() < end && !done().await {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn known_types_are_dispatched_unknown_skipped_undecodable_dead_lettered() {
    let (_test_db, db) = database().await;
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new());
    let shutdown = Shutdown::new();
    let handler = Arc::new(Placed::default());
    let config = ConsumerConfig {
        max_deliver: 3,
        backoff: vec![Duration::from_millis(20)],
        ..ConsumerConfig::new("test-svc", topics::ORDER_EVENTS)
    };
    let consumer = Consumer::spawn(
        bus.clone(),
        db.clone(),
        config,
        dispatch(handler.clone()),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let relay = Relay::new(db.clone(), bus.clone(), RelayConfig::embedded()).spawn(shutdown.clone());

    let placed = OutgoingEvent::of("order-svc", "o-1", "c-1", &OrderPlaced::default());
    let unknown = OutgoingEvent::new(
        "order-svc",
        topics::ORDER_EVENTS,
        "ordermesh.events.v1.OrderTeleported",
        "o-2",
        "c-2",
        &OrderPlaced::default(),
    );
    let mut undecodable = OutgoingEvent::of("order-svc", "o-3", "c-3", &OrderCancelled::default());
    undecodable.payload = vec![0xff, 0xff, 0xff];
    let mut tx = Tx::begin(&db).await.unwrap();
    for event in [&placed, &unknown, &undecodable] {
        tx.enqueue(event).await.unwrap();
    }
    tx.commit().await.unwrap();

    until(Duration::from_secs(10), async || {
        handler.placed.load(Ordering::SeqCst) == 1 && !bus.dead_letters().await.unwrap().is_empty()
    })
    .await;
    // Time for a redelivery of anything not settled.
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(handler.placed.load(Ordering::SeqCst), 1);
    assert_eq!(
        handler.other.load(Ordering::SeqCst),
        0,
        "neither the unknown nor the bad payload"
    );
    let letters = bus.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1, "only the undecodable event: {letters:?}");
    assert_eq!(letters[0].event.id, undecodable.id);
    assert_eq!(letters[0].delivery_count, 1, "dead-lettered at once, not retried");
    shutdown.trigger();
    let _ = consumer.await;
    let _ = relay.await;
    db.close().await;
}

#[tokio::test]
async fn after_commit_hooks_run_after_a_commit_and_never_after_a_rollback() {
    let (_test_db, db) = database().await;
    let ran = Arc::new(AtomicUsize::new(0));

    let mut tx = Tx::begin(&db).await.unwrap();
    let counter = ran.clone();
    tx.after_commit(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(ran.load(Ordering::SeqCst), 0, "not before the commit");
    tx.commit().await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);

    let mut tx = Tx::begin(&db).await.unwrap();
    let counter = ran.clone();
    tx.after_commit(move || {
        counter.fetch_add(10, Ordering::SeqCst);
    });
    tx.rollback().await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1, "a rolled-back transaction runs no hook");
    db.close().await;
}
