//! The bus abstraction both NATS JetStream and the in-process bus implement.

use std::time::Duration;

use async_trait::async_trait;

use super::dlq::DeadLetter;
use super::envelope::{OutgoingEvent, ReceivedEvent};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker did not confirm in time: the message may or may not be stored. Retry with the
    /// same event id (the broker de-duplicates it).
    #[error("publish outcome unknown: {0}")]
    Unknown(String),
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
    #[error("dead letter {0} not found")]
    NotFound(String),
}

/// Broker answer to a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishAck {
    /// Position in the topic's stream (JetStream sequence, or index in the in-process log).
    pub sequence: u64,
    /// The event id had already been stored (publish absorbed by de-duplication).
    pub duplicate: bool,
}

/// Where a durable consumer stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerState {
    /// Events on the topic not yet delivered to it.
    pub lag: u64,
    /// Deliveries not yet acknowledged.
    pub ack_pending: u64,
    /// Of those, the ones that are redeliveries.
    pub redelivering: u64,
}

/// What a durable consumer subscribes to.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    /// Consuming service (one durable consumer per service and topic).
    pub service: String,
    pub topic: String,
    /// Redelivery delay when a delivery is neither acked nor nak'ed (e.g. the process died).
    pub ack_wait: Duration,
    /// Deliveries the consumer runner makes before dead-lettering; the broker allows one more
    /// so that a delivery cut short by a crash still reaches the runner's dead-letter path.
    pub max_deliver: u64,
    /// Unacknowledged deliveries in flight at most (keep below JetStream's 1000 stall limit).
    pub max_ack_pending: usize,
}

/// A stream of deliveries of one durable consumer.
#[async_trait]
pub trait Subscription: Send {
    /// The next delivery; `None` once the subscription is closed for good. Transient broker
    /// trouble is retried inside.
    async fn next(&mut self) -> Option<Delivery>;
}

/// Settles one delivery. Exactly one method should be called.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Processed: never deliver again.
    async fn ack(&self) -> Result<(), BusError>;
    /// Not processed: deliver again after `delay`.
    async fn nak(&self, delay: Duration) -> Result<(), BusError>;
    /// Failed for good: store in the dead-letter queue with `error`, then stop redelivering.
    async fn dead_letter(&self, service: &str, error: &str) -> Result<(), BusError>;
}

/// One delivery of an event to a consumer.
pub struct Delivery {
    pub event: ReceivedEvent,
    pub acker: Box<dyn Acker>,
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes `event` on its topic and returns once the bus stored it. Idempotent on the
    /// event id within the de-duplication window.
    async fn publish(&self, event: &OutgoingEvent) -> Result<PublishAck, BusError>;

    /// Publishes `events` in order and returns how many, from the first, the bus stored, with
    /// the error that stopped it. A bus may have the next ones in flight while it waits for the
    /// earlier ones' acknowledgements; after a failure, some events past the prefix may have
    /// been stored too — publishing them again is absorbed by the de-duplication on their ids,
    /// but a consumer may then see one of them before the failed one (order holds only without
    /// failures, as for any retried publish).
    async fn publish_all(&self, events: &[&OutgoingEvent]) -> (usize, Option<BusError>) {
        for (stored, event) in events.iter().enumerate() {
            if let Err(error) = self.publish(event).await {
                return (stored, Some(error));
            }
        }
        (events.len(), None)
    }

    /// Opens (creating if needed) the durable consumer of `spec.service` on `spec.topic`.
    async fn subscribe(&self, spec: &SubscriptionSpec) -> Result<Box<dyn Subscription>, BusError>;

    /// Dead letters currently stored, oldest first.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, BusError>;

    /// Delivers dead letter `id` again to the consumer(s) of its topic and removes it from the
    /// dead-letter queue.
    async fn replay_dead_letter(&self, id: u64) -> Result<(), BusError>;

    /// Removes dead letter `id` without delivering it; [`BusError::NotFound`] if there is none.
    async fn discard_dead_letter(&self, id: u64) -> Result<(), BusError>;

    /// Where the durable consumer of `service` on `topic` stands; [`BusError::NotFound`] if it
    /// does not exist.
    async fn consumer_state(&self, service: &str, topic: &str) -> Result<ConsumerState, BusError>;

    /// What the bus is, for operators: `nats-jetstream` or `in-process`.
    fn kind(&self) -> &'static str;

    /// The bus as OpenTelemetry's `messaging.system` names it: `nats` or `in-process` (the
    /// value the events it delivers carry in [`super::ReceivedEvent::system`]).
    fn messaging_system(&self) -> &'static str;
}
