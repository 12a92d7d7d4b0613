//! Event backbone (DESIGN §3): transactional outbox → topics → idempotent consumers, with dead
//! letters, on NATS JetStream (production) or an in-process bus (embedded profile).
//!
//! # How a service uses it
//!
//! 1. **Migrations**: append [`outbox::POSTGRES_MIGRATIONS`] / [`outbox::SQLITE_MIGRATIONS`]
//!    (versions 9000 and up are reserved for the platform) to the service's own lists before
//!    calling [`crate::db::Migrations::embedded`]. They create `event_outbox` and `event_inbox`.
//! 2. **Publishing**: in the transaction that changes state, call [`Tx::enqueue`] (or
//!    [`outbox::enqueue_pg`] / [`outbox::enqueue_sqlite`] on a plain sqlx transaction) with an
//!    [`OutgoingEvent`]. Nothing reaches the bus unless the transaction commits.
//! 3. **Relay**: start one [`Relay`] per service database ([`Relay::spawn`]); it publishes
//!    pending rows in order, and marks them sent only after the bus acknowledged them.
//! 4. **Consuming**: implement [`EventHandler`] and start a [`Consumer`] per topic
//!    ([`Consumer::spawn`]); the handler's effects, the inbox row and any events it enqueues
//!    commit in one [`Tx`]. Acks follow the commit; failures are retried, then dead-lettered.
//! 5. **Bus**: [`connect_bus`] picks NATS JetStream when `NATS_URL` is set, else the
//!    in-process [`MemoryBus`]. Both implement [`EventBus`]; the same consumer code runs on both.

pub mod bus;
pub mod consumer;
pub mod dlq;
pub mod envelope;
pub mod memory;
pub mod nats;
pub mod outbox;
pub mod runtime;
pub mod tx;
pub mod typed;

use std::sync::Arc;

pub use bus::{Acker, BusError, ConsumerState, Delivery, EventBus, Subscription, SubscriptionSpec};
pub use consumer::{Consumer, ConsumerConfig, EventHandler, HandlerError};
pub use dlq::DeadLetter;
pub use envelope::{EventsConfig, OutgoingEvent, ReceivedEvent, TOPICS};
pub use memory::MemoryBus;
pub use nats::NatsBus;
pub use outbox::{Relay, RelayConfig};
pub use runtime::EventRuntime;
pub use tx::Tx;
pub use typed::{EventMessage, TopicEvents, TopicHandler, dispatch, topics};

/// The bus of the current profile: NATS JetStream when `nats_url` is given (streams are created
/// or updated), else the process-wide in-process bus ([`MemoryBus::shared`]). With the
/// in-process bus, run relays with [`RelayConfig::embedded`].
pub async fn connect_bus(nats_url: Option<&str>, config: EventsConfig) -> Result<Arc<dyn EventBus>, BusError> {
    match nats_url {
        Some(url) => Ok(Arc::new(NatsBus::connect(url, config).await?)),
        None => Ok(Arc::new(MemoryBus::shared())),
    }
}
