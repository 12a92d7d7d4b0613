//! A whole ordermesh back end in one test process: product-, customer-, order- and payment-svc
//! on `127.0.0.1:0`, each in its own schema of one fresh PostgreSQL database, talking over real
//! gRPC and real NATS JetStream (streams isolated per test by prefix). Helpers create catalogue
//! data and customers and wait for the asynchronous saga.

pub mod backing;
pub mod gateway;
pub mod proxy;
pub mod scan;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ordermesh_platform::auth::Role;
use ordermesh_platform::events::EventsConfig;
use ordermesh_platform::launch::Launcher;
use ordermesh_platform::testing::{TestAuth, TestDatabase, service_config, with_token};
use ordermesh_platform::{ServiceConfig, Shutdown};
use ordermesh_proto::common::Money;
use ordermesh_proto::customer::customer_service_client::CustomerServiceClient;
use ordermesh_proto::customer::{CreateCustomerRequest, IdentityLink};
use ordermesh_proto::order::order_service_client::OrderServiceClient;
use ordermesh_proto::order::{
    GetOrderRequest, Order, OrderStatus, PlaceOrderItem, PlaceOrderRequest, PlaceOrderResponse,
};
use ordermesh_proto::payment::payment_service_client::PaymentServiceClient;
use ordermesh_proto::payment::{ListPaymentsRequest, Payment};
use ordermesh_proto::product::product_service_client::ProductServiceClient;
use ordermesh_proto::product::{
    AdjustStockRequest, CreateCategoryRequest, CreateProductRequest, GetStockLevelRequest, Product, StockLevel,
};
use payment_svc::gateway::{
    ChargeRequest, FollowUpRequest, GatewayError, GatewayOutcome, PaymentGateway, SandboxGateway,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub const NATS_URL: &str = "nats://127.0.0.1:4222";

/// Where the services of a test listen: a free port on loopback.
const LOCALHOST_ANY_PORT: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// A gateway that counts what reaches it, in front of the sandbox (or any other gateway).
pub struct CountingGateway {
    inner: Arc<dyn PaymentGateway>,
    approved_charges: AtomicUsize,
    charge_calls: AtomicUsize,
    refunds: AtomicUsize,
    keys: std::sync::Mutex<HashMap<String, usize>>,
}

impl CountingGateway {
    pub fn new(inner: Arc<dyn PaymentGateway>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            approved_charges: AtomicUsize::new(0),
            charge_calls: AtomicUsize::new(0),
            refunds: AtomicUsize::new(0),
            keys: Default::default(),
        })
    }

    pub fn sandbox() -> Arc<Self> {
        Self::new(Arc::new(SandboxGateway::new()))
    }

    /// Distinct idempotency keys whose charge the gateway approved: real charges.
    pub fn distinct_approved_charges(&self) -> usize {
        self.keys.lock().unwrap().len()
    }

    pub fn charge_calls(&self) -> usize {
        self.charge_calls.load(Ordering::SeqCst)
    }

    pub fn approved_charge_answers(&self) -> usize {
        self.approved_charges.load(Ordering::SeqCst)
    }

    pub fn refunds(&self) -> usize {
        self.refunds.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl PaymentGateway for CountingGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<GatewayOutcome, GatewayError> {
        self.charge_calls.fetch_add(1, Ordering::SeqCst);
        let outcome = self.inner.charge(request).await;
        if let Ok(GatewayOutcome::Approved { .. }) = &outcome {
            self.approved_charges.fetch_add(1, Ordering::SeqCst);
            *self
                .keys
                .lock()
                .unwrap()
                .entry(request.idempotency_key.clone())
                .or_default() += 1;
        }
        outcome
    }

    async fn capture(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        self.inner.capture(request).await
    }

    async fn void(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        self.inner.void(request).await
    }

    async fn refund(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        let outcome = self.inner.refund(request).await;
        if outcome.is_ok() {
            self.refunds.fetch_add(1, Ordering::SeqCst);
        }
        outcome
    }
}

/// The back end of one test.
pub struct Platform {
    pub auth: TestAuth,
    _database: TestDatabase,
    database_url: String,
    /// The embedded profile: SQLite files and this platform's own in-process bus.
    embedded: Option<(tempfile::TempDir, Arc<dyn ordermesh_platform::events::EventBus>)>,
    pub events: EventsConfig,
    pub gateway: Arc<dyn PaymentGateway>,
    /// The services, started, stopped and restarted by the platform's one launcher.
    launcher: Launcher,
    /// BFFs started by [`Platform::start_bff`], stopped with the platform.
    bffs: Vec<Shutdown>,
    pub admin: String,
}

impl Platform {
    /// The PostgreSQL database of the services (also on the embedded profile, where only the
    /// test's own bookkeeping uses it).
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The directory of the SQLite files, on the embedded profile.
    pub fn sqlite_dir(&self) -> Option<&std::path::Path> {
        self.embedded.as_ref().map(|(dir, _)| dir.path())
    }

    /// Starts the four services with `gateway` behind payment-svc, on the production profile
    /// (PostgreSQL, NATS JetStream).
    pub async fn start(gateway: Arc<dyn PaymentGateway>) -> anyhow::Result<Self> {
        Self::start_profile(gateway, false).await
    }

    /// The same on the embedded profile: one SQLite file per service and an in-process bus
    /// (this platform's own, so parallel tests do not share it).
    pub async fn start_embedded(gateway: Arc<dyn PaymentGateway>) -> anyhow::Result<Self> {
        Self::start_profile(gateway, true).await
    }

    async fn start_profile(gateway: Arc<dyn PaymentGateway>, embedded: bool) -> anyhow::Result<Self> {
        Self::start_tuned(gateway, embedded, |_| {}).await
    }

    /// [`Platform::start`] (or, with `embedded`, [`Platform::start_embedded`]) with `tune`
    /// adjusting the services' event settings, e.g. a short retry policy.
    pub async fn start_tuned(
        gateway: Arc<dyn PaymentGateway>,
        embedded: bool,
        tune: impl FnOnce(&mut EventsConfig),
    ) -> anyhow::Result<Self> {
        let mut events = EventsConfig::isolated();
        tune(&mut events);
        // Every call the services and BFFs make in the end-to-end suite is held to the declared
        // call graph when the platform is dropped.
        ordermesh_platform::mesh::observe::start_recording();
        let auth = TestAuth::start().await?;
        let database = TestDatabase::postgres().await?;
        let embedded = if embedded {
            let bus: Arc<dyn ordermesh_platform::events::EventBus> =
                Arc::new(ordermesh_platform::events::MemoryBus::new());
            Some((tempfile::tempdir()?, bus))
        } else {
            None
        };
        let admin = auth.employee("admin-1", &[Role::Admin]);
        let mut platform = Self {
            database_url: database.url().to_owned(),
            _database: database,
            embedded,
            events,
            gateway,
            launcher: Launcher::new(&Shutdown::new()),
            bffs: Vec::new(),
            admin,
            auth,
        };
        // Bound first, in this order, so that each service knows where its peers are.
        let mut listeners = HashMap::new();
        for name in ["product", "customer", "payment", "order", "audit", "notification"] {
            listeners.insert(name, platform.launcher.bind(name, LOCALHOST_ANY_PORT).await?);
        }
        for name in ["audit", "product", "customer", "payment", "order", "notification"] {
            let listener = listeners.remove(name).expect("bound above");
            platform.launch(name, listener).await?;
        }
        Ok(platform)
    }

    /// A BFF configuration in front of this platform: the test issuers, the six running
    /// services, the test Redis under a fresh prefix, and the BFF's own service identity.
    pub fn bff_config(&self, surface: bff::Surface) -> bff::BffConfig {
        let peers = ordermesh_platform::PeerUrls {
            product: self.url("product"),
            customer: self.url("customer"),
            order: self.url("order"),
            payment: self.url("payment"),
            audit: self.url("audit"),
            notification: self.url("notification"),
        };
        let mut config = bff::BffConfig::new(self.auth.auth_config(), peers);
        config.surface = surface;
        config.redis_url = Some(ordermesh_platform::testing::redis_url());
        config.cache_prefix = ordermesh_platform::testing::unique_prefix("bff");
        config.credentials = self.auth.credentials("bff");
        config
    }

    /// Starts a BFF serving `surface` in front of the services; returns its base URL.
    pub async fn start_bff(&mut self, surface: bff::Surface) -> anyhow::Result<String> {
        let config = self.bff_config(surface);
        self.start_bff_with(config).await
    }

    /// Starts a BFF with `config` (see [`Platform::bff_config`]); returns its base URL once
    /// `/healthz` answers.
    pub async fn start_bff_with(&mut self, config: bff::BffConfig) -> anyhow::Result<String> {
        ordermesh_platform::install_crypto_provider();
        let listener = TcpListener::bind(LOCALHOST_ANY_PORT).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shutdown = Shutdown::new();
        let handle = tokio::spawn(bff::run(config, listener, shutdown.clone()));
        self.bffs.push(shutdown);
        let http = reqwest::Client::new();
        for _ in 0..500 {
            anyhow::ensure!(!handle.is_finished(), "BFF exited: {:?}", handle.await);
            if http
                .get(format!("{url}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(url);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("BFF not ready after 10 s")
    }

    /// The URL of service `name` (`http://127.0.0.1:<port>`).
    pub fn url(&self, name: &str) -> String {
        self.launcher.url(name)
    }

    fn config(&self, name: &'static str) -> anyhow::Result<ServiceConfig> {
        let mut config = match &self.embedded {
            Some((dir, bus)) => {
                let url = format!("sqlite://{}/{name}.db", dir.path().display());
                let mut config = service_config(name, &url, self.auth.auth_config())?;
                config.bus = Some(bus.clone());
                config
            }
            None => {
                let mut config = service_config(name, &self.database_url, self.auth.auth_config())?;
                config.nats_url = Some(NATS_URL.to_owned());
                config
            }
        };
        config.events = self.events.clone();
        // Two platforms run at once in a test binary: their pools together stay well below the
        // server's 100 connections, with more for the services the saga keeps busy.
        config.database_max_connections = match name {
            "order" => 10,
            "product" | "payment" => 6,
            _ => 4,
        };
        config.credentials = self.auth.credentials(&format!("{name}-svc"));
        config.peers.product = self.url("product");
        config.peers.customer = self.url("customer");
        config.peers.payment = self.url("payment");
        config.peers.order = self.url("order");
        config.peers.audit = self.url("audit");
        config.peers.notification = self.url("notification");
        Ok(config)
    }

    async fn launch(&mut self, name: &'static str, listener: TcpListener) -> anyhow::Result<()> {
        let config = self.config(name)?;
        let gateway = self.gateway.clone();
        self.launcher.spawn(name, listener, move |listener, stop| {
            let listen = listener.into();
            let run: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>> = match name {
                "payment" => Box::pin(payment_svc::run_with_gateway(config, listen, stop, gateway)),
                "product" => Box::pin(product_svc::run(config, listen, stop)),
                "customer" => Box::pin(customer_svc::run(config, listen, stop)),
                "order" => Box::pin(order_svc::run(config, listen, stop)),
                "audit" => Box::pin(audit_svc::run(config, listen, stop)),
                "notification" => Box::pin(notification_svc::run(config, listen, stop)),
                other => Box::pin(async move { anyhow::bail!("unknown service {other}") }),
            };
            run
        });
        self.launcher.wait_ready(name).await
    }

    /// Stops a service gracefully (its address stays reserved for [`Platform::restart`]).
    pub async fn stop(&mut self, name: &str) -> anyhow::Result<()> {
        self.launcher.stop(name).await
    }

    /// Starts a stopped service again on its old address.
    pub async fn restart(&mut self, name: &'static str) -> anyhow::Result<()> {
        let listener = self.launcher.rebind(name).await?;
        self.launch(name, listener).await
    }

    pub fn channel(&self, name: &str) -> Channel {
        Channel::from_shared(self.url(name)).expect("url").connect_lazy()
    }

    pub fn orders(&self) -> OrderServiceClient<Channel> {
        OrderServiceClient::new(self.channel("order"))
    }

    pub fn products(&self) -> ProductServiceClient<Channel> {
        ProductServiceClient::new(self.channel("product"))
    }

    pub fn customers(&self) -> CustomerServiceClient<Channel> {
        CustomerServiceClient::new(self.channel("customer"))
    }

    pub fn audit(&self) -> ordermesh_proto::audit::audit_service_client::AuditServiceClient<Channel> {
        ordermesh_proto::audit::audit_service_client::AuditServiceClient::new(self.channel("audit"))
    }

    pub fn notifications(
        &self,
    ) -> ordermesh_proto::notification::notification_service_client::NotificationServiceClient<Channel> {
        ordermesh_proto::notification::notification_service_client::NotificationServiceClient::new(
            self.channel("notification"),
        )
    }

    pub fn payments(&self) -> PaymentServiceClient<Channel> {
        PaymentServiceClient::new(self.channel("payment"))
    }

    /// An active product priced `price_minor` EUR cents with `stock` units on hand.
    pub async fn product(&self, price_minor: i64, stock: i64) -> anyhow::Result<Product> {
        let sku = format!("SKU-{}", uuid::Uuid::now_v7().simple()).to_uppercase();
        let category = self
            .products()
            .create_category(with_token(
                CreateCategoryRequest {
                    name: format!("Kitchen {sku}"),
                    ..Default::default()
                },
                &self.admin,
            ))
            .await?
            .into_inner()
            .category
            .expect("category");
        let product = self
            .products()
            .create_product(with_token(
                CreateProductRequest {
                    product: Some(Product {
                        sku,
                        name: "Espresso machine".into(),
                        description: "A test product".into(),
                        category_id: category.id,
                        price: Some(Money {
                            amount_minor: price_minor,
                            currency_code: "EUR".into(),
                        }),
                        active: true,
                        ..Default::default()
                    }),
                },
                &self.admin,
            ))
            .await?
            .into_inner()
            .product
            .expect("product");
        if stock > 0 {
            self.products()
                .adjust_stock(with_token(
                    AdjustStockRequest {
                        product_id: product.id.clone(),
                        delta: stock,
                        reason: "initial stock".into(),
                        idempotency_key: String::new(),
                    },
                    &self.admin,
                ))
                .await?;
        }
        Ok(product)
    }

    pub async fn stock(&self, product_id: &str) -> anyhow::Result<StockLevel> {
        Ok(self
            .products()
            .get_stock_level(with_token(
                GetStockLevelRequest {
                    product_id: product_id.into(),
                },
                &self.admin,
            ))
            .await?
            .into_inner()
            .stock_level
            .expect("stock level"))
    }

    /// A client identity with its customer profile: `(client token, customer id)`.
    pub async fn client(&self, subject: &str) -> anyhow::Result<(String, String)> {
        let token = self.auth.client(subject);
        let customer = self
            .customers()
            .create_customer(with_token(
                CreateCustomerRequest {
                    display_name: "Test Client".into(),
                    email: format!("{subject}@example.test"),
                    identity: Some(IdentityLink {
                        issuer: self.auth.issuer(ordermesh_platform::auth::IssuerKind::Client),
                        subject: subject.into(),
                    }),
                    ..Default::default()
                },
                &token,
            ))
            .await?
            .into_inner()
            .customer
            .expect("customer");
        Ok((token, customer.id))
    }

    pub async fn place(
        &self,
        token: &str,
        customer_id: &str,
        lines: &[(&str, i32)],
        payment_method: &str,
        key: &str,
    ) -> Result<PlaceOrderResponse, tonic::Status> {
        let request = PlaceOrderRequest {
            customer_id: customer_id.into(),
            items: lines
                .iter()
                .map(|(id, q)| PlaceOrderItem {
                    product_id: (*id).into(),
                    quantity: *q,
                })
                .collect(),
            shipping_address: None,
            payment_method_token: payment_method.into(),
            idempotency_key: key.into(),
        };
        Ok(self
            .orders()
            .place_order(with_token(request, token))
            .await?
            .into_inner())
    }

    pub async fn order(&self, order_id: &str) -> anyhow::Result<Order> {
        Ok(self
            .orders()
            .get_order(with_token(
                GetOrderRequest {
                    order_id: order_id.into(),
                },
                &self.admin,
            ))
            .await?
            .into_inner()
            .order
            .expect("order"))
    }

    /// Polls until the order reaches one of `statuses`, or fails after `timeout`.
    pub async fn wait_for(&self, order_id: &str, statuses: &[OrderStatus], timeout: Duration) -> anyhow::Result<Order> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let order = self.order(order_id).await?;
            if statuses.iter().any(|s| *s as i32 == order.status) {
                return Ok(order);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "order {order_id} still {:?} after {timeout:?}",
                OrderStatus::try_from(order.status)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn payments_of(&self, order_id: &str) -> anyhow::Result<Vec<Payment>> {
        Ok(self
            .payments()
            .list_payments(with_token(
                ListPaymentsRequest {
                    order_id: order_id.into(),
                    ..Default::default()
                },
                &self.admin,
            ))
            .await?
            .into_inner()
            .payments)
    }
}

/// A fault of notification-svc's database: a trigger refusing inserts into `notifications`, as a
/// broken migration or a full disk would; its consumers then retry and dead-letter the events.
pub enum Fault {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Fault {
    pub async fn open(platform: &Platform) -> Fault {
        match platform.sqlite_dir() {
            Some(dir) => Fault::Sqlite(
                sqlx::SqlitePool::connect(&format!("sqlite://{}/notification.db", dir.display()))
                    .await
                    .unwrap(),
            ),
            None => Fault::Postgres(sqlx::PgPool::connect(platform.database_url()).await.unwrap()),
        }
    }

    pub async fn inject(&self) {
        match self {
            Fault::Postgres(pool) => {
                sqlx::raw_sql(
                    "CREATE FUNCTION notification.refuse() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'injected fault: notifications refused'; END $$;
                     CREATE TRIGGER refuse BEFORE INSERT ON notification.notifications \
                     FOR EACH ROW EXECUTE FUNCTION notification.refuse();",
                )
                .execute(pool)
                .await
                .unwrap();
            }
            Fault::Sqlite(pool) => {
                sqlx::raw_sql(
                    "CREATE TRIGGER refuse BEFORE INSERT ON notifications \
                     BEGIN SELECT RAISE(ABORT, 'injected fault: notifications refused'); END;",
                )
                .execute(pool)
                .await
                .unwrap();
            }
        }
    }

    pub async fn fix(&self) {
        match self {
            Fault::Postgres(pool) => sqlx::raw_sql("DROP TRIGGER refuse ON notification.notifications")
                .execute(pool)
                .await
                .map(drop),
            Fault::Sqlite(pool) => sqlx::raw_sql("DROP TRIGGER refuse").execute(pool).await.map(drop),
        }
        .unwrap();
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        // Dropping the launcher stops the services.
        for bff in &self.bffs {
            bff.trigger();
        }
        // Remove this test's streams from the shared NATS server.
        let events = self.events.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(bus) = ordermesh_platform::events::NatsBus::connect_only(NATS_URL, events).await {
                    let _ = bus.delete_streams().await;
                }
            });
        })
        .join();
        if !std::thread::panicking() {
            assert_calls_declared();
        }
    }
}

/// Fails unless every call recorded so far in this process is declared in the call graph
/// (`platform/src/mesh/graph.rs`, which `istio/` is rendered from).
pub fn assert_calls_declared() {
    let undeclared = ordermesh_platform::mesh::observe::undeclared();
    assert!(
        undeclared.is_empty(),
        "calls made that the call graph does not declare (add them to platform/src/mesh/graph.rs \
         and run `ordermesh mesh render`):\n  {}",
        undeclared
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

/// The statuses an order ends the saga in (before fulfilment).
pub const SETTLED: [OrderStatus; 3] = [OrderStatus::Confirmed, OrderStatus::Rejected, OrderStatus::Cancelled];

/// Names of an order's history, oldest first.
pub fn history(order: &Order) -> Vec<OrderStatus> {
    order
        .history
        .iter()
        .map(|h| OrderStatus::try_from(h.to_status).unwrap_or(OrderStatus::Unspecified))
        .collect()
}

/// A payment provider on a local port, speaking the HTTP gateway adapter's protocol. It
/// performs a charge the first time it sees an idempotency key (even when it then answers with
/// an error, as real providers can), so only same-key retries avoid double charges.
pub struct FakeProvider {
    state: Arc<std::sync::Mutex<ProviderState>>,
    pub addr: SocketAddr,
    server: JoinHandle<()>,
}

#[derive(Default)]
struct ProviderState {
    /// Status codes to answer in turn before answering normally.
    failures: Vec<u16>,
    requests: usize,
    charges: HashMap<String, serde_json::Value>,
}

impl FakeProvider {
    /// Serves on `listener`, failing the first requests with `failures`.
    pub async fn serve(listener: TcpListener, failures: Vec<u16>) -> Self {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::IntoResponse;
        type Shared = Arc<std::sync::Mutex<ProviderState>>;
        async fn charge(State(state): State<Shared>, headers: HeaderMap) -> axum::response::Response {
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let mut state = state.lock().unwrap();
            state.requests += 1;
            let next = state.charges.len() + 1;
            let record = state
                .charges
                .entry(key)
                .or_insert_with(|| serde_json::json!({"id": format!("ch_{next}"), "status": "approved"}))
                .clone();
            if !state.failures.is_empty() {
                let code = state.failures.remove(0);
                return StatusCode::from_u16(code).unwrap().into_response();
            }
            (StatusCode::OK, axum::Json(record)).into_response()
        }
        let state: Shared = Arc::new(std::sync::Mutex::new(ProviderState {
            failures,
            ..Default::default()
        }));
        let addr = listener.local_addr().expect("bound");
        let app = axum::Router::new()
            .route("/v1/charges", axum::routing::post(charge))
            .route("/v1/refunds", axum::routing::post(charge))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { state, addr, server }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Charges performed (distinct idempotency keys).
    pub fn charges(&self) -> usize {
        self.state.lock().unwrap().charges.len()
    }

    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}
