//! Shared harness of the gRPC and consumer tests: payment-svc in-process on 127.0.0.1:0 with a
//! fresh PostgreSQL database, real JWTs, and real NATS JetStream under prefixes of its own.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use ordermesh_platform::auth::Role;
use ordermesh_platform::events::{EventsConfig, NatsBus};
use ordermesh_platform::testing::{self, RunningService, TestAuth, TestDatabase, with_token};
use ordermesh_proto::common::Money;
use ordermesh_proto::payment as pb;
use ordermesh_proto::payment::payment_service_client::PaymentServiceClient;
use payment_svc::gateway::{
    ChargeRequest, FollowUpRequest, GatewayError, GatewayOutcome, PaymentGateway, SandboxGateway,
};
use tonic::transport::Channel;
use uuid::Uuid;

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// Counts the calls that reach the wrapped gateway; the first `fail_first` charges fail
/// transiently without reaching it.
pub struct CountingGateway {
    inner: Arc<dyn PaymentGateway>,
    pub fail_first: AtomicUsize,
    /// The next `lose_answers` charges reach the gateway (which performs them) but their answer
    /// is lost: a transient error, as when the process or the network fails after the call.
    pub lose_answers: AtomicUsize,
    /// Keys of the charges that reached the gateway.
    pub charge_keys: std::sync::Mutex<Vec<String>>,
    /// Like `fail_first`, for refunds.
    pub fail_refunds: AtomicUsize,
    pub charges: AtomicUsize,
    pub captures: AtomicUsize,
    pub refunds: AtomicUsize,
    pub voids: AtomicUsize,
}

impl CountingGateway {
    pub fn new(inner: Arc<dyn PaymentGateway>) -> Self {
        Self {
            inner,
            fail_first: AtomicUsize::new(0),
            fail_refunds: AtomicUsize::new(0),
            lose_answers: AtomicUsize::new(0),
            charge_keys: std::sync::Mutex::new(Vec::new()),
            charges: AtomicUsize::new(0),
            captures: AtomicUsize::new(0),
            refunds: AtomicUsize::new(0),
            voids: AtomicUsize::new(0),
        }
    }

    pub fn sandbox() -> Self {
        Self::new(Arc::new(SandboxGateway::new()))
    }

    pub fn count(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl PaymentGateway for CountingGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<GatewayOutcome, GatewayError> {
        if self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(GatewayError::Unavailable("injected outage".into()));
        }
        self.charges.fetch_add(1, Ordering::SeqCst);
        self.charge_keys.lock().unwrap().push(request.idempotency_key.clone());
        let outcome = self.inner.charge(request).await;
        if self
            .lose_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(GatewayError::Unavailable("answer lost".into()));
        }
        outcome
    }
    async fn capture(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        self.captures.fetch_add(1, Ordering::SeqCst);
        self.inner.capture(request).await
    }
    async fn refund(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        if self
            .fail_refunds
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(GatewayError::Unavailable("injected outage".into()));
        }
        self.refunds.fetch_add(1, Ordering::SeqCst);
        self.inner.refund(request).await
    }
    async fn void(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        self.voids.fetch_add(1, Ordering::SeqCst);
        self.inner.void(request).await
    }
}

pub struct Harness {
    pub auth: TestAuth,
    pub client: PaymentServiceClient<Channel>,
    pub gateway: Arc<CountingGateway>,
    pub bus: Arc<NatsBus>,
    pub events: EventsConfig,
    pub db: TestDatabase,
    service: Option<RunningService>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::with_gateway(Arc::new(CountingGateway::sandbox())).await
    }

    pub async fn with_gateway(gateway: Arc<CountingGateway>) -> Self {
        let db = TestDatabase::postgres().await.unwrap();
        let auth = TestAuth::start().await.unwrap();
        let mut config = testing::service_config(payment_svc::SERVICE, db.url(), auth.auth_config()).unwrap();
        let events = EventsConfig::isolated();
        config.events = events.clone();
        config.nats_url = Some(nats_url());
        let bus = Arc::new(NatsBus::connect(&nats_url(), events.clone()).await.unwrap());
        config.bus = Some(bus.clone());
        let service_gateway: Arc<dyn PaymentGateway> = gateway.clone();
        let service = RunningService::start(config, move |c, l, s| {
            payment_svc::run_with_gateway(c, l, s, service_gateway)
        })
        .await
        .unwrap();
        let client = PaymentServiceClient::new(service.channel());
        Self {
            auth,
            client,
            gateway,
            bus,
            events,
            db,
            service: Some(service),
        }
    }

    pub fn order_svc(&self) -> String {
        self.auth.service("order-svc")
    }

    pub fn admin(&self) -> String {
        self.auth.employee("admin-1", &[Role::Admin])
    }

    pub fn client(&self) -> PaymentServiceClient<Channel> {
        self.client.clone()
    }

    pub async fn authorize(&self, req: pb::AuthorizePaymentRequest, token: &str) -> Result<pb::Payment, tonic::Status> {
        Ok(self
            .client()
            .authorize_payment(with_token(req, token))
            .await?
            .into_inner()
            .payment
            .unwrap())
    }

    pub async fn get(&self, id: &str) -> pb::Payment {
        self.client()
            .get_payment(with_token(
                pb::GetPaymentRequest { payment_id: id.into() },
                &self.order_svc(),
            ))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap()
    }

    pub async fn refund(
        &self,
        payment_id: &str,
        amount: Option<i64>,
        key: &str,
        token: &str,
    ) -> Result<pb::RefundPaymentResponse, tonic::Status> {
        let req = pb::RefundPaymentRequest {
            payment_id: payment_id.into(),
            amount: amount.map(eur),
            reason: "customer returned the goods".into(),
            idempotency_key: key.into(),
        };
        Ok(self.client().refund_payment(with_token(req, token)).await?.into_inner())
    }

    /// `(event type, correlation id)` of the outbox rows, oldest first.
    pub async fn outbox(&self) -> Vec<(String, String)> {
        let pool = sqlx::PgPool::connect(self.db.url()).await.unwrap();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT event_type, correlation_id FROM payment.event_outbox WHERE topic = 'payment-events' ORDER BY seq",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows
    }

    /// Whether payment-svc's consumer of `order-events` has acknowledged every message on the
    /// topic so far: the broker's view, whether or not the handler wrote anything (an event it
    /// ignores leaves no inbox row).
    pub async fn order_events_settled(&self) -> bool {
        let config = self.bus.config();
        let Ok(mut stream) = self
            .bus
            .jetstream()
            .get_stream(config.stream_name("order-events"))
            .await
        else {
            return false;
        };
        let Ok(last) = stream.info().await.map(|info| info.state.last_sequence) else {
            return false;
        };
        let durable = EventsConfig::durable_name("payment-svc", "order-events");
        match stream.consumer_info(durable).await {
            Ok(info) => info.ack_floor.stream_sequence >= last && info.num_ack_pending == 0,
            Err(_) => false,
        }
    }

    /// Events of `order-events` processed by payment-svc with an effect (its inbox rows).
    pub async fn processed_order_events(&self) -> i64 {
        let pool = sqlx::PgPool::connect(self.db.url()).await.unwrap();
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM payment.event_inbox WHERE consumer = 'payment-svc/order-events'")
                .fetch_one(&pool)
                .await
                .unwrap();
        pool.close().await;
        n
    }

    /// Event types in the outbox, oldest first.
    pub async fn outbox_types(&self) -> Vec<String> {
        let pool = sqlx::PgPool::connect(self.db.url()).await.unwrap();
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT event_type FROM payment.event_outbox WHERE topic = 'payment-events' ORDER BY seq")
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        rows.into_iter()
            .map(|(t,)| t.rsplit('.').next().unwrap().to_owned())
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.service.take());
        let events = self.events.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(bus) = NatsBus::connect_only(&nats_url(), events).await {
                    let _ = bus.delete_streams().await;
                }
            });
        })
        .join();
    }
}

pub fn eur(amount_minor: i64) -> Money {
    Money {
        amount_minor,
        currency_code: "EUR".into(),
    }
}

pub fn charge(order_id: Uuid, token: &str, key: &str, capture: bool) -> pb::AuthorizePaymentRequest {
    pb::AuthorizePaymentRequest {
        order_id: order_id.to_string(),
        customer_id: Uuid::now_v7().to_string(),
        amount: Some(eur(4200)),
        payment_method_token: token.into(),
        idempotency_key: key.into(),
        capture,
    }
}

pub fn status(p: &pb::Payment) -> pb::PaymentStatus {
    pb::PaymentStatus::try_from(p.status).unwrap()
}
