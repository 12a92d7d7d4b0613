//! Tower layers for gRPC clients. Each works on plain `http` requests and responses, so it can
//! be tested around a `service_fn` without a network.

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tonic::body::Body;

use super::breaker::CircuitBreaker;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The gRPC status a response carries in its headers (trailers-only responses, which is how
/// servers answer errors), if any.
fn header_status(response: &http::Response<Body>) -> Option<tonic::Code> {
    let value = response
        .headers()
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(tonic::Code::from_i32(value))
}

/// Whether an outcome means the dependency is unhealthy (not that the request was bad).
fn is_dependency_failure(result: &Result<http::Response<Body>, BoxError>) -> bool {
    match result {
        Err(_) => true,
        Ok(response) => matches!(
            header_status(response),
            Some(tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::ResourceExhausted)
        ),
    }
}

/// Fails fast with UNAVAILABLE while the breaker is open.
#[derive(Clone)]
pub struct CircuitBreakerLayer {
    breaker: CircuitBreaker,
}

impl CircuitBreakerLayer {
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self { breaker }
    }
}

impl<S> tower::Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreakerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CircuitBreakerService<S> {
    inner: S,
    breaker: CircuitBreaker,
}

impl<S> tower::Service<http::Request<Body>> for CircuitBreakerService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let permit = self.breaker.try_acquire();
        Box::pin(async move {
            let permit = match permit {
                Ok(permit) => permit,
                Err(open) => return Err(Box::new(tonic::Status::unavailable(open.to_string())) as BoxError),
            };
            let result = inner.call(request).await.map_err(Into::into);
            permit.record(!is_dependency_failure(&result));
            result
        })
    }
}

/// Retries a call that failed with UNAVAILABLE (or could not connect), with exponential
/// backoff. Other errors are returned at once: only "the server did not take the request" is
/// safe to repeat. The request body is buffered so it can be sent again (unary and
/// server-streaming requests are small and finite).
#[derive(Clone)]
pub struct RetryUnavailableLayer {
    max_retries: u32,
    base_backoff: Duration,
}

impl RetryUnavailableLayer {
    pub fn new(max_retries: u32, base_backoff: Duration) -> Self {
        Self {
            max_retries,
            base_backoff,
        }
    }
}

impl<S> tower::Layer<S> for RetryUnavailableLayer {
    type Service = RetryUnavailableService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RetryUnavailableService {
            inner,
            max_retries: self.max_retries,
            base_backoff: self.base_backoff,
        }
    }
}

#[derive(Clone)]
pub struct RetryUnavailableService<S> {
    inner: S,
    max_retries: u32,
    base_backoff: Duration,
}

impl<S> tower::Service<http::Request<Body>> for RetryUnavailableService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (max_retries, base_backoff) = (self.max_retries, self.base_backoff);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await.map_err(|e| Box::new(e) as BoxError)?.to_bytes();
            let rebuild = || {
                let mut request = http::Request::new(Body::new(http_body_util::Full::new(bytes.clone())));
                *request.method_mut() = parts.method.clone();
                *request.uri_mut() = parts.uri.clone();
                *request.version_mut() = parts.version;
                *request.headers_mut() = parts.headers.clone();
                request
            };
            let mut attempt = 0;
            loop {
                use tower::ServiceExt;
                let result = inner
                    .ready()
                    .await
                    .map_err(Into::into)?
                    .call(rebuild())
                    .await
                    .map_err(Into::into);
                let retryable = match &result {
                    Err(_) => true,
                    Ok(response) => header_status(response) == Some(tonic::Code::Unavailable),
                };
                if !retryable || attempt >= max_retries {
                    return result;
                }
                attempt += 1;
                let backoff = base_backoff * 2u32.pow(attempt - 1);
                tracing::debug!(
                    attempt,
                    backoff_ms = backoff.as_millis() as u64,
                    "retrying unavailable call"
                );
                tokio::time::sleep(backoff).await;
            }
        })
    }
}

/// Records `rpc.client.duration` of each call, retries and breaker included: what the caller
/// waited. The code is the one of a trailers-only answer (how errors come), `0` otherwise, and
/// `14` (UNAVAILABLE) when no answer came.
#[derive(Clone, Copy)]
pub struct ClientMetricsLayer {
    caller: &'static str,
    peer: &'static str,
}

impl ClientMetricsLayer {
    /// Calls of `caller` to `peer` (workload names; the BFF's two surfaces are both `bff`).
    pub fn new(caller: &'static str, peer: &'static str) -> Self {
        let caller = if caller.starts_with("bff") { "bff" } else { caller };
        Self { caller, peer }
    }
}

impl<S> tower::Layer<S> for ClientMetricsLayer {
    type Service = ClientMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ClientMetricsService { inner, layer: *self }
    }
}

#[derive(Clone)]
pub struct ClientMetricsService<S> {
    inner: S,
    layer: ClientMetricsLayer,
}

impl<S> tower::Service<http::Request<Body>> for ClientMetricsService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let layer = self.layer;
        let started = std::time::Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await.map_err(Into::into);
            let code = match &result {
                Ok(response) => header_status(response).unwrap_or(tonic::Code::Ok) as i32,
                Err(_) => tonic::Code::Unavailable as i32,
            };
            crate::metrics::record_client_rpc(
                layer.caller,
                layer.peer,
                &method,
                &code.to_string(),
                started.elapsed().as_secs_f64(),
            );
            result
        })
    }
}
