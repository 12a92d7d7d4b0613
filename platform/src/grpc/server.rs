use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic_health::ServingStatus;

use super::{AuthLayer, GrpcTraceLayer};
use crate::auth::JwtValidator;
use crate::config::{Env, GrpcLimits, ServiceConfig};
use crate::mesh::tls::WorkloadTls;
use crate::mesh::{Workload, WorkloadAuthzLayer};
use crate::shutdown::Shutdown;
use crate::telemetry;

/// A gRPC service the platform's server routes to: what tonic generates for a contract.
pub trait RoutableService:
    tower::Service<
        http::Request<tonic::body::Body>,
        Error = Infallible,
        Response: axum::response::IntoResponse,
        Future: Send + 'static,
    > + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> RoutableService for S where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Error = Infallible,
            Response: axum::response::IntoResponse,
            Future: Send + 'static,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

type ReadinessCheck = Box<dyn FnOnce() -> BoxFuture<'static, anyhow::Result<()>> + Send>;

/// Builds the gRPC server every service runs: its own services plus health, reflection (v1 and
/// v1alpha), gRPC-Web, request tracing, JWT authentication, a request timeout, message-size
/// limits, and graceful shutdown.
pub struct GrpcServer {
    service: &'static str,
    routes: RoutesBuilder,
    service_names: Vec<&'static str>,
    limits: GrpcLimits,
    validator: Option<Arc<JwtValidator>>,
    readiness: Option<ReadinessCheck>,
    /// Mutual TLS, with the call graph enforced for `workload`.
    tls: Option<Arc<WorkloadTls>>,
    workload: Option<Workload>,
}

impl GrpcServer {
    pub fn new(config: &ServiceConfig) -> Self {
        Self {
            service: config.service,
            routes: RoutesBuilder::default(),
            service_names: Vec::new(),
            limits: config.grpc.clone(),
            validator: None,
            readiness: None,
            tls: config.tls.clone(),
            workload: config.workload(),
        }
    }

    /// Adds one of the service's own gRPC services. Its health status starts NOT_SERVING and
    /// turns SERVING once the readiness check passes.
    pub fn add_service<S: RoutableService>(mut self, service: S) -> Self {
        self.service_names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Authenticates the bearer token of every call (except health and reflection) with
    /// `validator`; see [`AuthLayer`].
    pub fn with_auth(mut self, validator: Arc<JwtValidator>) -> Self {
        self.validator = Some(validator);
        self
    }

    /// A check that must pass (e.g. database reachable, migrations run) before health reports
    /// SERVING. Until then the health service answers NOT_SERVING.
    pub fn readiness<F, Fut>(mut self, check: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.readiness = Some(Box::new(move || Box::pin(check())));
        self
    }

    /// The message-size limit to apply to generated servers (`max_decoding_message_size`).
    pub fn max_message_bytes(&self) -> usize {
        self.limits.max_message_bytes
    }

    /// Serves on `listener` until `shutdown` fires, then drains in-flight calls.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self {
            service,
            mut routes,
            service_names,
            limits,
            validator,
            readiness,
            tls,
            workload,
        } = self;
        let (reporter, health_service) = tonic_health::server::health_reporter();
        reporter.set_service_status("", ServingStatus::NotServing).await;
        for name in &service_names {
            reporter.set_service_status(*name, ServingStatus::NotServing).await;
        }
        routes.add_service(health_service);
        let (v1, v1alpha) = reflection_services(&service_names)?;
        routes.add_service(v1);
        routes.add_service(v1alpha);

        let addr = listener.local_addr()?;
        tracing::info!(service, %addr, "gRPC server listening");

        let ready_reporter = reporter.clone();
        let names = service_names.clone();
        let ready_shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Some(check) = readiness
                && let Err(error) = check().await
            {
                tracing::error!(
                    service,
                    error = format!("{error:#}"),
                    "readiness check failed; staying NOT_SERVING"
                );
                return;
            }
            if ready_shutdown.is_triggered() {
                return;
            }
            ready_reporter.set_service_status("", ServingStatus::Serving).await;
            for name in names {
                ready_reporter.set_service_status(name, ServingStatus::Serving).await;
            }
            tracing::info!(service, "ready");
        });

        // No Nagle on accepted connections: a gRPC answer is several small writes (headers,
        // data, trailers), and a caller that waits for it before sending again would otherwise
        // meet the peer's delayed ACK — about 40 ms per call. (tonic's own bind sets this; a
        // listener bound by the host, as here, must ask.)
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let drain = shutdown.clone();
        let mut builder = tonic::transport::Server::builder();
        // Fail closed: TLS for a server the call graph knows nothing about would let every
        // certificate of the CA call everything.
        let authz = match (&tls, workload) {
            (None, _) => None,
            (Some(tls), Some(workload)) => {
                builder = builder.tls_config(tls.server_config())?;
                Some(WorkloadAuthzLayer::new(
                    workload,
                    &tls.identity.trust_domain,
                    &tls.identity.namespace,
                ))
            }
            (Some(_), None) => anyhow::bail!("{service} serves mutual TLS but is no workload of the call graph"),
        };
        let result = builder
            .accept_http1(true)
            .timeout(limits.request_timeout)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .layer(GrpcTraceLayer::new(service))
            .layer(tower::util::option_layer(authz))
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(AuthLayer::new(validator))
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(incoming, async move {
                drain.wait().await;
                // Tell load balancers first, then stop accepting.
                reporter.set_service_status("", ServingStatus::NotServing).await;
            })
            .await;
        tracing::info!(service, "gRPC server stopped");
        result.map_err(Into::into)
    }
}

/// Reflection over every ordermesh contract (so any message can be resolved) but listing only the
/// services this server really serves.
fn reflection_services(
    service_names: &[&'static str],
) -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    tonic_reflection::server::v1alpha::ServerReflectionServer<impl tonic_reflection::server::v1alpha::ServerReflection>,
)> {
    let listed = || {
        let mut names: Vec<String> = service_names.iter().map(|s| s.to_string()).collect();
        names.push("grpc.health.v1.Health".to_owned());
        names.push("grpc.reflection.v1.ServerReflection".to_owned());
        names.push("grpc.reflection.v1alpha.ServerReflection".to_owned());
        names
    };
    let builder = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(ordermesh_proto::FILE_DESCRIPTOR_SET)
            // The details our error statuses carry, so grpcurl prints them rather than a blob.
            .register_encoded_file_descriptor_set(ordermesh_proto::GOOGLE_RPC_FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
        for name in listed() {
            builder = builder.with_service_name(name);
        }
        builder
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

/// The whole `main` of a service binary: configuration from the environment, telemetry, and
/// shutdown on SIGTERM/Ctrl-C; the service host binds the configured address.
pub fn run_main<F, Fut>(service: &'static str, default_port: u16, run: F) -> anyhow::Result<()>
where
    F: FnOnce(ServiceConfig, crate::host::Listen, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = ServiceConfig::from_env(&Env::from_process(), service, default_port)?;
    crate::install_crypto_provider();
    tokio::runtime::Runtime::new()?.block_on(async move {
        let _telemetry = telemetry::init(&config.telemetry)?;
        let listen = crate::host::Listen::Address(config.listen_addr);
        run(config, listen, Shutdown::on_signals()).await
    })
}
