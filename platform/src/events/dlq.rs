//! Dead letters: events a consumer gave up on after `max_deliver` attempts (or a permanent
//! error). Listed and replayed with `ordermesh dlq list|replay`, or through [`EventBus`].

use chrono::{DateTime, Utc};

use super::bus::{BusError, EventBus};
use super::envelope::ReceivedEvent;

/// One dead-lettered event.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Id in the dead-letter queue (the dead-letter stream's sequence on JetStream).
    pub id: u64,
    /// The consumer that failed.
    pub service: String,
    pub topic: String,
    /// Error of the last attempt (no personal data: handlers must not put any in errors).
    pub error: String,
    pub delivery_count: u64,
    /// Original subject and stream sequence.
    pub original_subject: String,
    pub original_sequence: u64,
    pub dead_lettered_at: DateTime<Utc>,
    /// The event, with its original id and headers.
    pub event: ReceivedEvent,
}

/// Replays every dead letter; returns how many were replayed.
pub async fn replay_all(bus: &dyn EventBus) -> Result<usize, BusError> {
    let letters = bus.dead_letters().await?;
    for letter in &letters {
        bus.replay_dead_letter(letter.id).await?;
    }
    Ok(letters.len())
}
