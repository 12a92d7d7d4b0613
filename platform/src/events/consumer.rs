//! The consumer runner: one durable consumer per (service, topic), bounded concurrency with
//! per-aggregate order, inbox idempotency in the handler's transaction, ack after commit, nak
//! with backoff on transient errors, dead letter after `max_deliver`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::bus::{Delivery, EventBus, SubscriptionSpec};
use super::envelope::ReceivedEvent;
use super::outbox;
use super::tx::Tx;
use crate::ServiceError;
use crate::db::{Database, StoreError};
use crate::shutdown::Shutdown;

/// Why a handler did not process an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// May succeed later (database busy, a peer service down): retried with backoff, then
    /// dead-lettered after `max_deliver` deliveries.
    #[error("{0}")]
    Transient(anyhow::Error),
    /// Will never succeed (undecodable payload, invariant broken): dead-lettered at once.
    #[error("{0}")]
    Permanent(anyhow::Error),
}

impl HandlerError {
    pub fn transient(error: impl Into<anyhow::Error>) -> Self {
        Self::Transient(error.into())
    }
    pub fn permanent(error: impl Into<anyhow::Error>) -> Self {
        Self::Permanent(error.into())
    }
}

/// The one classification of handler failures, used by every consumer. A handler that knows
/// better for one case (a NOT_FOUND that a later redelivery will fix) says so explicitly with
/// [`HandlerError::transient`] / [`HandlerError::permanent`].
///
/// Store failures are retried (bounded by `max_deliver`) except unreadable rows, which no retry
/// fixes.
impl From<StoreError> for HandlerError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Corrupt { .. } => Self::Permanent(error.into()),
            other => Self::Transient(other.into()),
        }
    }
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::from(error).into()
    }
}

/// Outages, timeouts, conflicts and internal failures may pass; a refusal (invalid, not found,
/// failed precondition, already exists, not allowed) will not.
impl From<ServiceError> for HandlerError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Unavailable(_)
            | ServiceError::DeadlineExceeded
            | ServiceError::Aborted(_)
            | ServiceError::ResourceExhausted(_)
            | ServiceError::Internal(_) => Self::Transient(error.into()),
            ServiceError::InvalidArgument(_)
            | ServiceError::NotFound { .. }
            | ServiceError::AlreadyExists { .. }
            | ServiceError::FailedPrecondition { .. }
            | ServiceError::Unauthenticated(_)
            | ServiceError::PermissionDenied(_) => Self::Permanent(error.into()),
        }
    }
}

/// A peer's answer, classified as [`crate::client::is_transient_code`] says.
impl From<tonic::Status> for HandlerError {
    fn from(status: tonic::Status) -> Self {
        let error = anyhow::anyhow!("peer answered {:?}: {}", status.code(), status.message());
        if crate::client::is_transient_code(status.code()) {
            Self::Transient(error)
        } else {
            Self::Permanent(error)
        }
    }
}

impl From<anyhow::Error> for HandlerError {
    fn from(error: anyhow::Error) -> Self {
        Self::Transient(error)
    }
}

impl From<prost::DecodeError> for HandlerError {
    fn from(error: prost::DecodeError) -> Self {
        Self::Permanent(error.into())
    }
}

/// A service's reaction to the events of one topic. Write every effect through `tx`: it also
/// holds the inbox row, and commits (then the delivery is acked) only if this returns `Ok`.
/// Events enqueued on `tx` are published after the commit.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, event: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError>;

    /// Whether this handler knows events of `event_type`. An event it does not know (from a
    /// newer producer) is acknowledged without a transaction, counted as `skipped` and logged
    /// once per type: never treated as handled, never retried.
    fn knows(&self, event_type: &str) -> bool {
        let _ = event_type;
        true
    }

    /// Whether `handle` only reads and writes through `tx`: no call to another service, no
    /// [`Tx::release`]. Deliveries already waiting in a lane are then handled together in one
    /// transaction (see `process_batch`). A handler that makes a network call must say `false`
    /// (the default): in a shared transaction it would hold the writes of the events before it —
    /// on SQLite the file's write lock — across the call.
    fn shares_transactions(&self) -> bool {
        false
    }
}

/// Most deliveries of one lane handled in one transaction.
const MAX_BATCH: usize = 32;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Consuming service, e.g. `product-svc`.
    pub service: String,
    pub topic: String,
    /// Sequential lanes: events are spread over lanes by aggregate id, so at most `lanes` events
    /// are handled at once and events of one aggregate are handled one after another, in order.
    /// Caveat: an event that failed and waits for its redelivery (nak with backoff) does not hold
    /// back later events of its aggregate; handlers that depend on strict order must check the
    /// aggregate's state (e.g. a version) and fail transiently when an event arrives early.
    pub lanes: usize,
    /// Deliveries before an event is dead-lettered.
    pub max_deliver: u64,
    /// Redelivery delay of a delivery that was never settled (the process died).
    pub ack_wait: Duration,
    /// Nak delay after the n-th failed delivery: `backoff[min(n, len) - 1]`.
    pub backoff: Vec<Duration>,
}

impl ConsumerConfig {
    pub fn new(service: &str, topic: &str) -> Self {
        let defaults = super::EventsConfig::default();
        Self {
            service: service.to_owned(),
            topic: topic.to_owned(),
            lanes: 8,
            max_deliver: defaults.max_deliver,
            ack_wait: Duration::from_secs(30),
            backoff: defaults.retry_backoff,
        }
    }

    /// Inbox key of this consumer.
    pub fn inbox_name(&self) -> String {
        format!("{}/{}", self.service, self.topic)
    }

    fn backoff_for(&self, delivery: u64) -> Duration {
        let index = (delivery.max(1) as usize - 1).min(self.backoff.len().saturating_sub(1));
        self.backoff.get(index).copied().unwrap_or(Duration::from_secs(1))
    }
}

/// A running consumer; see [`Consumer::spawn`].
pub struct Consumer;

impl Consumer {
    /// Subscribes (creating the durable consumer if needed) and handles deliveries until
    /// `shutdown`; in-flight events finish before the task ends.
    pub async fn spawn(
        bus: Arc<dyn EventBus>,
        db: Database,
        config: ConsumerConfig,
        handler: Arc<dyn EventHandler>,
        shutdown: Shutdown,
    ) -> Result<tokio::task::JoinHandle<()>, super::BusError> {
        let lanes = config.lanes.max(1);
        let spec = SubscriptionSpec {
            service: config.service.clone(),
            topic: config.topic.clone(),
            ack_wait: config.ack_wait,
            max_deliver: config.max_deliver,
            max_ack_pending: (lanes * MAX_BATCH).min(512),
        };
        let mut subscription = bus.subscribe(&spec).await?;
        let config = Arc::new(config);
        let mut senders = Vec::with_capacity(lanes);
        let mut workers = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            let (sender, mut receiver) = mpsc::channel::<Delivery>(MAX_BATCH);
            senders.push(sender);
            let (db, config, handler) = (db.clone(), config.clone(), handler.clone());
            workers.push(tokio::spawn(async move {
                while let Some(delivery) = receiver.recv().await {
                    let mut batch = vec![delivery];
                    // Only what already waits: a batch never waits to fill, so a lone event is
                    // handled at once and batches grow only with the load.
                    while handler.shares_transactions() && batch.len() < MAX_BATCH {
                        match receiver.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    if batch.len() == 1 {
                        let delivery = batch.pop().expect("one delivery");
                        process(&db, &config, handler.as_ref(), delivery).await;
                    } else {
                        process_batch(&db, &config, handler.as_ref(), batch).await;
                    }
                }
            }));
        }
        Ok(tokio::spawn(async move {
            loop {
                let delivery = tokio::select! {
                    delivery = subscription.next() => delivery,
                    _ = shutdown.wait() => None,
                };
                let Some(delivery) = delivery else { break };
                let lane = lane_of(&delivery.event.aggregate_id, lanes);
                if senders[lane].send(delivery).await.is_err() {
                    break;
                }
            }
            drop(senders);
            for worker in workers {
                let _ = worker.await;
            }
        }))
    }
}

fn lane_of(aggregate_id: &str, lanes: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    aggregate_id.hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

enum Outcome {
    Processed,
    Duplicate,
    Skipped,
    Retry(String),
    DeadLetter(String),
}

impl Outcome {
    fn of(result: Result<bool, HandlerError>, event: &ReceivedEvent, config: &ConsumerConfig) -> Self {
        match result {
            Ok(true) => Self::Processed,
            Ok(false) => Self::Duplicate,
            Err(HandlerError::Permanent(error)) => Self::DeadLetter(format!("{error:#}")),
            Err(HandlerError::Transient(error)) if event.delivery_count >= config.max_deliver => {
                Self::DeadLetter(format!("{error:#}"))
            }
            Err(HandlerError::Transient(error)) => Self::Retry(format!("{error:#}")),
        }
    }
}

/// The consumer span of one event, a child of the span that produced it.
fn span_of(config: &ConsumerConfig, event: &ReceivedEvent) -> tracing::Span {
    // OpenTelemetry's messaging conventions: `process <destination>`, a child of the producer.
    let span = tracing::info_span!(
        "consume event",
        otel.name = %format_args!("process {}", config.topic),
        otel.kind = "consumer",
        messaging.system = event.system,
        messaging.operation.type = "process",
        messaging.destination.name = %event.subject,
        messaging.message.id = %event.id,
        messaging.consumer.group.name = %config.service,
        service = %config.service,
        topic = %config.topic,
        event_id = %event.id,
        event_type = %event.event_type,
        correlation_id = %event.correlation_id,
        delivery = event.delivery_count,
    );
    crate::telemetry::set_remote_parent(&span, |key| match key {
        "traceparent" => event.traceparent.clone(),
        "tracestate" => event.tracestate.clone(),
        _ => None,
    });
    span
}

/// What becomes of `event` without running the handler: dead-lettered after too many
/// deliveries, skipped when the handler does not know its type; `None`: handle it.
fn settled_unhandled(config: &ConsumerConfig, handler: &dyn EventHandler, event: &ReceivedEvent) -> Option<Outcome> {
    if event.delivery_count > config.max_deliver {
        Some(Outcome::DeadLetter(format!(
            "delivered {} times without being settled",
            event.delivery_count
        )))
    } else if !handler.knows(&event.event_type) {
        Some(Outcome::Skipped)
    } else {
        None
    }
}

async fn process(db: &Database, config: &ConsumerConfig, handler: &dyn EventHandler, delivery: Delivery) {
    let span = span_of(config, &delivery.event);
    async {
        let outcome = match settled_unhandled(config, handler, &delivery.event) {
            Some(outcome) => outcome,
            None => Outcome::of(
                run_handler(db, config, handler, &delivery.event).await,
                &delivery.event,
                config,
            ),
        };
        settle(config, delivery, outcome).await;
    }
    .instrument(span)
    .await
}

/// Handles `batch` (deliveries that waited in one lane, in order) in ONE transaction: one
/// commit and, on SQLite, one write turn for all of them — under load the commits, not the
/// statements, are what a writer waits for (PostgreSQL's fsync, a serialising lock such as
/// notification-svc's, SQLite's single writer). All or nothing: if any event fails, is a
/// duplicate in the inbox or the commit fails, the transaction is rolled back and each event of
/// the batch is handled again on its own, so a failure is settled exactly as without batching.
async fn process_batch(db: &Database, config: &ConsumerConfig, handler: &dyn EventHandler, batch: Vec<Delivery>) {
    let mut handled = Vec::with_capacity(batch.len());
    for delivery in batch {
        match settled_unhandled(config, handler, &delivery.event) {
            Some(outcome) => {
                let span = span_of(config, &delivery.event);
                settle(config, delivery, outcome).instrument(span).await;
            }
            None => handled.push(delivery),
        }
    }
    // One span per event, for its handling and its settling alike.
    let spans: Vec<tracing::Span> = handled.iter().map(|d| span_of(config, &d.event)).collect();
    if let Err(error) = run_batch(db, config, handler, &handled, &spans).await {
        tracing::debug!(%error, events = handled.len(), "batch rolled back, handling its events one by one");
        for delivery in handled {
            process(db, config, handler, delivery).await;
        }
        return;
    }
    for (delivery, span) in handled.into_iter().zip(spans) {
        settle(config, delivery, Outcome::Processed).instrument(span).await;
    }
}

/// Runs the handler on every event of `deliveries` in one lazily begun transaction and commits
/// it; an error undoes them all.
async fn run_batch(
    db: &Database,
    config: &ConsumerConfig,
    handler: &dyn EventHandler,
    deliveries: &[Delivery],
    spans: &[tracing::Span],
) -> Result<(), HandlerError> {
    let inbox = config.inbox_name();
    let mut tx = Tx::lazy(db);
    let result: Result<(), HandlerError> = async {
        for (delivery, span) in deliveries.iter().zip(spans) {
            let event = &delivery.event;
            let uses = tx.uses();
            handler.handle(event, &mut tx).instrument(span.clone()).await?;
            // As on its own: an event the handler ran nothing for needs no inbox row. One
            // processed before (a redelivery) undoes the batch; alone, it is then a duplicate.
            if tx.uses() != uses && !outbox::record_inbox(&mut tx, &inbox, event.id).await? {
                return Err(HandlerError::transient(anyhow::anyhow!(
                    "event {} already processed",
                    event.id
                )));
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(tx.commit().await?),
        Err(error) => {
            let _ = tx.rollback().await;
            Err(error)
        }
    }
}

/// Acknowledges, retries or dead-letters a delivery as `outcome` says, and counts it.
async fn settle(config: &ConsumerConfig, delivery: Delivery, outcome: Outcome) {
    let Delivery { event, acker } = delivery;
    let label = match &outcome {
        Outcome::Processed => "processed",
        Outcome::Duplicate => "duplicate",
        Outcome::Skipped => "skipped",
        Outcome::Retry(_) => "retry",
        Outcome::DeadLetter(_) => "dead_letter",
    };
    let lag = (chrono::Utc::now() - event.occur_time).num_milliseconds() as f64 / 1000.0;
    crate::metrics::record_consumed(&config.service, &config.topic, label, lag, event.delivery_count);
    let settled = match outcome {
        Outcome::Processed => {
            crate::crash::point(crate::crash::CONSUMER_AFTER_COMMIT);
            acker.ack().await
        }
        Outcome::Duplicate => {
            tracing::debug!("duplicate delivery skipped");
            acker.ack().await
        }
        Outcome::Skipped => {
            log_unknown_type_once(&config.inbox_name(), &event.event_type);
            acker.ack().await
        }
        Outcome::Retry(error) => {
            let delay = config.backoff_for(event.delivery_count);
            tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "event handler failed, will retry");
            acker.nak(delay).await
        }
        Outcome::DeadLetter(error) => {
            tracing::error!(%error, "event dead-lettered");
            match acker.dead_letter(&config.service, &error).await {
                Ok(()) => Ok(()),
                Err(dlq_error) => {
                    tracing::error!(error = %dlq_error, "dead-lettering failed, will retry");
                    acker.nak(config.backoff_for(event.delivery_count)).await
                }
            }
        }
    };
    if let Err(error) = settled {
        // The broker redelivers after ack_wait; the inbox absorbs the repeat.
        tracing::warn!(%error, "could not settle delivery");
    }
}

/// Logs the first event of an unknown type per consumer; later ones are only counted.
fn log_unknown_type_once(consumer: &str, event_type: &str) {
    static SEEN: std::sync::Mutex<Option<std::collections::HashSet<(String, String)>>> = std::sync::Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if seen
        .get_or_insert_with(Default::default)
        .insert((consumer.to_owned(), event_type.to_owned()))
    {
        tracing::warn!(
            consumer,
            event_type,
            "event of a type this consumer does not know acknowledged and skipped (logged once per type)"
        );
    }
}

/// Runs the handler with the inbox row in its transaction. `Ok(false)`: already processed.
///
/// The transaction is lazy: it begins with the handler's first write, so whatever the handler
/// does before (calls to other services) holds no lock; the inbox row is written last, in the
/// same transaction as the effects (an event the handler wrote nothing for gets none). Two
/// deliveries of one event handled at once both run, and the second's inbox row (unique)
/// rolls its effects back.
async fn run_handler(
    db: &Database,
    config: &ConsumerConfig,
    handler: &dyn EventHandler,
    event: &ReceivedEvent,
) -> Result<bool, HandlerError> {
    let inbox = config.inbox_name();
    // A handler that calls other services is spared a redelivered event by a read first. One
    // that only writes here runs it and finds out at its inbox row (then rolls back): a read
    // for every delivery — most of which a consumer ignores — costs more than rare repeats.
    if !handler.shares_transactions() && outbox::is_processed(db, &inbox, event.id).await? {
        return Ok(false);
    }
    let mut tx = Tx::lazy(db);
    if let Err(error) = handler.handle(event, &mut tx).await {
        let _ = tx.rollback().await;
        return Err(error);
    }
    // Nothing written: the handler had no effect here to protect from a repeat (the calls it
    // made elsewhere are idempotent by key, as they must be across a crash anyway), so the event
    // needs no inbox row — and no write, which on SQLite is a turn at the file's one lock.
    if !tx.is_begun() {
        return Ok(true);
    }
    if !outbox::record_inbox(&mut tx, &inbox, event.id).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}
