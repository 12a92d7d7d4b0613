use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use tracing::Instrument;

use crate::telemetry;

/// Correlation id of a request: taken from `x-correlation-id` or made up, then put in the
/// request extensions and on the span so logs of one business flow can be joined.
#[derive(Clone, Debug)]
pub struct CorrelationId(pub String);

/// One span per gRPC call (child of the caller's `traceparent`), logging method, status and
/// latency. Nothing from the message body is recorded, so no personal data reaches the logs.
#[derive(Clone)]
pub struct GrpcTraceLayer {
    service: &'static str,
}

impl GrpcTraceLayer {
    pub fn new(service: &'static str) -> Self {
        Self { service }
    }
}

impl<S> tower::Layer<S> for GrpcTraceLayer {
    type Service = GrpcTraceService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcTraceService {
            inner,
            service: self.service,
        }
    }
}

#[derive(Clone)]
pub struct GrpcTraceService<S> {
    inner: S,
    service: &'static str,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcTraceService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let headers = request.headers();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let correlation_id = header("x-correlation-id")
            .filter(|id| id.len() <= 128)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        // OpenTelemetry's RPC conventions: `package.Service/Method` as the span's name.
        let path = request.uri().path().trim_start_matches('/');
        let (rpc_service, rpc_method) = path.split_once('/').unwrap_or((path, ""));
        let span = tracing::info_span!(
            "grpc",
            otel.name = %path,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %rpc_service,
            rpc.method = %rpc_method,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            service = self.service,
            correlation_id = %correlation_id,
        );
        telemetry::set_remote_parent(&span, header);
        request.extensions_mut().insert(CorrelationId(correlation_id));
        let started = Instant::now();
        let method = request.uri().path().to_owned();
        let service = self.service;
        Box::pin(
            async move {
                let response = inner.call(request).await;
                if let Ok(response) = &response {
                    // Errors are answered trailers-only (status in the headers); a success
                    // carries its status in the trailers, which are not awaited here.
                    let grpc_status = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("0")
                        .to_owned();
                    let span = tracing::Span::current();
                    span.record("rpc.grpc.status_code", grpc_status.parse::<i64>().unwrap_or(2));
                    if grpc_status != "0" {
                        span.record("otel.status_code", "ERROR");
                    }
                    let elapsed = started.elapsed().as_secs_f64();
                    crate::metrics::record_rpc(service, &method, &grpc_status, elapsed);
                    // Per call: DEBUG. At INFO a loaded service would spend its time logging
                    // (and `ordermesh up` would scroll its banner away); the RED metrics count calls.
                    tracing::debug!(grpc_status, elapsed_ms = elapsed * 1000.0, "handled");
                }
                response
            }
            .instrument(span),
        )
    }
}
