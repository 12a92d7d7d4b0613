//! Live notifications over Server-Sent Events (`GET /api/v1/notifications/stream`, DESIGN §5):
//! the plumbing behind the route in [`crate::routes::notifications`].
//!
//! - **Stream tickets.** Browsers' `EventSource` cannot send an `Authorization` header, so
//!   `POST /api/v1/notifications/stream-ticket` hands out a random 256-bit ticket, valid once
//!   for `BFF_STREAM_TICKET_TTL_SECONDS` (30 s), which the stream accepts as `?ticket=`. The
//!   ticket stores the caller's bearer token in the shared [`Cache`] (Redis or in-memory) under
//!   the SHA-256 of the ticket (the cache never holds the ticket itself); redeeming it is an
//!   atomic take ([`Cache::take`], Redis `GETDEL`), so a ticket works once, on any replica. The
//!   auth guard then validates the stored token exactly like a header token: an expired or
//!   revoked-by-expiry token fails with 401 even with a fresh ticket, and notification-svc sees
//!   the user's own identity on `Subscribe` (the BFF never speaks for the user with its own
//!   credentials).
//! - **Bounded buffer.** One task per connection ([`pump`]) reads the gRPC `Subscribe` stream
//!   eagerly and hands events to the SSE body through a channel of `BFF_SSE_BUFFER_EVENTS` (64)
//!   events. When the client reads so slowly that the channel is full, the connection is ended
//!   (after the buffered events): memory stays bounded, and the client resumes with
//!   `Last-Event-ID` without loss.
//! - **Cap.** At most `BFF_SSE_MAX_STREAMS_PER_PRINCIPAL` (5) concurrent streams per principal
//!   on one BFF instance ([`StreamSlots`]; 429 problem beyond). The slot is held by the SSE body
//!   and released when the body is dropped (stream ended or client gone).
//! - **Shutdown.** Every pump also waits for the BFF's [`Shutdown`]: when it triggers, streams
//!   end, so axum's graceful shutdown does not wait for open streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::response::sse::Event;
use base64::Engine;
use futures::{Stream, StreamExt};
use ordermesh_platform::auth::Principal;
use ordermesh_platform::{Cache, Shutdown};
use ordermesh_proto::notification::{SubscribeResponse, subscribe_response};
use rand::RngCore;
use sha2::Digest;
use tokio::sync::mpsc;

use crate::models::Notification;

/// The route path of the stream (the only route that accepts a `?ticket=`).
pub const STREAM_PATH: &str = "/api/v1/notifications/stream";

fn ticket_key(ticket: &str) -> String {
    let digest = sha2::Sha256::digest(ticket.as_bytes());
    format!(
        "stream-ticket:{}",
        digest.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Issues a single-use ticket carrying `token` for `ttl`; `None` when the cache cannot store it.
pub async fn issue_ticket(cache: &Cache, token: &str, ttl: std::time::Duration) -> Option<String> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let ticket = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    cache
        .set_with_ttl(&ticket_key(&ticket), token.as_bytes(), ttl)
        .await
        .then_some(ticket)
}

/// Redeems a ticket: the token it carries, once; `None` when unknown, used or expired.
pub async fn redeem_ticket(cache: &Cache, ticket: &str) -> Option<String> {
    if ticket.is_empty() || ticket.len() > 128 {
        return None;
    }
    cache
        .take(&ticket_key(ticket))
        .await
        .and_then(|token| String::from_utf8(token).ok())
}

/// Open streams per principal on this instance.
#[derive(Debug)]
pub struct StreamSlots {
    max: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One open stream of a principal; released on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<StreamSlots>,
    key: String,
}

impl StreamSlots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::default(),
        })
    }

    /// A slot for `principal`, or `None` when it already holds the maximum.
    pub fn acquire(self: &Arc<Self>, principal: &Principal) -> Option<Slot> {
        let key = crate::limits::principal_key(principal);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key.clone()).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: self.clone(),
            key,
        })
    }

    /// Streams `principal` holds now.
    pub fn open(&self, principal: &Principal) -> usize {
        let key = crate::limits::principal_key(principal);
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&key).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The SSE event of one `Subscribe` message: a notification (`id:` its id, `event:` its type,
/// `data:` its JSON as in the list route) or, for notification-svc's heartbeat, a comment.
pub fn to_event(message: SubscribeResponse) -> Option<Event> {
    match message.event? {
        subscribe_response::Event::Notification(n) => {
            let notification = Notification::from_proto(n);
            let kind = serde_json::to_value(notification.notification_type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "notification".to_owned());
            Event::default()
                .id(notification.id.clone())
                .event(kind)
                .json_data(&notification)
                .ok()
        }
        subscribe_response::Event::Heartbeat(_) => Some(Event::default().comment("heartbeat")),
    }
}

/// Why a pump stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client went away (the SSE body was dropped).
    ClientGone,
    /// The client fell a whole buffer behind.
    Overflow,
    /// The BFF is shutting down.
    Shutdown,
    /// notification-svc ended the stream.
    UpstreamEnded,
    /// notification-svc failed the stream (e.g. RESOURCE_EXHAUSTED, shutdown).
    UpstreamError,
}

/// Moves `Subscribe` messages into `tx` until the client goes, falls a buffer behind, the
/// upstream ends or `shutdown` triggers. Never waits for the client: a full buffer ends it.
pub async fn pump<S>(mut upstream: S, tx: mpsc::Sender<Event>, shutdown: Shutdown) -> End
where
    S: Stream<Item = Result<SubscribeResponse, tonic::Status>> + Unpin,
{
    loop {
        let message = tokio::select! {
            biased;
            _ = shutdown.wait() => return End::Shutdown,
            _ = tx.closed() => return End::ClientGone,
            message = upstream.next() => message,
        };
        let message = match message {
            None => return End::UpstreamEnded,
            Some(Err(status)) => {
                tracing::info!(code = ?status.code(), message = status.message(), "notification stream failed upstream");
                return End::UpstreamError;
            }
            Some(Ok(message)) => message,
        };
        let Some(event) = to_event(message) else { continue };
        match tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return End::Overflow,
            Err(mpsc::error::TrySendError::Closed(_)) => return End::ClientGone,
        }
    }
}

/// The SSE body: the buffered events, holding the principal's slot until it is dropped.
pub fn body(rx: mpsc::Receiver<Event>, slot: Slot) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    futures::stream::unfold((rx, slot), |(mut rx, slot)| async move {
        let event = rx.recv().await?;
        Some((Ok(event), (rx, slot)))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ordermesh_proto::notification::{Heartbeat, Notification as Proto};

    use super::*;

    fn client(subject: &str) -> Principal {
        Principal::Client {
            issuer: "https://issuer.test".into(),
            subject: subject.into(),
        }
    }

    fn notification(id: u64) -> Result<SubscribeResponse, tonic::Status> {
        Ok(SubscribeResponse {
            event: Some(subscribe_response::Event::Notification(Proto {
                id: id.to_string(),
                notification_type: 3,
                title: "t".into(),
                body: "b".into(),
                ..Default::default()
            })),
        })
    }

    #[tokio::test]
    async fn tickets_work_once_and_expire() {
        let cache = Cache::in_memory("ticket-test:");
        let ticket = issue_ticket(&cache, "token-1", Duration::from_secs(30)).await.unwrap();
        assert!(ticket.len() >= 43, "256 random bits, base64url");
        assert_eq!(redeem_ticket(&cache, &ticket).await.as_deref(), Some("token-1"));
        assert_eq!(redeem_ticket(&cache, &ticket).await, None, "single use");
        let short = issue_ticket(&cache, "token-2", Duration::from_millis(30))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(redeem_ticket(&cache, &short).await, None, "expired");
        assert_ne!(issue_ticket(&cache, "t", Duration::from_secs(1)).await.unwrap(), ticket);
        let dead = Cache::connect(Some("redis://127.0.0.1:1"), None, "ticket-test:")
            .await
            .unwrap();
        assert_eq!(issue_ticket(&dead, "t", Duration::from_secs(1)).await, None);
    }

    #[test]
    fn slots_cap_per_principal_and_release_on_drop() {
        let slots = StreamSlots::new(2);
        let a1 = slots.acquire(&client("a")).unwrap();
        let _a2 = slots.acquire(&client("a")).unwrap();
        assert!(slots.acquire(&client("a")).is_none());
        assert!(slots.acquire(&client("b")).is_some(), "per principal");
        drop(a1);
        assert_eq!(slots.open(&client("a")), 1);
        assert!(slots.acquire(&client("a")).is_some());
    }

    #[test]
    fn events_carry_the_id_type_and_json() {
        assert!(to_event(notification(42).unwrap()).is_some());
        assert!(to_event(SubscribeResponse { event: None }).is_none());
        let heartbeat = SubscribeResponse {
            event: Some(subscribe_response::Event::Heartbeat(Heartbeat::default())),
        };
        assert!(to_event(heartbeat).is_some());
    }

    #[tokio::test]
    async fn a_slow_client_is_dropped_when_its_buffer_is_full() {
        let (tx, rx) = mpsc::channel(4);
        let upstream = futures::stream::iter((1..=100).map(notification)).chain(futures::stream::pending());
        let end = tokio::time::timeout(Duration::from_secs(5), pump(Box::pin(upstream), tx, Shutdown::new()))
            .await
            .unwrap();
        assert_eq!(end, End::Overflow);
        // Only the buffer's worth was held; the client reads those, then the stream ends.
        let slot = StreamSlots::new(1).acquire(&client("a")).unwrap();
        let drained: Vec<_> = body(rx, slot).collect().await;
        assert_eq!(drained.len(), 4);
    }

    #[tokio::test]
    async fn pumps_end_on_shutdown_and_when_the_client_goes() {
        let shutdown = Shutdown::new();
        let (tx, _rx) = mpsc::channel(4);
        let task = tokio::spawn(pump(Box::pin(futures::stream::pending()), tx, shutdown.clone()));
        shutdown.trigger();
        assert_eq!(task.await.unwrap(), End::Shutdown);

        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(pump(Box::pin(futures::stream::pending()), tx, Shutdown::new()));
        drop(rx);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .unwrap()
                .unwrap(),
            End::ClientGone
        );
    }
}
