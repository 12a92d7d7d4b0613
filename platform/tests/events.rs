//! Event backbone against the real servers: NATS JetStream at 127.0.0.1:4222 (or `NATS_URL`),
//! PostgreSQL at 127.0.0.1:5432 (per-test database), SQLite files, and the in-process bus. The
//! consumer suite is written once and run on every (bus, database) pair. Tests that stop the
//! broker start their own `nats-server` on a free port.

use std::collections::HashSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ordermesh_platform::Shutdown;
use ordermesh_platform::db::{Database, Migrations};
use ordermesh_platform::events::outbox::{self, RelayPass};
use ordermesh_platform::events::tx::TxConn;
use ordermesh_platform::events::{
    BusError, Consumer, ConsumerConfig, EventBus, EventHandler, EventsConfig, HandlerError, MemoryBus, NatsBus,
    OutgoingEvent, ReceivedEvent, Relay, RelayConfig, Tx,
};
use ordermesh_platform::housekeeping::{Job, OutboxRetention};
use ordermesh_platform::testing::TestDatabase;
use ordermesh_proto::events::OrderPlaced;
use sqlx::Row;

const TOPIC: &str = "order-events";
const SERVICE: &str = "test-svc";

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// Traces on (no exporter) so that trace context really propagates through headers.
fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let _ = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info"))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("events-test")))
            .try_init();
    });
}

const EFFECTS_PG: &str = "CREATE TABLE effects (event_id TEXT NOT NULL, aggregate_id TEXT NOT NULL, body TEXT NOT NULL, \
                          pos BIGINT NOT NULL, correlation_id TEXT NOT NULL, trace_ok BIGINT NOT NULL)";
const EFFECTS_SQLITE: &str = "CREATE TABLE effects (event_id TEXT NOT NULL, aggregate_id TEXT NOT NULL, body TEXT NOT NULL, \
                              pos INTEGER NOT NULL, correlation_id TEXT NOT NULL, trace_ok INTEGER NOT NULL)";

fn migrations() -> Migrations {
    let pg = [&[(1, "effects", EFFECTS_PG)][..], outbox::POSTGRES_MIGRATIONS].concat();
    let sqlite = [&[(1, "effects", EFFECTS_SQLITE)][..], outbox::SQLITE_MIGRATIONS].concat();
    Migrations::embedded(&pg, &sqlite)
}

/// Records each processed event as a row of `effects` in the handler's transaction. Can be made
/// to fail.
#[derive(Default)]
struct TestHandler {
    fail_first: AtomicUsize,
    always_fail: AtomicBool,
    /// Fails the event with this body this many more times.
    fail_body: Mutex<Option<(String, usize)>>,
    calls: AtomicUsize,
    position: AtomicI64,
    /// Says it only writes through its transaction, so waiting deliveries share one.
    shares: AtomicBool,
    /// PostgreSQL transaction ids the effects were written in.
    transactions: Mutex<HashSet<i64>>,
}

impl TestHandler {
    fn fails_on(&self, body: &str) -> bool {
        let mut fail_body = self.fail_body.lock().unwrap();
        match fail_body.as_mut() {
            Some((failing, left)) if failing == body && *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }
}

#[async_trait]
impl EventHandler for TestHandler {
    async fn handle(&self, event: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.always_fail.load(Ordering::SeqCst) {
            return Err(HandlerError::transient(anyhow::anyhow!("induced failure")));
        }
        if self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(HandlerError::transient(anyhow::anyhow!("induced transient failure")));
        }
        let body = event.decode::<OrderPlaced>()?.order_id;
        if self.fails_on(&body) {
            return Err(HandlerError::transient(anyhow::anyhow!("induced failure of {body}")));
        }
        let trace_ok = match (&event.traceparent, ordermesh_platform::telemetry::current_trace_id()) {
            (Some(parent), Some(current)) => parent.split('-').nth(1) == Some(current.as_str()),
            _ => false,
        };
        let position = self.position.fetch_add(1, Ordering::SeqCst);
        let id = event.id.to_string();
        match tx.conn().await? {
            TxConn::Postgres(c) => {
                let transaction: i64 = sqlx::query_scalar("SELECT txid_current()").fetch_one(&mut **c).await?;
                self.transactions.lock().unwrap().insert(transaction);
                sqlx::query("INSERT INTO effects VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(&id)
                    .bind(&event.aggregate_id)
                    .bind(&body)
                    .bind(position)
                    .bind(&event.correlation_id)
                    .bind(trace_ok as i64)
                    .execute(&mut **c)
                    .await?;
            }
            TxConn::Sqlite(c) => {
                sqlx::query("INSERT INTO effects VALUES (?, ?, ?, ?, ?, ?)")
                    .bind(&id)
                    .bind(&event.aggregate_id)
                    .bind(&body)
                    .bind(position)
                    .bind(&event.correlation_id)
                    .bind(trace_ok as i64)
                    .execute(&mut **c)
                    .await?;
            }
        }
        Ok(())
    }

    fn shares_transactions(&self) -> bool {
        self.shares.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Copy, Debug)]
enum BusKind {
    Nats,
    Memory,
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Postgres,
    Sqlite,
}

/// Deletes the test's streams even when the test panics.
struct StreamsGuard {
    url: String,
    config: EventsConfig,
}

impl Drop for StreamsGuard {
    fn drop(&mut self) {
        let (url, config) = (self.url.clone(), self.config.clone());
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(bus) = NatsBus::connect_only(&url, config).await {
                    let _ = bus.delete_streams().await;
                }
            });
        })
        .join();
    }
}

struct Env {
    bus: Arc<dyn EventBus>,
    nats: Option<NatsBus>,
    memory: Option<MemoryBus>,
    db: Database,
    handler: Arc<TestHandler>,
    shutdown: Shutdown,
    _streams: Option<StreamsGuard>,
    _db: TestDatabase,
}

fn event(aggregate: &str, body: &str) -> OutgoingEvent {
    let message = OrderPlaced {
        order_id: body.to_owned(),
        ..Default::default()
    };
    OutgoingEvent::new("order-svc", TOPIC, "OrderPlaced", aggregate, "corr-1", &message)
}

fn fast_relay() -> RelayConfig {
    RelayConfig {
        poll_interval: Duration::from_millis(500),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        ..RelayConfig::default()
    }
}

fn fast_consumer() -> ConsumerConfig {
    ConsumerConfig {
        lanes: 4,
        max_deliver: 3,
        ack_wait: Duration::from_secs(2),
        backoff: vec![Duration::from_millis(50), Duration::from_millis(100)],
        ..ConsumerConfig::new(SERVICE, TOPIC)
    }
}

impl Env {
    async fn new(kind: BusKind, backend: Backend) -> Self {
        Self::with_nats_url(kind, backend, &nats_url()).await
    }

    /// An environment whose handler shares transactions when `batched`.
    async fn suite(kind: BusKind, backend: Backend, batched: bool) -> Self {
        let env = Self::new(kind, backend).await;
        env.handler.shares.store(batched, Ordering::SeqCst);
        env
    }

    async fn with_nats_url(kind: BusKind, backend: Backend, url: &str) -> Self {
        init_tracing();
        let test_db = match backend {
            Backend::Postgres => TestDatabase::postgres().await.expect("test database"),
            Backend::Sqlite => TestDatabase::sqlite().expect("test database"),
        };
        let db = Database::connect(test_db.url(), "svc").await.expect("connect");
        db.migrate(&migrations()).await.expect("migrate");
        let (bus, nats, memory, streams): (Arc<dyn EventBus>, _, _, _) = match kind {
            BusKind::Nats => {
                let mut config = EventsConfig::isolated();
                config.request_timeout = Duration::from_secs(1);
                let guard = StreamsGuard {
                    url: url.to_owned(),
                    config: config.clone(),
                };
                let bus = connect_retrying(url, config).await;
                (Arc::new(bus.clone()), Some(bus), None, Some(guard))
            }
            BusKind::Memory => {
                let bus = MemoryBus::new();
                (Arc::new(bus.clone()), None, Some(bus), None)
            }
        };
        Self {
            bus,
            nats,
            memory,
            db,
            handler: Arc::new(TestHandler::default()),
            shutdown: Shutdown::new(),
            _streams: streams,
            _db: test_db,
        }
    }

    async fn start_consumer(&self, config: ConsumerConfig) {
        Consumer::spawn(
            self.bus.clone(),
            self.db.clone(),
            config,
            self.handler.clone(),
            self.shutdown.clone(),
        )
        .await
        .expect("consumer");
    }

    fn relay(&self) -> Relay {
        Relay::new(self.db.clone(), self.bus.clone(), fast_relay())
    }

    fn start_relay(&self) {
        self.relay().spawn(self.shutdown.clone());
    }

    /// Enqueues `events` in one transaction and commits (or rolls back).
    async fn write(&self, events: &[OutgoingEvent], commit: bool) {
        let mut tx = Tx::begin(&self.db).await.expect("begin");
        for event in events {
            tx.enqueue(event).await.expect("enqueue");
        }
        if commit {
            tx.commit().await.expect("commit")
        } else {
            tx.rollback().await.expect("rollback")
        }
    }

    async fn publish_duplicate(&self, event: &OutgoingEvent) {
        match (&self.nats, &self.memory) {
            (Some(nats), _) => {
                nats.publish_duplicate(event).await.expect("duplicate publish");
            }
            (_, Some(memory)) => memory.publish_duplicate(event),
            _ => unreachable!(),
        }
    }

    /// `(event_id, aggregate_id, body, pos, correlation_id, trace_ok)` rows.
    async fn effects(&self) -> Vec<(String, String, String, i64, String, i64)> {
        let sql = "SELECT event_id, aggregate_id, body, pos, correlation_id, trace_ok FROM effects ORDER BY pos";
        match &self.db {
            Database::Postgres(pool) => sqlx::query(sql)
                .fetch_all(pool)
                .await
                .expect("effects")
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                .collect(),
            Database::Sqlite(pool) => sqlx::query(sql)
                .fetch_all(pool)
                .await
                .expect("effects")
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                .collect(),
        }
    }

    async fn wait_effects(&self, count: usize, timeout: Duration) -> Vec<(String, String, String, i64, String, i64)> {
        let deadline = Instant::now() + timeout;
        loop {
            let effects = self.effects().await;
            if effects.len() >= count || Instant::now() > deadline {
                return effects;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finish(self) {
        self.shutdown.trigger();
        if let Some(nats) = &self.nats {
            let _ = nats.delete_streams().await;
        }
        self.db.close().await;
    }
}

async fn connect_retrying(url: &str, config: EventsConfig) -> NatsBus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match NatsBus::connect(url, config.clone()).await {
            Ok(bus) => return bus,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("NATS at {url}: {error}"),
        }
    }
}

fn distinct(effects: &[(String, String, String, i64, String, i64)]) -> usize {
    effects
        .iter()
        .map(|e| &e.0)
        .collect::<std::collections::HashSet<_>>()
        .len()
}

// ---------------------------------------------------------------------------------------------
// The consumer suite, generic over the bus and the database.
// ---------------------------------------------------------------------------------------------

/// Committed → consumed once (with correlation id and trace context); rolled back → never.
async fn committed_consumed_once_rolled_back_never(kind: BusKind, backend: Backend, batched: bool) {
    let env = Env::suite(kind, backend, batched).await;
    env.start_consumer(fast_consumer()).await;
    env.start_relay();
    let committed = {
        let span = tracing::info_span!("place order");
        let _entered = span.enter();
        event("order-1", "committed")
    };
    assert!(committed.traceparent.is_some(), "trace context captured at enqueue");
    env.write(&[event("order-2", "rolled-back")], false).await;
    env.write(std::slice::from_ref(&committed), true).await;
    let effects = env.wait_effects(1, Duration::from_secs(10)).await;
    // Give a stray delivery (the rolled-back event, or a repeat) time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let effects_after = env.effects().await;
    assert_eq!(effects.len(), 1, "{effects:?}");
    assert_eq!(effects_after.len(), 1, "{effects_after:?}");
    let (id, aggregate, body, _, correlation, trace_ok) = &effects_after[0];
    assert_eq!(id, &committed.id.to_string());
    assert_eq!(
        (aggregate.as_str(), body.as_str(), correlation.as_str()),
        ("order-1", "committed", "corr-1")
    );
    assert_eq!(*trace_ok, 1, "consumer span continues the publisher's trace");
    assert_eq!(outbox::pending_count(&env.db).await.unwrap(), 0);
    // Housekeeping: sent outbox rows and inbox rows are pruned by age.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let retention = OutboxRetention {
        sent_outbox_age: Duration::ZERO,
        inbox_age: Duration::ZERO,
    };
    let pruned = retention.run(&env.db, chrono::Utc::now()).await.unwrap();
    assert_eq!(
        (pruned.count("outbox rows deleted"), pruned.count("inbox ids deleted")),
        (1, 1)
    );
    env.finish().await;
}

/// The same event delivered twice (bypassing broker de-duplication) → effect applied once.
async fn duplicate_delivery_applied_once(kind: BusKind, backend: Backend, batched: bool) {
    let env = Env::suite(kind, backend, batched).await;
    env.start_consumer(fast_consumer()).await;
    env.start_relay();
    let first = event("order-1", "first");
    env.write(std::slice::from_ref(&first), true).await;
    assert_eq!(env.wait_effects(1, Duration::from_secs(10)).await.len(), 1);
    env.publish_duplicate(&first).await;
    // A later event of the same aggregate is handled after the duplicate (same lane, in order).
    env.write(&[event("order-1", "marker")], true).await;
    let effects = env.wait_effects(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let effects = if effects.len() == 2 {
        env.effects().await
    } else {
        effects
    };
    let bodies: Vec<_> = effects.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(bodies, ["first", "marker"]);
    // A handler that may call other services is spared the duplicate by a read of the inbox
    // first; one that only writes through its transaction meets it and its inbox row rolls the
    // repeat back.
    let expected_calls = if batched { 3 } else { 2 };
    assert_eq!(env.handler.calls.load(Ordering::SeqCst), expected_calls);
    env.finish().await;
}

/// Fails twice, then succeeds → processed once, no dead letter.
async fn fails_twice_then_succeeds(kind: BusKind, backend: Backend, batched: bool) {
    let env = Env::suite(kind, backend, batched).await;
    env.handler.fail_first.store(2, Ordering::SeqCst);
    env.start_consumer(fast_consumer()).await;
    env.start_relay();
    env.write(&[event("order-1", "flaky")], true).await;
    let effects = env.wait_effects(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(effects.len(), 1);
    assert_eq!(env.effects().await.len(), 1);
    assert_eq!(env.handler.calls.load(Ordering::SeqCst), 3);
    assert!(env.bus.dead_letters().await.unwrap().is_empty());
    env.finish().await;
}

/// Always fails → dead-lettered after max_deliver with error, service, topic, count; replayed
/// after the fault is fixed → processed once, and gone from the dead-letter queue.
async fn always_fails_dead_lettered_then_replayed(kind: BusKind, backend: Backend, batched: bool) {
    let env = Env::suite(kind, backend, batched).await;
    env.handler.always_fail.store(true, Ordering::SeqCst);
    env.start_consumer(fast_consumer()).await;
    env.start_relay();
    let poison = event("order-1", "poison");
    env.write(std::slice::from_ref(&poison), true).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let letters = loop {
        let letters = env.bus.dead_letters().await.unwrap();
        if !letters.is_empty() || Instant::now() > deadline {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(letters.len(), 1, "dead-lettered");
    let letter = &letters[0];
    assert_eq!(letter.service, SERVICE);
    assert_eq!(letter.topic, TOPIC);
    assert_eq!(letter.delivery_count, 3);
    assert!(letter.error.contains("induced failure"), "{}", letter.error);
    assert_eq!(letter.event.id, poison.id);
    assert!(letter.original_subject.ends_with(".order-events.OrderPlaced"));
    assert_eq!(env.handler.calls.load(Ordering::SeqCst), 3);
    assert!(env.effects().await.is_empty());

    // Not redelivered once dead-lettered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.handler.calls.load(Ordering::SeqCst), 3);
    // Nothing waits for the consumer, nothing is unsettled; a discard of what is not there
    // is NOT_FOUND and removes nothing.
    let state = env.bus.consumer_state(SERVICE, TOPIC).await.unwrap();
    assert_eq!((state.lag, state.ack_pending, state.redelivering), (0, 0, 0));
    assert!(matches!(
        env.bus.discard_dead_letter(letter.id + 1000).await,
        Err(BusError::NotFound(_))
    ));
    assert!(matches!(
        env.bus.consumer_state("no-such-svc", TOPIC).await,
        Err(BusError::NotFound(_))
    ));
    assert_eq!(env.bus.dead_letters().await.unwrap().len(), 1);

    env.handler.always_fail.store(false, Ordering::SeqCst);
    env.bus.replay_dead_letter(letter.id).await.unwrap();
    let effects = env.wait_effects(1, Duration::from_secs(10)).await;
    assert_eq!(effects.len(), 1);
    assert_eq!(effects[0].0, poison.id.to_string());
    assert!(env.bus.dead_letters().await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.effects().await.len(), 1);
    env.finish().await;
}

/// Relay "killed" after publishing and before marking sent (rows reset to unsent) → the
/// re-publish is absorbed: nothing applied twice.
async fn relay_republish_absorbed(kind: BusKind, backend: Backend, batched: bool) {
    let env = Env::suite(kind, backend, batched).await;
    env.start_consumer(fast_consumer()).await;
    let relay = env.relay();
    let events: Vec<_> = (0..5).map(|i| event(&format!("order-{i}"), &format!("e{i}"))).collect();
    env.write(&events, true).await;
    assert_eq!(
        relay.publish_pending().await.unwrap(),
        RelayPass {
            published: 5,
            more: false
        }
    );
    assert_eq!(env.wait_effects(5, Duration::from_secs(10)).await.len(), 5);
    // The crash: the publish happened but the "sent" mark was lost.
    assert_eq!(outbox::mark_unsent(&env.db, None).await.unwrap(), 5);
    assert_eq!(
        relay.publish_pending().await.unwrap(),
        RelayPass {
            published: 5,
            more: false
        }
    );
    // And once more, bypassing the broker's de-duplication: the inbox absorbs it.
    for event in &events {
        env.publish_duplicate(event).await;
    }
    env.write(&[event("order-0", "marker")], true).await;
    relay.publish_pending().await.unwrap();
    let effects = env.wait_effects(6, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(effects.len(), 6);
    let effects = env.effects().await;
    assert_eq!(effects.len(), 6, "{effects:?}");
    assert_eq!(distinct(&effects), 6);
    assert_eq!(outbox::pending_count(&env.db).await.unwrap(), 0);
    env.finish().await;
}

/// Many aggregates handled concurrently, each aggregate's events in order.
async fn per_aggregate_order(kind: BusKind, backend: Backend, batched: bool) {
    let env = Env::suite(kind, backend, batched).await;
    env.start_consumer(fast_consumer()).await;
    env.start_relay();
    for batch in 0..10 {
        let events: Vec<_> = (0..20)
            .map(|i| event(&format!("order-{}", i % 7), &format!("{:04}", batch * 20 + i)))
            .collect();
        env.write(&events, true).await;
    }
    let effects = env.wait_effects(200, Duration::from_secs(20)).await;
    assert_eq!(effects.len(), 200);
    assert_eq!(distinct(&effects), 200);
    for aggregate in 0..7 {
        let name = format!("order-{aggregate}");
        let bodies: Vec<&String> = effects.iter().filter(|e| e.1 == name).map(|e| &e.2).collect();
        let mut sorted = bodies.clone();
        sorted.sort();
        assert_eq!(bodies, sorted, "events of {name} handled in order");
    }
    env.finish().await;
}

macro_rules! consumer_suite {
    ($module:ident, $kind:expr, $backend:expr, $batched:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn committed_consumed_once_rolled_back_never() {
                super::committed_consumed_once_rolled_back_never($kind, $backend, $batched).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn duplicate_delivery_applied_once() {
                super::duplicate_delivery_applied_once($kind, $backend, $batched).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fails_twice_then_succeeds() {
                super::fails_twice_then_succeeds($kind, $backend, $batched).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn always_fails_dead_lettered_then_replayed() {
                super::always_fails_dead_lettered_then_replayed($kind, $backend, $batched).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn relay_republish_absorbed() {
                super::relay_republish_absorbed($kind, $backend, $batched).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn per_aggregate_order() {
                super::per_aggregate_order($kind, $backend, $batched).await
            }
        }
    };
}

consumer_suite!(nats_postgres, BusKind::Nats, Backend::Postgres, false);
consumer_suite!(nats_sqlite, BusKind::Nats, Backend::Sqlite, false);
consumer_suite!(memory_sqlite, BusKind::Memory, Backend::Sqlite, false);
consumer_suite!(memory_postgres, BusKind::Memory, Backend::Postgres, false);
// The same guarantees when waiting deliveries share a transaction.
consumer_suite!(nats_postgres_batched, BusKind::Nats, Backend::Postgres, true);
consumer_suite!(memory_sqlite_batched, BusKind::Memory, Backend::Sqlite, true);

// ---------------------------------------------------------------------------------------------
// Batches: deliveries waiting in a lane handled in one transaction.
// ---------------------------------------------------------------------------------------------

/// One lane, so every waiting event is in the same queue; the events are committed before the
/// consumer starts, so they wait.
fn one_lane() -> ConsumerConfig {
    ConsumerConfig {
        lanes: 1,
        ..fast_consumer()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_deliveries_share_a_transaction() {
    let env = Env::suite(BusKind::Memory, Backend::Postgres, true).await;
    let events: Vec<_> = (0..40).map(|i| event("order-1", &format!("{i:04}"))).collect();
    env.write(&events, true).await;
    env.start_relay();
    env.start_consumer(one_lane()).await;
    let effects = env.wait_effects(40, Duration::from_secs(20)).await;
    let bodies: Vec<&str> = effects.iter().map(|e| e.2.as_str()).collect();
    let expected: Vec<String> = (0..40).map(|i| format!("{i:04}")).collect();
    assert_eq!(bodies, expected, "all, once, in order");
    let transactions = env.handler.transactions.lock().unwrap().len();
    assert!(
        transactions <= 20,
        "40 waiting events were handled in {transactions} transactions"
    );
    env.finish().await;
}

/// An event that fails inside a batch undoes the batch; every event is then handled on its own,
/// so the others are applied once and the failing one is retried as it would be alone.
async fn a_failure_in_a_batch_is_settled_alone(kind: BusKind, backend: Backend) {
    let env = Env::suite(kind, backend, true).await;
    *env.handler.fail_body.lock().unwrap() = Some(("0017".to_owned(), 2));
    let events: Vec<_> = (0..40)
        .map(|i| event(&format!("order-{i}"), &format!("{i:04}")))
        .collect();
    env.write(&events, true).await;
    env.start_relay();
    env.start_consumer(one_lane()).await;
    env.wait_effects(40, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let effects = env.effects().await;
    assert_eq!(effects.len(), 40, "{effects:?}");
    assert_eq!(distinct(&effects), 40, "each event applied once");
    assert!(env.bus.dead_letters().await.unwrap().is_empty());
    assert_eq!(env.handler.fail_body.lock().unwrap().as_ref().map(|f| f.1), Some(0));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_a_batch_is_settled_alone_memory_postgres() {
    a_failure_in_a_batch_is_settled_alone(BusKind::Memory, Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_a_batch_is_settled_alone_nats_sqlite() {
    a_failure_in_a_batch_is_settled_alone(BusKind::Nats, Backend::Sqlite).await
}

// ---------------------------------------------------------------------------------------------
// Broker outage: our own nats-server, killed and restarted on the same port and store.
// ---------------------------------------------------------------------------------------------

struct OwnNats {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

fn nats_server_bin() -> String {
    std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server".into()
        } else {
            "nats-server".into()
        }
    })
}

impl OwnNats {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = Self {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new(nats_server_bin())
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn broker_outage_loses_nothing(backend: Backend) {
    let mut server = OwnNats::start();
    let env = Env::with_nats_url(BusKind::Nats, backend, &server.url()).await;
    env.start_consumer(ConsumerConfig {
        lanes: 8,
        ..fast_consumer()
    })
    .await;
    env.start_relay();
    env.write(&[event("warm-up", "warm-up")], true).await;
    assert_eq!(env.wait_effects(1, Duration::from_secs(10)).await.len(), 1);

    server.kill();
    for batch in 0..100 {
        let events: Vec<_> = (0..10)
            .map(|i| event(&format!("order-{}", i % 13), &format!("{:04}", batch * 10 + i)))
            .collect();
        env.write(&events, true).await;
    }
    // The relay keeps failing while the broker is down; nothing is marked sent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(outbox::pending_count(&env.db).await.unwrap() >= 999);
    server.spawn();

    let effects = env.wait_effects(1001, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let effects = if effects.len() == 1001 {
        env.effects().await
    } else {
        effects
    };
    assert_eq!(effects.len(), 1001, "all consumed, none applied twice");
    assert_eq!(distinct(&effects), 1001, "0 lost");
    assert_eq!(outbox::pending_count(&env.db).await.unwrap(), 0);
    env.finish().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_loses_nothing_postgres() {
    broker_outage_loses_nothing(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_loses_nothing_sqlite() {
    broker_outage_loses_nothing(Backend::Sqlite).await
}

/// Several relays on one PostgreSQL outbox: every event published, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_relays_on_postgres() {
    let env = Env::new(BusKind::Nats, Backend::Postgres).await;
    env.start_consumer(fast_consumer()).await;
    for _ in 0..3 {
        env.start_relay();
    }
    for batch in 0..10 {
        let events: Vec<_> = (0..10)
            .map(|i| event("order-1", &format!("{:04}", batch * 10 + i)))
            .collect();
        env.write(&events, true).await;
    }
    let effects = env.wait_effects(100, Duration::from_secs(20)).await;
    assert_eq!(effects.len(), 100);
    assert_eq!(distinct(&effects), 100);
    let bodies: Vec<&String> = effects.iter().map(|e| &e.2).collect();
    let mut sorted = bodies.clone();
    sorted.sort();
    assert_eq!(bodies, sorted, "one aggregate stays in order with several relays");
    env.finish().await;
}

/// Embedded profile: the in-process bus is lost with the process; after a "restart" the relay
/// (RelayConfig::embedded) publishes recently sent rows again, so an event that was sent but not
/// yet consumed is still delivered, and what was already consumed is absorbed by the inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_restart_redelivers_unconsumed_events() {
    let env = Env::new(BusKind::Memory, Backend::Sqlite).await;
    let before_crash = Shutdown::new();
    let first_bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new());
    let consumer = Consumer::spawn(
        first_bus.clone(),
        env.db.clone(),
        fast_consumer(),
        env.handler.clone(),
        before_crash.clone(),
    )
    .await
    .unwrap();
    let relay = Relay::new(env.db.clone(), first_bus.clone(), RelayConfig::embedded());
    let events: Vec<_> = (0..3).map(|i| event("order-1", &format!("e{i}"))).collect();
    env.write(&events, true).await;
    relay.publish_pending().await.unwrap();
    assert_eq!(env.wait_effects(3, Duration::from_secs(10)).await.len(), 3);
    // The consumer stops; one more event is published but never consumed; then the process dies.
    before_crash.trigger();
    consumer.await.unwrap();
    env.write(&[event("order-1", "e3")], true).await;
    assert_eq!(relay.publish_pending().await.unwrap().published, 1);
    drop(first_bus);

    // "Restart": a new in-process bus, consumer and relay.
    env.start_consumer(fast_consumer()).await;
    Relay::new(env.db.clone(), env.bus.clone(), RelayConfig::embedded()).spawn(env.shutdown.clone());
    let effects = env.wait_effects(4, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(effects.len(), 4);
    let effects = env.effects().await;
    assert_eq!(effects.len(), 4, "{effects:?}");
    assert_eq!(distinct(&effects), 4);
    env.finish().await;
}
