//! One live feed of notifications per BFF instance, fanned out to its SSE connections.
//!
//! # Why
//!
//! A gRPC `Subscribe` per SSE connection cost a stream on both sides (tonic's buffers, an h2
//! stream, a task in the BFF and one in notification-svc): an idle SSE stream took ~4× the
//! memory of an idle keep-alive connection. Now the BFF holds ONE `Subscribe` of its own (a
//! service sees every notification) and an SSE connection is a bounded channel in a table.
//!
//! # How a connection starts without gap or duplicate
//!
//! Ids become visible in id order (notification-svc's store), and `Subscribe` delivers them in
//! that order from its `after_id` on; the feed resumes from the last id it received after any
//! break, so it misses nothing it has not delivered. A connection, with the user's token:
//! 1. calls `CatchUp` (`after_id` = the client's `Last-Event-ID`): the replay's first page, the
//!    cursor, and the user's *scope* (its customer, or its role groups);
//! 2. registers in the table under that scope ([`Feed::register`]) — only once the feed knows
//!    where it started ([`Feed::ready`]), so the feed covers everything committed after this;
//! 3. calls `CatchUp` again from the cursor (and pages on while `more`): whatever was committed
//!    between 1 and 2 is read from the store;
//! 4. then takes the feed's notifications with an id above its cursor.
//!
//! A notification committed before step 3's read is in the replay; one committed after it
//! reaches the table after the registration. Those seen twice are dropped by the cursor.
//!
//! # Bounds
//!
//! A connection's channel holds `BFF_SSE_BUFFER_EVENTS`. Dispatch never waits: a connection
//! whose channel is full is dropped from the table, its stream ends after what it holds, and
//! the client resumes with `Last-Event-ID`. The feed itself never waits for a connection, so
//! one slow client cannot hold up the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ordermesh_platform::Shutdown;
use ordermesh_platform::auth::ServiceCredentials;
use ordermesh_platform::client::{CallContext, ResilientChannel};
use ordermesh_proto::notification as pb;
use ordermesh_proto::notification::notification_service_client::NotificationServiceClient;
use tokio::sync::{mpsc, watch};

/// A notification as every connection it is for receives it.
pub type Shared = Arc<pb::Notification>;

/// Whom a connection receives notifications for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// Every notification (a service's stream).
    All,
    Customer(String),
    /// An employee role group (`order-manager`, …).
    Role(String),
}

impl Route {
    fn of(recipient: &pb::Recipient) -> Option<Self> {
        match recipient.target.as_ref()? {
            pb::recipient::Target::CustomerId(id) => Some(Self::Customer(id.clone())),
            pb::recipient::Target::Role(role) => Some(Self::Role(role.clone())),
        }
    }

    /// The routes of a `CatchUp` answer's scope.
    pub fn scope(answer: &pb::CatchUpResponse) -> Vec<Self> {
        if answer.all {
            return vec![Self::All];
        }
        answer.scope.iter().filter_map(Self::of).collect()
    }
}

/// The table of connections by route, and the dispatch of one notification to them.
#[derive(Debug, Default)]
pub struct Fanout {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    routes: HashMap<Route, HashMap<u64, mpsc::Sender<Shared>>>,
}

/// A connection's place in the table; dropping it takes the connection out.
#[derive(Debug)]
pub struct Registration {
    fanout: Arc<Fanout>,
    id: u64,
    routes: Vec<Route>,
}

impl Fanout {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a connection under `routes` with a channel of `capacity`.
    pub fn register(self: &Arc<Self>, routes: Vec<Route>, capacity: usize) -> (Registration, mpsc::Receiver<Shared>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let mut table = self.table();
        let id = table.next_id;
        table.next_id += 1;
        for route in &routes {
            table
                .routes
                .entry(route.clone())
                .or_default()
                .insert(id, sender.clone());
        }
        let registration = Registration {
            fanout: self.clone(),
            id,
            routes,
        };
        (registration, receiver)
    }

    /// Hands `notification` to every connection of its recipient (and every `All` connection).
    /// A connection whose channel is full or closed leaves the table: its stream ends.
    pub fn dispatch(&self, notification: pb::Notification) {
        let Some(route) = notification.recipient.as_ref().and_then(Route::of) else {
            return;
        };
        let notification = Arc::new(notification);
        let mut table = self.table();
        for route in [route, Route::All] {
            if let Some(connections) = table.routes.get_mut(&route) {
                connections.retain(|_, sender| sender.try_send(notification.clone()).is_ok());
                if connections.is_empty() {
                    table.routes.remove(&route);
                }
            }
        }
    }

    /// Connections in the table (a connection with several routes counts once per route).
    pub fn len(&self) -> usize {
        self.table().routes.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends every connection's stream (after what it holds).
    fn clear(&self) {
        self.table().routes.clear();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut table = self.fanout.table();
        for route in &self.routes {
            if let Some(connections) = table.routes.get_mut(route) {
                connections.remove(&self.id);
                if connections.is_empty() {
                    table.routes.remove(route);
                }
            }
        }
    }
}

/// Waits between attempts to (re)open the feed.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The BFF's own `Subscribe` and the table it feeds.
pub struct Feed {
    fanout: Arc<Fanout>,
    client: NotificationServiceClient<ResilientChannel>,
    credentials: ServiceCredentials,
    shutdown: Shutdown,
    /// True once the feed knows the id it continues from.
    ready: watch::Sender<bool>,
    started: AtomicBool,
}

impl Feed {
    pub fn new(
        client: NotificationServiceClient<ResilientChannel>,
        credentials: ServiceCredentials,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        Arc::new(Self {
            fanout: Arc::default(),
            client,
            credentials,
            shutdown,
            ready: watch::channel(false).0,
            started: AtomicBool::new(false),
        })
    }

    /// Starts the feed (on first use) and waits until it knows where it continues from, at
    /// most `wait`. False when it could not start in time (notification-svc unreachable, no
    /// service credentials).
    pub async fn ready(self: &Arc<Self>, wait: Duration) -> bool {
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(self.clone().run());
        }
        let mut ready = self.ready.subscribe();
        matches!(
            tokio::time::timeout(wait, ready.wait_for(|ready| *ready)).await,
            Ok(Ok(_))
        )
    }

    /// Adds a connection under `routes`; see the module's documentation for the order of calls.
    pub fn register(&self, routes: Vec<Route>, capacity: usize) -> (Registration, mpsc::Receiver<Shared>) {
        self.fanout.register(routes, capacity)
    }

    /// Connections in the table.
    pub fn connections(&self) -> usize {
        self.fanout.len()
    }

    async fn run(self: Arc<Self>) {
        let mut position = None;
        let mut retry = RETRY_MIN;
        while !self.shutdown.is_triggered() {
            match self.follow(&mut position, &mut retry).await {
                Ok(()) => tracing::info!("notification feed ended by notification-svc; resuming"),
                Err(error) => tracing::warn!(error = %error, "notification feed broken; resuming"),
            }
            tokio::select! {
                _ = self.shutdown.wait() => break,
                _ = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(RETRY_MAX);
        }
        self.fanout.clear();
    }

    /// Opens the feed after `position` (learning it first, once) and dispatches until it ends.
    async fn follow(&self, position: &mut Option<i64>, retry: &mut Duration) -> anyhow::Result<()> {
        let context = CallContext {
            bearer_token: self.credentials.token()?,
            correlation_id: None,
        };
        anyhow::ensure!(
            context.bearer_token.is_some(),
            "the BFF has no service credentials (SERVICE_TOKEN_FILE)"
        );
        let mut client = self.client.clone();
        let after = match *position {
            Some(after) => after,
            None => {
                let request = context.request(pb::CatchUpRequest::default());
                let start = parse_id(&client.catch_up(request).await?.into_inner().cursor)?;
                *position = Some(start);
                self.ready.send_replace(true);
                start
            }
        };
        let request = context.request(pb::SubscribeRequest {
            after_id: after.to_string(),
            notification_types: Vec::new(),
        });
        let mut stream = client.subscribe(request).await?.into_inner();
        *retry = RETRY_MIN;
        loop {
            let message = tokio::select! {
                _ = self.shutdown.wait() => return Ok(()),
                message = stream.message() => message?,
            };
            let Some(message) = message else { return Ok(()) };
            if let Some(pb::subscribe_response::Event::Notification(notification)) = message.event {
                *position = Some(parse_id(&notification.id)?);
                self.fanout.dispatch(notification);
            }
        }
    }
}

/// A notification id as notification-svc writes it.
pub fn parse_id(id: &str) -> anyhow::Result<i64> {
    id.parse()
        .map_err(|_| anyhow::anyhow!("notification-svc sent an id that is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(route: &Route, id: i64) -> pb::Notification {
        let target = match route {
            Route::Customer(c) => pb::recipient::Target::CustomerId(c.clone()),
            Route::Role(r) => pb::recipient::Target::Role(r.clone()),
            Route::All => unreachable!(),
        };
        pb::Notification {
            id: id.to_string(),
            recipient: Some(pb::Recipient { target: Some(target) }),
            ..Default::default()
        }
    }

    fn ids(receiver: &mut mpsc::Receiver<Shared>) -> Vec<String> {
        std::iter::from_fn(|| receiver.try_recv().ok())
            .map(|n| n.id.clone())
            .collect()
    }

    #[test]
    fn a_notification_reaches_the_connections_of_its_recipient_and_no_other() {
        let fanout = Arc::new(Fanout::default());
        let alice = Route::Customer("a".into());
        let bob = Route::Customer("b".into());
        let managers = Route::Role("order-manager".into());
        let (_a, mut to_alice) = fanout.register(vec![alice.clone()], 8);
        let (_a2, mut to_alice_again) = fanout.register(vec![alice.clone()], 8);
        let (_m, mut to_manager) = fanout.register(vec![managers.clone(), Route::Role("admin".into())], 8);
        let (_s, mut to_service) = fanout.register(vec![Route::All], 8);
        fanout.dispatch(to(&alice, 1));
        fanout.dispatch(to(&bob, 2));
        fanout.dispatch(to(&managers, 3));
        fanout.dispatch(pb::Notification::default());
        assert_eq!(ids(&mut to_alice), ["1"]);
        assert_eq!(ids(&mut to_alice_again), ["1"]);
        assert_eq!(ids(&mut to_manager), ["3"]);
        assert_eq!(ids(&mut to_service), ["1", "2", "3"]);
    }

    #[test]
    fn a_dropped_registration_leaves_the_table() {
        let fanout = Arc::new(Fanout::default());
        let (first, _) = fanout.register(vec![Route::Customer("a".into()), Route::Role("admin".into())], 8);
        let (_second, _rx) = fanout.register(vec![Route::Customer("a".into())], 8);
        assert_eq!(fanout.len(), 3);
        drop(first);
        assert_eq!(fanout.len(), 1);
    }

    #[tokio::test]
    async fn a_connection_a_whole_buffer_behind_is_dropped_and_keeps_what_it_holds() {
        let fanout = Arc::new(Fanout::default());
        let alice = Route::Customer("a".into());
        let (_slow, mut slow) = fanout.register(vec![alice.clone()], 4);
        let (_quick, mut quick) = fanout.register(vec![alice.clone()], 4);
        for id in 1..=10 {
            fanout.dispatch(to(&alice, id));
            // The quick one keeps up.
            assert_eq!(quick.recv().await.unwrap().id, id.to_string());
        }
        let mut held = Vec::new();
        while let Some(notification) = slow.recv().await {
            held.push(notification.id.clone());
        }
        assert_eq!(held, ["1", "2", "3", "4"], "the buffer's worth, then the end");
        assert_eq!(fanout.len(), 1);
    }

    #[test]
    fn clearing_ends_every_connection() {
        let fanout = Arc::new(Fanout::default());
        let (_registration, mut receiver) = fanout.register(vec![Route::All], 8);
        fanout.clear();
        assert!(matches!(
            receiver.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert!(fanout.is_empty());
    }
}
