//! Helpers for tests that run against the real servers: a fresh PostgreSQL database or SQLite
//! file per test, removed when the handle is dropped. Tests run in parallel, so nothing here is
//! shared between them.

pub mod servers;

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

/// Admin connection used to create and drop per-test databases. `TEST_DATABASE_URL` overrides it.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test.
pub struct TestDatabase {
    url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A new, empty PostgreSQL database.
    pub async fn postgres() -> anyhow::Result<Self> {
        let name = format!("om_test_{}", uuid::Uuid::now_v7().simple());
        let admin = PgConnectOptions::from_str(&admin_url())?;
        let mut conn = admin.connect().await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let url = admin.database(&name).to_url_lossy().to_string();
        Ok(Self {
            url,
            pg_name: Some(name),
            _dir: None,
        })
    }

    /// A new SQLite file in a temporary directory.
    pub fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}/test.db", dir.path().display());
        Ok(Self {
            url,
            pg_name: None,
            _dir: Some(dir),
        })
    }

    /// Both backends, for suites that must pass on each.
    pub async fn both() -> anyhow::Result<[Self; 2]> {
        Ok([Self::postgres().await?, Self::sqlite()?])
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_postgres(&self) -> bool {
        self.pg_name.is_some()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        // Drop may run inside or outside a runtime; a thread with its own runtime works in both.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                let Ok(admin) = PgConnectOptions::from_str(&admin_url()) else {
                    return;
                };
                if let Ok(mut conn) = admin.connect().await {
                    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// The audience of every token minted by [`TestAuth`].
pub const TEST_AUDIENCE: &str = "ordermesh";

/// A development issuer whose JWKS is served on a local port for the duration of a test, and
/// the tokens it mints. Tokens of the three populations are accepted by a service whose
/// `config.auth` is [`TestAuth::auth_config`].
pub struct TestAuth {
    issuer: std::sync::Arc<crate::auth::DevIssuer>,
    server: tokio::task::JoinHandle<()>,
}

impl TestAuth {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let issuer = std::sync::Arc::new(crate::auth::DevIssuer::generate(format!(
            "http://{}",
            listener.local_addr()?
        ))?);
        let router = issuer.router();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { issuer, server })
    }

    pub fn auth_config(&self) -> crate::auth::AuthConfig {
        self.issuer.auth_config(TEST_AUDIENCE)
    }

    pub fn issuer(&self, kind: crate::auth::IssuerKind) -> String {
        self.issuer.issuer(kind)
    }

    /// Credentials with which service `name` calls other services.
    pub fn credentials(&self, name: &str) -> crate::auth::ServiceCredentials {
        crate::auth::ServiceCredentials::dev(self.issuer.clone(), name, TEST_AUDIENCE)
    }

    fn mint(&self, kind: crate::auth::IssuerKind, subject: &str, roles: &[crate::auth::Role]) -> String {
        self.issuer
            .mint(&crate::auth::DevTokenRequest {
                kind,
                subject: subject.to_owned(),
                roles: roles.to_vec(),
                audience: TEST_AUDIENCE.to_owned(),
                ttl: std::time::Duration::from_secs(600),
            })
            .expect("mint a test token")
    }

    /// An employee token with `roles`.
    pub fn employee(&self, subject: &str, roles: &[crate::auth::Role]) -> String {
        self.mint(crate::auth::IssuerKind::Employee, subject, roles)
    }

    /// A client (external user) token for `subject`; its issuer is `issuer(IssuerKind::Client)`.
    pub fn client(&self, subject: &str) -> String {
        self.mint(crate::auth::IssuerKind::Client, subject, &[])
    }

    /// A workload token of another service.
    pub fn service(&self, name: &str) -> String {
        self.mint(crate::auth::IssuerKind::Service, name, &[])
    }
}

impl Drop for TestAuth {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A service configuration for tests: port 0, the given database, the test issuers, no Redis.
pub fn service_config(
    service: &'static str,
    database_url: &str,
    auth: crate::auth::AuthConfig,
) -> anyhow::Result<crate::ServiceConfig> {
    let env = crate::Env::from_pairs([("DATABASE_URL", database_url), ("GRPC_ADDR", "127.0.0.1:0")]);
    let mut config = crate::ServiceConfig::from_env(&env, service, 0)?;
    config.auth = auth;
    Ok(config)
}

/// The Redis of the test environment (`TEST_REDIS_URL`, default `redis://127.0.0.1:6379`).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test uses.
pub fn unique_prefix(name: &str) -> String {
    format!("test:{name}:{}:", uuid::Uuid::now_v7().simple())
}

/// A service started in-process on `127.0.0.1:0`; stopped when dropped.
pub struct RunningService {
    pub addr: std::net::SocketAddr,
    shutdown: crate::Shutdown,
    channel: tonic::transport::Channel,
}

impl RunningService {
    /// Starts `run` (a service's `run` function or a closure around it) and waits until its
    /// health service reports SERVING, failing if the service exits first.
    pub async fn start<F, Fut>(config: crate::ServiceConfig, run: F) -> anyhow::Result<Self>
    where
        F: FnOnce(crate::ServiceConfig, crate::host::Listen, crate::Shutdown) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = crate::Shutdown::new();
        let name = config.service_name();
        let handle = tokio::spawn(run(config, listener.into(), shutdown.clone()));
        let mut handle = Some(handle);
        crate::host::wait_ready(&name, addr, std::time::Duration::from_secs(30), || {
            crate::launch::exit_error(&mut handle)
        })
        .await?;
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?.connect_lazy();
        Ok(Self {
            addr,
            shutdown,
            channel,
        })
    }

    /// A channel to the service, for generated clients.
    pub fn channel(&self) -> tonic::transport::Channel {
        self.channel.clone()
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// `message` with `authorization: Bearer <token>` metadata.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("token is valid metadata"),
    );
    request
}

/// The field paths of the BadRequest violations of `status` (empty when it has none).
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// A stand-in customer-svc for the tests of services that ask it about customers (who a client
/// is, whether a customer is active): customers by id and by client subject, the number of calls
/// it answered, and a refusal of calls that did not forward the caller's token. Served on
/// `127.0.0.1:0` by [`CustomerStandIn::serve`]; the other RPCs answer UNIMPLEMENTED.
#[derive(Default, Clone)]
pub struct CustomerStandIn {
    customers: std::sync::Arc<std::sync::Mutex<CustomerDirectory>>,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Default)]
struct CustomerDirectory {
    by_id: std::collections::HashMap<uuid::Uuid, ordermesh_proto::customer::Customer>,
    by_subject: std::collections::HashMap<String, uuid::Uuid>,
}

/// A running [`CustomerStandIn`]; stopped when dropped.
pub struct ServedStandIn {
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ServedStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl CustomerStandIn {
    /// A new customer in `status`, linked to client `subject` if given.
    pub fn add(&self, subject: Option<&str>, status: ordermesh_proto::customer::CustomerStatus) -> uuid::Uuid {
        let id = uuid::Uuid::now_v7();
        self.link(subject, id, status);
        id
    }

    /// Customer `id` in `status`, linked to client `subject` if given.
    pub fn link(&self, subject: Option<&str>, id: uuid::Uuid, status: ordermesh_proto::customer::CustomerStatus) {
        let mut directory = self.customers.lock().unwrap_or_else(|p| p.into_inner());
        let customer = ordermesh_proto::customer::Customer {
            id: id.to_string(),
            status: status as i32,
            ..Default::default()
        };
        directory.by_id.insert(id, customer);
        if let Some(subject) = subject {
            directory.by_subject.insert(subject.to_owned(), id);
        }
    }

    /// Calls answered since the last time this was asked.
    pub fn take_calls(&self) -> usize {
        self.calls.swap(0, std::sync::atomic::Ordering::SeqCst)
    }

    pub async fn serve(&self) -> anyhow::Result<ServedStandIn> {
        use ordermesh_proto::customer::customer_service_server::CustomerServiceServer;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let service = CustomerServiceServer::new(self.clone());
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        Ok(ServedStandIn { url, server })
    }

    fn answer<T>(
        &self,
        request: &tonic::Request<T>,
        find: impl FnOnce(&CustomerDirectory) -> Option<uuid::Uuid>,
    ) -> Result<ordermesh_proto::customer::Customer, tonic::Status> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if request.metadata().get("authorization").is_none() {
            return Err(tonic::Status::unauthenticated("the caller's token was not forwarded"));
        }
        let directory = self.customers.lock().unwrap_or_else(|p| p.into_inner());
        find(&directory)
            .and_then(|id| directory.by_id.get(&id).cloned())
            .ok_or_else(|| tonic::Status::not_found("no such customer"))
    }
}

/// The stand-in's `CustomerService`: the two reads it answers, and `$method`s that answer
/// UNIMPLEMENTED. (A macro around the whole impl, so that `async_trait` sees every method.)
macro_rules! customer_stand_in_service {
    ($($method:ident: $request:ident => $response:ident),+ $(,)?) => {
        #[tonic::async_trait]
        impl ordermesh_proto::customer::customer_service_server::CustomerService for CustomerStandIn {
        async fn get_customer(
            &self,
            request: tonic::Request<ordermesh_proto::customer::GetCustomerRequest>,
        ) -> Result<tonic::Response<ordermesh_proto::customer::GetCustomerResponse>, tonic::Status> {
            let id = uuid::Uuid::parse_str(&request.get_ref().customer_id).ok();
            let customer = self.answer(&request, |_| id)?;
            Ok(tonic::Response::new(ordermesh_proto::customer::GetCustomerResponse {
                customer: Some(customer),
            }))
        }

        async fn get_customer_by_identity(
            &self,
            request: tonic::Request<ordermesh_proto::customer::GetCustomerByIdentityRequest>,
        ) -> Result<tonic::Response<ordermesh_proto::customer::GetCustomerByIdentityResponse>, tonic::Status> {
            let subject = request.get_ref().subject.clone();
            let customer = self.answer(&request, |d| d.by_subject.get(&subject).copied())?;
            Ok(tonic::Response::new(
                ordermesh_proto::customer::GetCustomerByIdentityResponse {
                    customer: Some(customer),
                },
            ))
        }

            $(
                async fn $method(
                    &self,
                    _: tonic::Request<ordermesh_proto::customer::$request>,
                ) -> Result<tonic::Response<ordermesh_proto::customer::$response>, tonic::Status> {
                    Err(tonic::Status::unimplemented("not part of the stand-in"))
                }
            )+
        }
    };
}

customer_stand_in_service! {
    create_customer: CreateCustomerRequest => CreateCustomerResponse,
    update_customer: UpdateCustomerRequest => UpdateCustomerResponse,
    list_customers: ListCustomersRequest => ListCustomersResponse,
    get_preferences: GetPreferencesRequest => GetPreferencesResponse,
    update_preferences: UpdatePreferencesRequest => UpdatePreferencesResponse,
    record_consent: RecordConsentRequest => RecordConsentResponse,
    list_consents: ListConsentsRequest => ListConsentsResponse,
    export_customer_data: ExportCustomerDataRequest => ExportCustomerDataResponse,
    get_customer_data_export: GetCustomerDataExportRequest => GetCustomerDataExportResponse,
    erase_customer: EraseCustomerRequest => EraseCustomerResponse,
}
