//! Typed events on top of the envelope: producers build an [`OutgoingEvent`] from a bound
//! message ([`OutgoingEvent::of`]), consumers implement [`TopicHandler`] for a topic's enum and
//! match on it. Topic and type names come from the bindings in `ordermesh_proto::event_types`,
//! never from strings in a service.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
pub use ordermesh_proto::event_types::{EventMessage, TopicEvents, topics};

use super::consumer::{EventHandler, HandlerError};
use super::envelope::{OutgoingEvent, ReceivedEvent};
use super::tx::Tx;

impl OutgoingEvent {
    /// The event of `message` on its own topic, under its own type name.
    pub fn of<E: EventMessage>(source: &str, aggregate_id: &str, correlation_id: &str, message: &E) -> Self {
        Self::new(source, E::TOPIC, E::TYPE, aggregate_id, correlation_id, message)
    }
}

/// A service's reaction to the events of one topic, as the topic's enum `E`. Write every effect
/// through `tx` (see [`EventHandler`]). One type may handle several topics by implementing this
/// trait once per enum.
#[async_trait]
pub trait TopicHandler<E: TopicEvents>: Send + Sync + 'static {
    async fn handle(&self, event: E, envelope: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError>;

    /// See [`EventHandler::shares_transactions`]: `true` only for a handler that makes no call
    /// to another service.
    fn shares_transactions(&self) -> bool {
        false
    }
}

/// The [`EventHandler`] of a [`TopicHandler`]: decodes the payload by its type, skips types the
/// enum does not know, and dead-letters payloads that do not decode.
pub fn dispatch<E: TopicEvents, H: TopicHandler<E>>(handler: Arc<H>) -> Arc<dyn EventHandler> {
    Arc::new(Dispatch {
        handler,
        events: PhantomData::<fn() -> E>,
    })
}

struct Dispatch<E, H> {
    handler: Arc<H>,
    events: PhantomData<fn() -> E>,
}

#[async_trait]
impl<E: TopicEvents, H: TopicHandler<E>> EventHandler for Dispatch<E, H> {
    async fn handle(&self, envelope: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        let event = E::decode(&envelope.event_type, &envelope.payload)
            .map_err(|error| HandlerError::permanent(anyhow::anyhow!("{}: {error}", envelope.event_type)))?
            .ok_or_else(|| HandlerError::permanent(anyhow::anyhow!("unknown event type {}", envelope.event_type)))?;
        self.handler.handle(event, envelope, tx).await
    }

    fn knows(&self, event_type: &str) -> bool {
        E::TYPES.contains(&event_type)
    }

    fn shares_transactions(&self) -> bool {
        self.handler.shares_transactions()
    }
}
