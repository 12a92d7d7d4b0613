//! Shared harness: notification-svc in-process on 127.0.0.1:0 — with PostgreSQL and real NATS
//! (JetStream topics and the live core subject under prefixes of its own), or with SQLite and
//! an in-process bus — real JWTs, and a stand-in customer-svc that resolves client identities.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use notification_svc::Options;
use ordermesh_platform::auth::Role;
use ordermesh_platform::events::{EventBus, EventsConfig, MemoryBus, NatsBus, OutgoingEvent};
use ordermesh_platform::testing::{
    self, CustomerStandIn, RunningService, ServedStandIn, TestAuth, TestDatabase, with_token,
};
use ordermesh_proto::customer as cpb;
use ordermesh_proto::notification as pb;
use ordermesh_proto::notification::notification_service_client::NotificationServiceClient;
use tonic::Streaming;
use tonic::transport::Channel;
use uuid::Uuid;

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Profile {
    /// PostgreSQL + NATS (JetStream topics, core live subject).
    Production,
    /// SQLite + in-process bus and broadcast.
    Embedded,
}

pub struct Harness {
    pub auth: TestAuth,
    pub db: TestDatabase,
    pub events: EventsConfig,
    pub identities: CustomerStandIn,
    pub bus: Arc<dyn EventBus>,
    pub nats: Option<Arc<NatsBus>>,
    pub memory: Option<MemoryBus>,
    pub instances: Vec<RunningService>,
    _customers: ServedStandIn,
}

impl Harness {
    pub async fn start(profile: Profile) -> Self {
        Self::with(profile, 1, Options::default()).await
    }

    pub async fn with(profile: Profile, instances: usize, options: Options) -> Self {
        Self::with_config(profile, instances, options, |_| {}).await
    }

    /// Like [`Harness::with`], with `tweak` adjusting each instance's configuration.
    pub async fn with_config(
        profile: Profile,
        instances: usize,
        options: Options,
        tweak: impl Fn(&mut ordermesh_platform::ServiceConfig),
    ) -> Self {
        let db = match profile {
            Profile::Production => TestDatabase::postgres().await.unwrap(),
            Profile::Embedded => TestDatabase::sqlite().unwrap(),
        };
        let auth = TestAuth::start().await.unwrap();
        let identities = CustomerStandIn::default();
        let customers = identities.serve().await.unwrap();
        let events = EventsConfig::isolated();
        let (bus, nats, memory): (Arc<dyn EventBus>, Option<Arc<NatsBus>>, Option<MemoryBus>) = match profile {
            Profile::Production => {
                let bus = Arc::new(NatsBus::connect(&nats_url(), events.clone()).await.unwrap());
                (bus.clone(), Some(bus), None)
            }
            Profile::Embedded => {
                let bus = MemoryBus::new();
                (Arc::new(bus.clone()), None, Some(bus))
            }
        };
        let mut running = Vec::new();
        for _ in 0..instances {
            let mut config = testing::service_config(notification_svc::SERVICE, db.url(), auth.auth_config()).unwrap();
            config.events = events.clone();
            config.peers.customer = customers.url.clone();
            config.credentials = auth.credentials("notification-svc");
            match profile {
                Profile::Production => config.nats_url = Some(nats_url()),
                Profile::Embedded => config.bus = Some(bus.clone()),
            }
            tweak(&mut config);
            let options = options.clone();
            let service = RunningService::start(config, move |c, l, s| notification_svc::run_with(c, options, l, s))
                .await
                .unwrap();
            running.push(service);
        }
        Self {
            auth,
            db,
            events,
            identities,
            bus,
            nats,
            memory,
            instances: running,
            _customers: customers,
        }
    }

    /// A client of instance `i`.
    pub fn api(&self, i: usize) -> NotificationServiceClient<Channel> {
        NotificationServiceClient::new(self.instances[i].channel())
    }

    /// A client token whose subject is linked to a new customer.
    pub fn client(&self) -> (String, Uuid) {
        let subject = format!("client-{}", Uuid::now_v7().simple());
        let customer = Uuid::now_v7();
        self.identities
            .link(Some(&subject), customer, cpb::CustomerStatus::Active);
        (self.auth.client(&subject), customer)
    }

    pub fn employee(&self, roles: &[Role]) -> String {
        self.auth.employee(&format!("emp-{}", Uuid::now_v7().simple()), roles)
    }

    pub async fn publish(&self, event: &OutgoingEvent) {
        self.bus.publish(event).await.unwrap();
    }

    /// Sends a notification to `customer` as a customer-service employee; returns its id.
    pub async fn send_to(&self, instance: usize, customer: Uuid, title: &str) -> String {
        let token = self.auth.employee("cs-agent", &[Role::CustomerService]);
        let request = pb::SendNotificationRequest {
            recipient: Some(pb::Recipient {
                target: Some(pb::recipient::Target::CustomerId(customer.to_string())),
            }),
            title: title.to_owned(),
            body: format!("{title} body"),
            ..Default::default()
        };
        self.api(instance)
            .send_notification(with_token(request, &token))
            .await
            .unwrap()
            .into_inner()
            .notification
            .unwrap()
            .id
    }

    /// Lists every notification `token` sees (newest first).
    pub async fn list(&self, token: &str) -> Vec<pb::Notification> {
        self.api(0)
            .list_notifications(with_token(
                pb::ListNotificationsRequest {
                    page_size: 200,
                    ..Default::default()
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
            .notifications
    }

    /// Waits until `token` sees at least `n` notifications.
    pub async fn wait_for(&self, token: &str, n: usize) -> Vec<pb::Notification> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let list = self.list(token).await;
            if list.len() >= n {
                return list;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} notifications, have {}: {list:?}",
                list.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn subscribe(&self, instance: usize, token: &str, after_id: &str) -> Streaming<pb::SubscribeResponse> {
        self.api(instance)
            .subscribe(with_token(
                pb::SubscribeRequest {
                    after_id: after_id.to_owned(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// Removes this test's NATS streams.
    pub async fn cleanup(mut self) {
        self.instances.clear();
        if let Some(nats) = &self.nats {
            let _ = nats.delete_streams().await;
        }
    }
}

/// The next notification on `stream` (heartbeats skipped), within 15 s.
pub async fn next_notification(stream: &mut Streaming<pb::SubscribeResponse>) -> pb::Notification {
    let deadline = Duration::from_secs(15);
    loop {
        let item = tokio::time::timeout(deadline, stream.next())
            .await
            .expect("a notification within 15 s")
            .expect("the stream is open")
            .expect("not an error");
        if let Some(pb::subscribe_response::Event::Notification(n)) = item.event {
            return n;
        }
    }
}

/// Asserts that no notification arrives on `stream` within `wait`.
pub async fn assert_quiet(stream: &mut Streaming<pb::SubscribeResponse>, wait: Duration) {
    let outcome = tokio::time::timeout(wait, async {
        loop {
            match stream.next().await {
                Some(Ok(pb::SubscribeResponse {
                    event: Some(pb::subscribe_response::Event::Notification(n)),
                })) => return n,
                Some(Ok(_)) => continue,
                other => panic!("stream ended: {other:?}"),
            }
        }
    })
    .await;
    if let Ok(n) = outcome {
        panic!("unexpected notification {n:?}");
    }
}

/// An event as order-svc publishes it.
pub fn order_event(order_id: Uuid, event_type: &str, message: &impl prost::Message) -> OutgoingEvent {
    OutgoingEvent::new(
        "order-svc",
        "order-events",
        event_type,
        &order_id.to_string(),
        &format!("corr-{order_id}"),
        message,
    )
}
