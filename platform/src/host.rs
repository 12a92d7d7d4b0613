//! The service host: everything a service's `run` shares with the other five. It binds the
//! listener (or takes one bound by the caller), opens the database and runs the migrations,
//! starts the event runtime (outbox relay and consumers) on a child of the shutdown token, builds
//! the gRPC server with the platform's layers, gates readiness on the database, and on exit —
//! also when serving fails — stops and joins the consumers and closes the pool.
//!
//! A service's `run` only declares what is its own:
//!
//! ```ignore
//! pub async fn run(config: ServiceConfig, listen: Listen, shutdown: Shutdown) -> anyhow::Result<()> {
//!     let mut host = ServiceHost::start(config, listen, store::migrations(), &shutdown).await?;
//!     let store = Store::new(host.db());
//!     host.consume::<OrderEvent, _>(events::OrderEventsHandler::new(store.clone())).await?;
//!     host.serve(ProductServiceServer::new(grpc::ProductApi::new(store))).await
//! }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ordermesh_proto::gdpr::personal_data_service_server::PersonalDataServiceServer;
use tokio::net::TcpListener;

use crate::auth::JwtValidator;
use crate::config::ServiceConfig;
use crate::db::{Database, Migrations};
use crate::events::{ConsumerConfig, EventBus, EventHandler, EventRuntime, TopicEvents, TopicHandler, dispatch};
use crate::gdpr::{PersonalData, PersonalDataApi};
use crate::grpc::{GrpcServer, MessageLimits, RoutableService};
use crate::ops::OpsApi;
use crate::shutdown::Shutdown;

/// Where a service listens: on a listener its caller bound (tests and `ordermesh up` bind first
/// to tell every service where its peers are), or on an address the host binds.
#[derive(Debug)]
pub enum Listen {
    Bound(TcpListener),
    Address(SocketAddr),
}

impl From<TcpListener> for Listen {
    fn from(listener: TcpListener) -> Self {
        Self::Bound(listener)
    }
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Self {
        Self::Address(addr)
    }
}

/// A listener that could not be bound, naming the service and the address.
#[derive(Debug, thiserror::Error)]
#[error("{service} cannot listen on {addr}: {source}")]
pub struct BindError {
    pub service: String,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

impl BindError {
    /// Whether another socket holds the address.
    pub fn address_in_use(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::AddrInUse
    }
}

/// Binds `addr` for `service` (e.g. `order-svc`), with an error that says who and where.
pub async fn bind(service: &str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        service: service.to_owned(),
        addr,
        source,
    })
}

impl Listen {
    /// The listener, binding the address if needed.
    pub async fn into_listener(self, service: &str) -> Result<TcpListener, BindError> {
        match self {
            Self::Bound(listener) => Ok(listener),
            Self::Address(addr) => bind(service, addr).await,
        }
    }
}

/// A service being started; see the module documentation.
pub struct ServiceHost {
    config: ServiceConfig,
    listener: TcpListener,
    db: Database,
    events: EventRuntime,
    /// A child of the caller's token: the host's own tasks stop with it, and it can be triggered
    /// without stopping the rest of a process that runs several services.
    shutdown: Shutdown,
    stop_on_drop: StopOnDrop,
    /// This service's part of GDPR exports, if it holds personal data.
    personal_data: Option<PersonalDataServiceServer<PersonalDataApi>>,
    /// The service's periodic tasks ([`Self::every`]), joined before the pool closes.
    periodic: Vec<tokio::task::JoinHandle<()>>,
}

/// Stops the host's tasks if it is dropped before serving (a consumer failed to start).
struct StopOnDrop(Shutdown);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

impl ServiceHost {
    /// Binds the listener first (so a taken port fails at once, before anything starts), then
    /// opens `config.database_url`, runs `migrations` and starts the outbox relay.
    pub async fn start(
        config: ServiceConfig,
        listen: impl Into<Listen>,
        migrations: Migrations,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Self> {
        let name = config.service_name();
        let listener = listen.into().into_listener(&name).await?;
        let db = Database::for_service(&config)
            .await
            .with_context(|| format!("{name}: opening the database"))?;
        if let Err(error) = db.migrate(&migrations).await {
            db.close().await;
            return Err(error.context(format!("{name}: running migrations")));
        }
        let shutdown = shutdown.child();
        let events = match EventRuntime::start(&config, &db, &shutdown).await {
            Ok(events) => events,
            Err(error) => {
                db.close().await;
                return Err(error.context(format!("{name}: connecting the event bus")));
            }
        };
        Ok(Self {
            config,
            listener,
            db,
            events,
            stop_on_drop: StopOnDrop(shutdown.clone()),
            shutdown,
            personal_data: None,
            periodic: Vec::new(),
        })
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    pub fn bus(&self) -> &Arc<dyn EventBus> {
        self.events.bus()
    }

    /// The host's shutdown token, for the service's own long-lived tasks and streams.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Starts the service's durable consumer of `E`'s topic, dispatching on `E`.
    pub async fn consume<E: TopicEvents, H: TopicHandler<E>>(&mut self, handler: H) -> anyhow::Result<()> {
        self.consume_with::<E, H>(handler, |_| {}).await
    }

    /// [`Self::consume`] with `tune` adjusting the consumer's settings (retries, lanes).
    pub async fn consume_with<E: TopicEvents, H: TopicHandler<E>>(
        &mut self,
        handler: H,
        tune: impl FnOnce(&mut ConsumerConfig),
    ) -> anyhow::Result<()> {
        self.events
            .consume_with(E::TOPIC, dispatch::<E, H>(Arc::new(handler)), tune)
            .await
    }

    /// A consumer of `topic` that sees every event as it came, whatever its type (audit-svc
    /// records them all).
    pub async fn consume_raw(
        &mut self,
        topic: &str,
        handler: Arc<dyn EventHandler>,
        tune: impl FnOnce(&mut ConsumerConfig),
    ) -> anyhow::Result<()> {
        self.events.consume_with(topic, handler, tune).await
    }

    /// Takes part in erasures: consumes `gdpr-events` with `erase` as its step (see
    /// [`crate::gdpr::ErasureStep`]), on one lane — erasures are rare, and a lane costs memory
    /// in every replica.
    pub async fn take_part_in_erasures(&mut self, erase: impl crate::gdpr::Erase) -> anyhow::Result<()> {
        let workload = self
            .config
            .workload()
            .context("only a service of the mesh takes part in erasures")?;
        let step = crate::gdpr::ErasureStep::new(workload, erase);
        self.consume_with::<ordermesh_proto::event_types::GdprEvent, _>(step, |c| c.lanes = 1)
            .await
    }

    /// Also serves `source` as this service's part of GDPR exports
    /// (`ordermesh.gdpr.v1.PersonalDataService`, see [`crate::gdpr`]).
    pub fn export_personal_data(&mut self, source: impl PersonalData) {
        self.personal_data = Some(PersonalDataApi::server(self.config.service, source));
    }

    /// Runs `task` every `period` until shutdown; a run in progress finishes before the pool
    /// closes, and a failed run is logged (as `name`) and tried again the next period.
    pub fn every<F, Fut>(&mut self, name: &'static str, period: Duration, task: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send,
    {
        let shutdown = self.shutdown.clone();
        self.periodic.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(period) => {}
                }
                if let Err(error) = task().await {
                    tracing::warn!(task = name, error = %format!("{error:#}"), "periodic task failed");
                }
            }
        }));
    }

    /// Serves `api` (with health, reflection, gRPC-Web, tracing, authentication and the message
    /// limits of the configuration, beside the ops API of [`crate::ops`]) until shutdown; then drains in-flight calls, joins the
    /// event tasks and closes the pool. Readiness turns SERVING once the database answers.
    pub async fn serve<S: RoutableService + MessageLimits>(self, api: S) -> anyhow::Result<()> {
        let Self {
            config,
            listener,
            db,
            events,
            shutdown,
            stop_on_drop,
            personal_data,
            periodic,
        } = self;
        let mut server = GrpcServer::new(&config).with_auth(JwtValidator::shared(config.auth.clone()));
        let api = api.limit_messages(server.max_message_bytes());
        let ops = OpsApi::server(
            events.service(),
            db.clone(),
            events.bus().clone(),
            events.topics().to_vec(),
        )
        .limit_messages(server.max_message_bytes());
        server = server.add_service(ops);
        if let Some(part) = personal_data {
            let part = part.limit_messages(server.max_message_bytes());
            server = server.add_service(part);
        }
        let ping = db.clone();
        let result = server
            .add_service(api)
            .readiness(move || async move { ping.ping().await })
            .serve(listener, shutdown.clone())
            .await;
        // Whether serving ended by shutdown or by an error: stop the event tasks, let in-flight
        // events finish, then close the pool.
        drop(stop_on_drop);
        events.join().await;
        for task in periodic {
            let _ = task.await;
        }
        db.close().await;
        result.with_context(|| format!("{}: serving gRPC", config.service_name()))
    }
}

/// Waits until the gRPC service at `addr` reports SERVING on its health service, up to
/// `timeout`. `exited` is polled between tries: a service that ended before it became ready
/// fails the wait at once with its own error.
pub async fn wait_ready(
    name: &str,
    addr: SocketAddr,
    timeout: Duration,
    exited: impl FnMut() -> Option<anyhow::Error>,
) -> anyhow::Result<()> {
    wait_ready_over(name, addr, None, timeout, exited).await
}

/// [`wait_ready`] of a server that requires mutual TLS, asking with `tls`'s certificate.
pub async fn wait_ready_over(
    name: &str,
    addr: SocketAddr,
    tls: Option<Arc<crate::mesh::tls::WorkloadTls>>,
    timeout: Duration,
    mut exited: impl FnMut() -> Option<anyhow::Error>,
) -> anyhow::Result<()> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        addr.ip().to_string()
    };
    let url = if addr.is_ipv6() && !addr.ip().is_unspecified() {
        format!("http://[{host}]:{}", addr.port())
    } else {
        format!("http://{host}:{}", addr.port())
    };
    let config = crate::client::ClientConfig {
        tls,
        ..crate::client::ClientConfig::new(name, url)
    };
    let mut health = HealthClient::new(crate::client::endpoint(&config)?.connect_lazy());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(error) = exited() {
            return Err(error.context(format!("{name} exited before it was ready")));
        }
        let status = health.check(HealthCheckRequest { service: String::new() }).await;
        if status.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{name} did not become ready within {} s",
            timeout.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
