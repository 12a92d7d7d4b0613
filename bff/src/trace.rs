//! One server span per request, following OpenTelemetry's HTTP conventions: named
//! `METHOD /route/{template}` (never the concrete path, which holds ids), a child of the
//! gateway's `traceparent` when one came, with the status, the surface and the kind of
//! principal — never who the principal is. Every gRPC call the handler makes carries the span's
//! context ([`ordermesh_platform::client::CallContext::request`]), so the services' spans join
//! the trace; the correlation id and the trace id are fields of the span, so every log line
//! written while handling the request carries them.

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use ordermesh_platform::auth::Principal;
use ordermesh_platform::telemetry;
use tracing::field::Empty;

use crate::Surface;

/// The span of `request`, whose correlation id is `correlation`.
pub fn request_span(request: &Request, correlation: &str) -> tracing::Span {
    let method = request.method().as_str();
    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    let span = tracing::info_span!(
        "http",
        otel.name = %match route {
            Some(route) => format!("{method} {route}"),
            None => method.to_owned(),
        },
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = route,
        http.response.status_code = Empty,
        ordermesh.surface = Empty,
        ordermesh.principal.kind = Empty,
        correlation_id = %correlation,
        trace_id = Empty,
    );
    telemetry::set_remote_parent(&span, |name| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    });
    if let Some(trace_id) = telemetry::trace_id_of(&span) {
        span.record("trace_id", trace_id);
    }
    span
}

/// Records the answer's status on `span`; a 5xx marks the span as failed (a 4xx is the
/// client's error, not the server's, as the conventions say).
pub fn record_status(span: &tracing::Span, status: StatusCode) {
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// Records who is asking, by kind only, on the current request's span.
pub fn record_caller(surface: Surface, principal: &Principal) {
    let span = tracing::Span::current();
    span.record("ordermesh.surface", surface.as_str());
    span.record("ordermesh.principal.kind", principal.kind());
}
