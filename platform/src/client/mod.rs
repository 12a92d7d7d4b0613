//! gRPC clients of the services: one lazily-connected channel per dependency, wrapped in the
//! resilience layers every client in the project uses (per-attempt deadline, retry on
//! UNAVAILABLE only, circuit breaker), and outgoing requests that carry the caller's token,
//! correlation id and trace context.

mod breaker;
mod layers;

use std::sync::Arc;
use std::time::Duration;

use tonic::body::Body;
use tower::util::BoxCloneSyncService;

use crate::mesh::Workload;
use crate::mesh::observe::RecordCallsLayer;
use crate::mesh::tls::WorkloadTls;

pub use breaker::{BreakerConfig, BreakerOpen, BreakerState, CircuitBreaker, Permit};
pub use layers::{BoxError, CircuitBreakerLayer, ClientMetricsLayer, RetryUnavailableLayer};

/// The channel type every generated client is built on: `XServiceClient::new(channel)`.
pub type ResilientChannel = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, ChannelError>;

/// The error of a [`ResilientChannel`] call. A concrete type (not a boxed trait object) so the
/// futures of generated clients stay `Send` inside async trait methods; tonic finds the
/// `Status` (e.g. "circuit open") through [`std::error::Error::source`].
#[derive(Debug)]
pub struct ChannelError(pub BoxError);

impl ChannelError {
    /// A failed call as tonic reports it, except that a failure it cannot classify — the
    /// connection closed mid-call because the peer crashed or restarted — is UNAVAILABLE, as
    /// gRPC's own transports report it, rather than UNKNOWN (which callers turn into an internal
    /// error). The call may or may not have taken effect: retrying is for idempotent calls.
    pub fn from_transport(error: impl Into<BoxError>) -> Self {
        let status = tonic::Status::from_error(error.into());
        let status = if status.code() == tonic::Code::Unknown {
            tonic::Status::unavailable(format!(
                "the connection failed mid-call ({}); the call may have taken effect",
                status.message()
            ))
        } else {
            status
        };
        Self(Box::new(status))
    }
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ChannelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Name of the dependency, for logs and the breaker.
    pub name: String,
    /// `http://host:port`.
    pub url: String,
    /// Deadline of one attempt (also sent to the server as `grpc-timeout`).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries after UNAVAILABLE; 0 disables retrying.
    pub max_retries: u32,
    pub retry_backoff: Duration,
    pub breaker: BreakerConfig,
    /// Who calls whom, for the call recorder ([`crate::mesh::observe`]); `None` for tools that
    /// are not workloads of the call graph.
    pub route: Option<(Workload, Workload)>,
    /// Mutual TLS to the peer (`GRPC_TLS_*`): the peer is called over `https` whatever the
    /// URL's scheme says, with this workload's certificate.
    pub tls: Option<Arc<WorkloadTls>>,
}

impl ClientConfig {
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_retries: 2,
            retry_backoff: Duration::from_millis(100),
            breaker: BreakerConfig::default(),
            route: None,
            tls: None,
        }
    }

    /// `caller`'s client of `callee` at `url`, over `tls` when given.
    pub fn between(caller: Workload, callee: Workload, url: impl Into<String>, tls: Option<Arc<WorkloadTls>>) -> Self {
        Self {
            route: Some((caller, callee)),
            tls,
            ..Self::new(callee.name(), url)
        }
    }
}

/// The endpoint of `config`: its URL, deadlines and TLS. Connects lazily.
pub fn endpoint(config: &ClientConfig) -> anyhow::Result<tonic::transport::Endpoint> {
    let url = match (&config.tls, config.url.strip_prefix("http://")) {
        (Some(_), Some(rest)) => format!("https://{rest}"),
        _ => config.url.clone(),
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(url)?
        .timeout(config.timeout)
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30));
    if let Some(tls) = &config.tls {
        endpoint = endpoint.tls_config(tls.client_config())?;
    }
    Ok(endpoint)
}

/// Builds the channel for `config`. It connects lazily, so a service starts even while its
/// dependencies are down; calls then fail with UNAVAILABLE until they return.
pub fn channel(config: &ClientConfig) -> anyhow::Result<(ResilientChannel, CircuitBreaker)> {
    let endpoint = endpoint(config)?;
    let breaker = CircuitBreaker::new(config.name.clone(), config.breaker.clone());
    let record = config
        .route
        .map(|(caller, callee)| RecordCallsLayer::new(caller, callee));
    let metered = config
        .route
        .map(|(caller, callee)| ClientMetricsLayer::new(caller.name(), callee.name()));
    let service = tower::ServiceBuilder::new()
        .map_err(ChannelError::from_transport)
        .option_layer(metered)
        .option_layer(record)
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .layer(RetryUnavailableLayer::new(config.max_retries, config.retry_backoff))
        .service(endpoint.connect_lazy());
    Ok((BoxCloneSyncService::new(service), breaker))
}

/// Who a call is made for: the user's bearer token (forwarded so the callee checks it again)
/// and the correlation id of the business flow.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub bearer_token: Option<String>,
    pub correlation_id: Option<String>,
}

impl CallContext {
    /// The context of an incoming call, to pass on to the calls it makes.
    pub fn from_request<T>(request: &tonic::Request<T>) -> Self {
        Self {
            bearer_token: request
                .extensions()
                .get::<crate::grpc::BearerToken>()
                .map(|t| t.0.clone()),
            correlation_id: request
                .extensions()
                .get::<crate::grpc::CorrelationId>()
                .map(|c| c.0.clone()),
        }
    }

    /// Wraps `message` with this context's metadata and the current trace context.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        if let Some(token) = &self.bearer_token
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            metadata.insert("authorization", value);
        }
        if let Some(id) = &self.correlation_id
            && let Ok(value) = id.parse()
        {
            metadata.insert("x-correlation-id", value);
        }
        crate::telemetry::inject_into_metadata(metadata);
        request
    }
}

/// Whether a peer's status code may turn out differently on a later try.
pub fn is_transient_code(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Cancelled
            | Code::Aborted
            | Code::Unknown
            | Code::Internal
    )
}

/// Maps a peer's failure to our error: its outages become UNAVAILABLE (the caller may retry),
/// its refusals of our credentials keep their meaning, anything else is internal (it is our
/// bug or the peer's, not the caller's).
pub fn peer_error(peer: &str, status: tonic::Status) -> crate::ServiceError {
    use crate::ServiceError;
    use tonic::Code;
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Cancelled => {
            tracing::warn!(peer, code = ?status.code(), "peer unavailable");
            ServiceError::Unavailable(format!("{peer} is unavailable, try again later"))
        }
        Code::PermissionDenied => ServiceError::PermissionDenied(format!("{peer}: {}", status.message())),
        Code::Unauthenticated => ServiceError::Unauthenticated(format!("{peer}: {}", status.message())),
        _ => ServiceError::Internal(anyhow::anyhow!(
            "{peer} answered {:?}: {}",
            status.code(),
            status.message()
        )),
    }
}

/// The customer a client principal (`issuer` + `subject`) is linked to, asked of customer-svc;
/// NOT_FOUND when the client has no profile yet. Services that serve clients resolve them
/// through this one function.
pub async fn client_customer(
    customers: &ordermesh_proto::customer::customer_service_client::CustomerServiceClient<ResilientChannel>,
    context: &CallContext,
    issuer: &str,
    subject: &str,
) -> Result<uuid::Uuid, crate::ServiceError> {
    use crate::ServiceError;
    let request = context.request(ordermesh_proto::customer::GetCustomerByIdentityRequest {
        issuer: issuer.to_owned(),
        subject: subject.to_owned(),
    });
    match customers.clone().get_customer_by_identity(request).await {
        Ok(response) => response
            .into_inner()
            .customer
            .and_then(|c| uuid::Uuid::parse_str(&c.id).ok())
            .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("customer-svc answered without a customer"))),
        Err(status) if status.code() == tonic::Code::NotFound => Err(ServiceError::not_found("customer", "of caller")),
        Err(status) => Err(peer_error("customer-svc", status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(error: ChannelError) -> tonic::Code {
        tonic::Status::from_error(Box::new(error)).code()
    }

    #[test]
    fn a_connection_lost_mid_call_is_unavailable_and_a_status_keeps_its_code() {
        let lost = std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection closed before message completed",
        );
        assert_eq!(code_of(ChannelError::from_transport(lost)), tonic::Code::Unavailable);
        let open = tonic::Status::resource_exhausted("bulkhead full");
        assert_eq!(
            code_of(ChannelError::from_transport(open)),
            tonic::Code::ResourceExhausted
        );
    }
}
