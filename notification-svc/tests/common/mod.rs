//! Shared harness: notification-svc in-process on 127.0.0.1:0 — with PostgreSQL and real NATS
//! (JetStream topics and the live core subject under prefixes of its own), or with SQLite and
//! an in-process bus — real JWTs, and a stand-in customer-svc that resolves client identities.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use notification_svc::Options;
use ordermesh_platform::auth::Role;
use ordermesh_platform::events::{EventBus, EventsConfig, MemoryBus, NatsBus, OutgoingEvent};
use ordermesh_platform::testing::{self, RunningService, TestAuth, TestDatabase, with_token};
use ordermesh_proto::customer as cpb;
use ordermesh_proto::customer::customer_service_server::{CustomerService, CustomerServiceServer};
use ordermesh_proto::notification as pb;
use ordermesh_proto::notification::notification_service_client::NotificationServiceClient;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// customer-svc stand-in: resolves client subjects linked with [`Harness::client`].
#[derive(Default, Clone)]
pub struct Identities(Arc<Mutex<HashMap<String, Uuid>>>);

fn no<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not part of the stand-in"))
}

#[tonic::async_trait]
impl CustomerService for Identities {
    async fn create_customer(
        &self,
        _: Request<cpb::CreateCustomerRequest>,
    ) -> Result<Response<cpb::CreateCustomerResponse>, Status> {
        no()
    }
    async fn get_customer(
        &self,
        _: Request<cpb::GetCustomerRequest>,
    ) -> Result<Response<cpb::GetCustomerResponse>, Status> {
        no()
    }
    async fn get_customer_by_identity(
        &self,
        request: Request<cpb::GetCustomerByIdentityRequest>,
    ) -> Result<Response<cpb::GetCustomerByIdentityResponse>, Status> {
        if request.metadata().get("authorization").is_none() {
            return Err(Status::unauthenticated("the caller's token was not forwarded"));
        }
        let subject = request.into_inner().subject;
        match self.0.lock().unwrap().get(&subject) {
            Some(id) => Ok(Response::new(cpb::GetCustomerByIdentityResponse {
                customer: Some(cpb::Customer {
                    id: id.to_string(),
                    ..Default::default()
                }),
            })),
            None => Err(Status::not_found("no customer is linked to this identity")),
        }
    }
    async fn update_customer(
        &self,
        _: Request<cpb::UpdateCustomerRequest>,
    ) -> Result<Response<cpb::UpdateCustomerResponse>, Status> {
        no()
    }
    async fn list_customers(
        &self,
        _: Request<cpb::ListCustomersRequest>,
    ) -> Result<Response<cpb::ListCustomersResponse>, Status> {
        no()
    }
    async fn get_preferences(
        &self,
        _: Request<cpb::GetPreferencesRequest>,
    ) -> Result<Response<cpb::GetPreferencesResponse>, Status> {
        no()
    }
    async fn update_preferences(
        &self,
        _: Request<cpb::UpdatePreferencesRequest>,
    ) -> Result<Response<cpb::UpdatePreferencesResponse>, Status> {
        no()
    }
    async fn record_consent(
        &self,
        _: Request<cpb::RecordConsentRequest>,
    ) -> Result<Response<cpb::RecordConsentResponse>, Status> {
        no()
    }
    async fn list_consents(
        &self,
        _: Request<cpb::ListConsentsRequest>,
    ) -> Result<Response<cpb::ListConsentsResponse>, Status> {
        no()
    }
    async fn export_customer_data(
        &self,
        _: Request<cpb::ExportCustomerDataRequest>,
    ) -> Result<Response<cpb::ExportCustomerDataResponse>, Status> {
        no()
    }
    async fn erase_customer(
        &self,
        _: Request<cpb::EraseCustomerRequest>,
    ) -> Result<Response<cpb::EraseCustomerResponse>, Status> {
        no()
    }
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
    pub identities: Identities,
    pub bus: Arc<dyn EventBus>,
    pub nats: Option<Arc<NatsBus>>,
    pub memory: Option<MemoryBus>,
    pub instances: Vec<RunningService>,
    customers: tokio::task::JoinHandle<()>,
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
        let identities = Identities::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let customers_url = format!("http://{}", listener.local_addr().unwrap());
        let fake = identities.clone();
        let customers = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(CustomerServiceServer::new(fake))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
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
            config.peers.customer = customers_url.clone();
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
            customers,
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
        self.identities.0.lock().unwrap().insert(subject.clone(), customer);
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
        self.customers.abort();
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
