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
//! - **One feed, many connections.** A connection is not a `Subscribe` of its own: the BFF
//!   holds one feed from notification-svc and hands each connection the notifications of its
//!   scope ([`crate::feed`], which also explains how a connection starts without gap).
//! - **Bounded buffer.** A connection's notifications wait in a channel of
//!   `BFF_SSE_BUFFER_EVENTS` (64). When the client reads so slowly that it is full, the
//!   connection is ended (after the buffered events): memory stays bounded, and the client
//!   resumes with `Last-Event-ID` without loss.
//! - **Cap.** At most `BFF_SSE_MAX_STREAMS_PER_PRINCIPAL` (5) concurrent streams per principal
//!   on one BFF instance ([`StreamSlots`]; 429 problem beyond). The slot is held by the SSE body
//!   and released when the body is dropped (stream ended or client gone).
//! - **Shutdown.** Every body also waits for the BFF's [`Shutdown`]: when it triggers, streams
//!   end, so axum's graceful shutdown does not wait for open streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::response::sse::Event;
use base64::Engine;
use futures::Stream;
use ordermesh_platform::auth::Principal;
use ordermesh_platform::client::{CallContext, ResilientChannel};
use ordermesh_platform::{Cache, Shutdown};
use ordermesh_proto::notification as pb;
use ordermesh_proto::notification::notification_service_client::NotificationServiceClient;
use rand::RngCore;
use sha2::Digest;
use tokio::sync::mpsc;

use crate::feed::{self, Registration, Shared};
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

/// The SSE event of a notification: `id:` its id, `event:` its type, `data:` its JSON as in the
/// list route.
pub fn to_event(notification: pb::Notification) -> Option<Event> {
    let notification = Notification::from_proto(notification);
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

/// The delivery of `notification` to one stream, from its conversion until the client's
/// connection took it: a span of the trace that created the notification (its `traceparent`),
/// so a trace follows an order from the click to the event on the portal's stream.
fn delivery_span(notification: &pb::Notification) -> tracing::Span {
    let span = tracing::info_span!(
        "sse",
        otel.name = "send notification",
        otel.kind = "producer",
        notification_id = %notification.id,
        correlation_id = %notification.correlation_id,
    );
    if !notification.traceparent.is_empty() {
        ordermesh_platform::telemetry::set_remote_parent(&span, |key| {
            (key == "traceparent").then(|| notification.traceparent.clone())
        });
    }
    span
}

/// Notifications per `CatchUp` page of a replay.
pub const REPLAY_PAGE: i32 = 200;

/// What a connection replays before it goes live: the pages it has read with the user's token,
/// and whether there are more.
pub struct Replay {
    pub client: NotificationServiceClient<ResilientChannel>,
    pub context: CallContext,
    pub pending: Vec<pb::Notification>,
    /// The last id read.
    pub cursor: i64,
    pub more: bool,
}

/// The SSE body: the replay, then the feed's notifications above the replay's cursor, until
/// the feed drops the connection (a whole buffer behind, or the BFF stops) or the BFF shuts
/// down. Holds the connection's place in the feed and the principal's slot until dropped.
pub fn body(
    replay: Replay,
    mut live: mpsc::Receiver<Shared>,
    registration: Registration,
    slot: Slot,
    shutdown: Shutdown,
) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    async_stream::stream! {
        let _held = (registration, slot);
        let mut cursor = replay.cursor;
        {
            let Replay { mut client, context, mut pending, mut more, .. } = replay;
            loop {
                for notification in pending.drain(..) {
                    let span = delivery_span(&notification);
                    if let Some(event) = to_event(notification) {
                        yield Ok(event);
                    }
                    drop(span);
                }
                if !more {
                    break;
                }
                let request = context.request(pb::CatchUpRequest { after_id: cursor.to_string(), page_size: REPLAY_PAGE });
                // Boxed: inline, the call's future would stay in every idle stream's body.
                let page = match Box::pin(client.catch_up(request)).await {
                    Ok(page) => page.into_inner(),
                    Err(status) => {
                        tracing::info!(code = ?status.code(), "notification replay failed; the client resumes");
                        return;
                    }
                };
                let Ok(next) = feed::parse_id(&page.cursor) else { return };
                (cursor, more, pending) = (next, page.more, page.notifications);
            }
        }
        loop {
            let notification = tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                notification = live.recv() => match notification {
                    Some(notification) => notification,
                    None => break,
                },
            };
            match feed::parse_id(&notification.id) {
                Ok(id) if id > cursor => cursor = id,
                _ => continue,
            }
            let span = delivery_span(&notification);
            if let Some(event) = to_event(pb::Notification::clone(&notification)) {
                yield Ok(event);
            }
            drop(span);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn client(subject: &str) -> Principal {
        Principal::Client {
            issuer: "https://issuer.test".into(),
            subject: subject.into(),
        }
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
        let notification = pb::Notification {
            id: "42".into(),
            notification_type: pb::NotificationType::Payment as i32,
            title: "t".into(),
            body: "b".into(),
            ..Default::default()
        };
        let event = to_event(notification).unwrap();
        let text = format!("{event:?}");
        assert!(text.contains("42") && text.contains("payment"), "{text}");
    }

    fn replay(cursor: i64, pending: Vec<pb::Notification>) -> Replay {
        let config = ordermesh_platform::client::ClientConfig::between(
            ordermesh_platform::mesh::Workload::BffExternal,
            ordermesh_platform::mesh::Workload::Notification,
            "http://127.0.0.1:1",
            None,
        );
        let (channel, _) = ordermesh_platform::client::channel(&config).unwrap();
        Replay {
            client: NotificationServiceClient::new(channel),
            context: CallContext::default(),
            pending,
            cursor,
            more: false,
        }
    }

    fn numbered(id: i64) -> pb::Notification {
        pb::Notification {
            id: id.to_string(),
            recipient: Some(pb::Recipient {
                target: Some(pb::recipient::Target::CustomerId("a".into())),
            }),
            notification_type: pb::NotificationType::Message as i32,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_replay_comes_first_then_live_notifications_above_its_cursor_once() {
        use futures::StreamExt as _;
        let fanout = Arc::new(crate::feed::Fanout::default());
        let (registration, live) = fanout.register(vec![crate::feed::Route::Customer("a".into())], 16);
        let slot = StreamSlots::new(1).acquire(&client("a")).unwrap();
        // 5 and 6 were committed while the connection registered: in the replay and live.
        for id in [5, 6, 7, 8] {
            fanout.dispatch(numbered(id));
        }
        let shutdown = Shutdown::new();
        let events = body(
            replay(6, vec![numbered(5), numbered(6)]),
            live,
            registration,
            slot,
            shutdown.clone(),
        );
        let mut events = Box::pin(events);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let event = events.next().await.unwrap().unwrap();
            seen.push(format!("{event:?}"));
        }
        for (text, id) in seen.iter().zip(["5", "6", "7", "8"]) {
            assert!(text.contains(&format!("id: {id}\\n")), "{id} expected in {text}");
        }
        shutdown.trigger();
        assert!(events.next().await.is_none(), "ends on shutdown");
        assert!(fanout.is_empty(), "and leaves the table");
    }
}
