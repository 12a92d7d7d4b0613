//! Live fan-out of new notifications to the Subscribe streams of every replica.
//!
//! # Design
//!
//! - The store is the source of truth; the live feed only *wakes* streams. Each instance has one
//!   bounded `tokio::sync::broadcast` channel ([`LiveHub::subscribe`]) that its Subscribe
//!   streams listen on.
//! - With NATS (`config.nats_url` set), a committed notification is published on the core
//!   subject `<subject_prefix>.live.notifications` (protobuf `Notification`, unread); every
//!   instance, the publisher included, subscribes to that subject and forwards what it receives
//!   to its broadcast channel. So a notification stored by instance B reaches a stream on A.
//!   Without NATS (embedded profile) publishing goes straight to the in-process broadcast.
//! - Publishing happens only after the notification's transaction committed:
//!   SendNotification publishes after its own commit ([`LiveHub::publish`]); event handlers
//!   write in the consumer's transaction, whose commit they do not see, so they hand the new
//!   ids to [`LiveHub::publish_when_committed`]: a background task publishes each one as soon as
//!   it is visible in the store, and forgets it after [`PENDING_TTL`] (the transaction rolled
//!   back; the redelivery creates new ids).
//! - A crash between commit and publish (or a lost NATS message: core NATS is at-most-once)
//!   loses only the live push, never the notification: a stream that receives any later
//!   notification catches up from the store (see `grpc` Subscribe), and a reconnect with
//!   `after_id` replays it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use ordermesh_platform::db::Database;
use ordermesh_platform::{Shutdown, Violations};
use ordermesh_proto::notification as pb;
use prost::Message as _;
use tokio::sync::{broadcast, mpsc};

use crate::domain::{Kind, Notification, Recipient, parse_id};
use crate::store;

/// How long an id handed to [`LiveHub::publish_when_committed`] is watched for.
pub const PENDING_TTL: Duration = Duration::from_secs(60);

/// What a live wake-up says: which notification, for whom.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveItem {
    pub id: i64,
    pub recipient: Recipient,
    pub kind: Kind,
}

impl LiveItem {
    fn of(notification: &Notification) -> Self {
        Self {
            id: notification.id,
            recipient: notification.recipient.clone(),
            kind: notification.kind,
        }
    }

    fn decode(payload: &[u8]) -> Option<Self> {
        let message = pb::Notification::decode(payload).ok()?;
        let mut violations = Violations::new();
        Some(Self {
            id: parse_id(&message.id)?,
            recipient: Recipient::from_proto(&mut violations, "recipient", message.recipient.as_ref())?,
            kind: Kind::from_proto(message.notification_type)?,
        })
    }
}

/// The live feed of one instance.
#[derive(Clone)]
pub struct LiveHub {
    local: broadcast::Sender<Arc<LiveItem>>,
    nats: Option<(async_nats::Client, String)>,
    pending: mpsc::UnboundedSender<i64>,
}

impl LiveHub {
    /// Starts the hub: with `nats`, subscribes to the live subject (and waits until the server
    /// registered the subscription); starts the post-commit publisher over `db`.
    pub async fn start(
        db: Database,
        nats: Option<(async_nats::Client, String)>,
        capacity: usize,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        let (local, _) = broadcast::channel(capacity.max(1));
        if let Some((client, subject)) = &nats {
            let mut subscription = client.subscribe(subject.clone()).await?;
            client.flush().await?;
            let forward = local.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let message = tokio::select! {
                        message = subscription.next() => message,
                        _ = stop.wait() => None,
                    };
                    let Some(message) = message else { break };
                    match LiveItem::decode(&message.payload) {
                        Some(item) => {
                            let _ = forward.send(Arc::new(item));
                        }
                        None => tracing::warn!("undecodable live notification ignored"),
                    }
                }
                let _ = subscription.unsubscribe().await;
            });
        }
        let (pending, receiver) = mpsc::unbounded_channel();
        let hub = Self { local, nats, pending };
        tokio::spawn(watch_pending(db, hub.clone(), receiver, shutdown));
        Ok(hub)
    }

    /// A receiver of every live item of this instance from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveItem>> {
        self.local.subscribe()
    }

    /// Publishes a committed notification to every instance (or this one, without NATS).
    pub async fn publish(&self, notification: &Notification) {
        match &self.nats {
            Some((client, subject)) => {
                let mut message = notification.to_proto();
                message.title.clear();
                message.body.clear();
                message.data.clear();
                let payload = message.encode_to_vec();
                if let Err(error) = client.publish(subject.clone(), payload.into()).await {
                    // Only the live push is lost; streams catch up from the store.
                    tracing::warn!(%error, id = notification.id, "live publish failed");
                }
            }
            None => {
                let _ = self.local.send(Arc::new(LiveItem::of(notification)));
            }
        }
    }

    /// Publishes notification `id` once its (not yet committed) transaction committed.
    pub fn publish_when_committed(&self, id: i64) {
        let _ = self.pending.send(id);
    }
}

/// Publishes pending ids as they become visible in the store, in id order.
async fn watch_pending(db: Database, hub: LiveHub, mut receiver: mpsc::UnboundedReceiver<i64>, shutdown: Shutdown) {
    let mut pending: Vec<(i64, Instant)> = Vec::new();
    let mut delay = Duration::from_millis(2);
    loop {
        if pending.is_empty() {
            let next = tokio::select! {
                next = receiver.recv() => next,
                _ = shutdown.wait() => None,
            };
            let Some(id) = next else { return };
            pending.push((id, Instant::now()));
            delay = Duration::from_millis(2);
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait() => return,
        }
        while let Ok(id) = receiver.try_recv() {
            pending.push((id, Instant::now()));
        }
        pending.sort_by_key(|(id, _)| *id);
        let mut still = Vec::with_capacity(pending.len());
        for (id, since) in pending.drain(..) {
            match store::get(&db, id).await {
                Ok(Some(notification)) => hub.publish(&notification).await,
                Ok(None) if since.elapsed() < PENDING_TTL => still.push((id, since)),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "live publisher could not read the store");
                    still.push((id, since));
                }
            }
        }
        pending = still;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}
