//! Live fan-out of new notifications to the Subscribe streams of every replica.
//!
//! # Design
//!
//! - **Commit hooks, no polling.** Whoever writes a notification — SendNotification and the
//!   event consumers alike — registers a hook on the writing transaction with
//!   [`LiveHub::announce_on_commit`]. The platform's `Tx` runs it only after the commit
//!   succeeded (never on rollback, so a rolled-back or redelivered event announces nothing it
//!   did not store). Nothing reads the store to find out that a commit happened.
//! - **The feed wakes, the store delivers.** A live item says only which notification was
//!   committed and for whom (id, recipient, type). A Subscribe stream that receives an item in
//!   its scope with an id above the last id it sent reads the store from that last id (see
//!   `grpc`, Subscribe), and drops items at or below it. The store assigns ids in commit order
//!   (see `store`), so when item N arrives every id below N is visible: the read has no gap,
//!   and items that arrive late, twice or out of order (hooks of concurrent commits, two
//!   replicas) change nothing.
//! - **Fan-out.** Each instance has one bounded `tokio::sync::broadcast` channel
//!   ([`LiveHub::subscribe`]) its streams listen on. With NATS (`config.nats_url` set), the hook
//!   hands the item to the instance's publisher task, which publishes it on the core subject
//!   `<subject_prefix>.live.notifications` (a protobuf `Notification` with id, recipient and
//!   type only); every instance, the publisher included, subscribes to that subject and forwards
//!   what it receives to its broadcast channel, so a notification stored by instance B wakes a
//!   stream on A. Without NATS (embedded profile) the hook sends to the broadcast channel
//!   directly. Either way the hook only enqueues: it never blocks the committing task.
//! - **Loss.** A crash between commit and hook, or a lost NATS message (core NATS is
//!   at-most-once), loses only a wake-up, never the notification: the stream's next wake-up
//!   catches up from the store, and a reconnect with `after_id` replays it.
//! - A stream whose client reads more slowly than the feed fills lags behind the broadcast
//!   channel (capacity [`Options::live_buffer`]) and is ended so it resubscribes with `after_id`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use ordermesh_platform::events::Tx;
use ordermesh_platform::{Env, ServiceConfig, Shutdown, Violations};
use ordermesh_proto::notification as pb;
use prost::Message as _;
use tokio::sync::{broadcast, mpsc};

use crate::convert;
use crate::domain::{Kind, Notification, Recipient, parse_id};

/// Tunables of the live delivery.
#[derive(Debug, Clone)]
pub struct Options {
    /// Heartbeat after this long without a message on a Subscribe stream
    /// (`NOTIFICATION_HEARTBEAT_SECONDS`, default 15).
    pub heartbeat: Duration,
    /// Capacity of the instance's live broadcast; a stream further behind than this ends with
    /// RESOURCE_EXHAUSTED (`NOTIFICATION_LIVE_BUFFER`, default 1024).
    pub live_buffer: usize,
    /// Messages buffered per stream before it waits for its client (`NOTIFICATION_STREAM_BUFFER`,
    /// default 64).
    pub stream_buffer: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            live_buffer: 1024,
            stream_buffer: 64,
        }
    }
}

impl Options {
    /// Reads the `NOTIFICATION_*` variables (defaults when absent).
    pub fn from_env(env: &Env) -> anyhow::Result<Self> {
        let defaults = Self::default();
        let heartbeat = env.seconds_or("NOTIFICATION_HEARTBEAT_SECONDS", defaults.heartbeat.as_secs())?;
        anyhow::ensure!(
            !heartbeat.is_zero(),
            "NOTIFICATION_HEARTBEAT_SECONDS must be at least 1"
        );
        Ok(Self {
            heartbeat,
            live_buffer: env.parse_or("NOTIFICATION_LIVE_BUFFER", defaults.live_buffer)?,
            stream_buffer: env.parse_or("NOTIFICATION_STREAM_BUFFER", defaults.stream_buffer)?,
        })
    }
}

/// The NATS core subject of the live feed.
pub fn live_subject(config: &ServiceConfig) -> String {
    format!("{}.live.notifications", config.events.subject_prefix)
}

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

    /// The wire form: a `Notification` without its content (a wake-up carries no text).
    fn encode(&self) -> Vec<u8> {
        pb::Notification {
            id: self.id.to_string(),
            recipient: Some((&self.recipient).into()),
            notification_type: convert::notification_type(self.kind),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn decode(payload: &[u8]) -> Option<Self> {
        let message = pb::Notification::decode(payload).ok()?;
        let mut violations = Violations::new();
        Some(Self {
            id: parse_id(&message.id)?,
            recipient: convert::recipient(&mut violations, "recipient", message.recipient.as_ref())?,
            kind: convert::kind(message.notification_type)?,
        })
    }
}

/// The live feed of one instance.
#[derive(Clone)]
pub struct LiveHub {
    local: broadcast::Sender<Arc<LiveItem>>,
    /// The publisher task's queue, with NATS; without, items go to `local` directly.
    to_nats: Option<mpsc::UnboundedSender<LiveItem>>,
}

impl LiveHub {
    /// Starts the hub with a broadcast channel of `capacity`. With `config.nats_url`, connects,
    /// subscribes to the live subject (and waits until the server registered the subscription)
    /// and starts the publisher task. The subscription ends with `shutdown`.
    pub async fn start(config: &ServiceConfig, capacity: usize, shutdown: &Shutdown) -> anyhow::Result<Self> {
        let (local, _) = broadcast::channel(capacity.max(1));
        let to_nats = match &config.nats_url {
            None => None,
            Some(url) => {
                let options = config.events.security.apply(async_nats::ConnectOptions::new()).await?;
                let client = options.connect(url.as_str()).await?;
                let subject = live_subject(config);
                let subscription = client.subscribe(subject.clone()).await?;
                client.flush().await?;
                tokio::spawn(forward(subscription, local.clone(), shutdown.clone()));
                let (sender, queue) = mpsc::unbounded_channel();
                tokio::spawn(publish(client, subject, queue));
                Some(sender)
            }
        };
        Ok(Self { local, to_nats })
    }

    /// A receiver of every live item of this instance from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveItem>> {
        self.local.subscribe()
    }

    /// Announces `notification` to every instance once `tx` (which stores it) has committed.
    pub fn announce_on_commit(&self, tx: &mut Tx, notification: &Notification) {
        let hub = self.clone();
        let item = LiveItem::of(notification);
        let kind = notification.kind.as_str();
        tx.after_commit(move || {
            // Counted once committed: a delivery rolled back is retried, and counted then.
            ordermesh_platform::metrics::record_notification(kind);
            hub.announce(item)
        });
    }

    fn announce(&self, item: LiveItem) {
        match &self.to_nats {
            // Cannot fail: the publisher runs until the last hub (this one included) is gone.
            Some(queue) => {
                let _ = queue.send(item);
            }
            // Fails only without receivers: no stream to wake.
            None => {
                let _ = self.local.send(Arc::new(item));
            }
        }
    }
}

/// Forwards the live subject to the instance's broadcast channel.
async fn forward(
    mut subscription: async_nats::Subscriber,
    local: broadcast::Sender<Arc<LiveItem>>,
    shutdown: Shutdown,
) {
    loop {
        let message = tokio::select! {
            message = subscription.next() => message,
            _ = shutdown.wait() => None,
        };
        let Some(message) = message else { break };
        match LiveItem::decode(&message.payload) {
            Some(item) => {
                let _ = local.send(Arc::new(item));
            }
            None => tracing::warn!("undecodable live notification ignored"),
        }
    }
    let _ = subscription.unsubscribe().await;
}

/// Publishes the items the commit hooks queued, in the order they were queued, until every
/// [`LiveHub`] of the instance is gone. It does not stop at shutdown: transactions that commit
/// while the service drains still wake the streams of the other instances.
async fn publish(client: async_nats::Client, subject: String, mut queue: mpsc::UnboundedReceiver<LiveItem>) {
    while let Some(item) = queue.recv().await {
        if let Err(error) = client.publish(subject.clone(), item.encode().into()).await {
            // Only the wake-up is lost; streams catch up from the store.
            tracing::warn!(%error, id = item.id, "live publish failed");
        }
    }
    let _ = client.flush().await;
}
