//! The middleware around every route: correlation ids and problem+json for every error
//! ([`finish`], outermost), CORS per surface ([`cors`]) and the request time limit
//! ([`timeout`]). The auth guard is [`crate::auth::guard`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use ordermesh_platform::telemetry;
use tracing::Instrument as _;

use crate::auth::CorrelationId;
use crate::config::BffConfig;
use crate::extract;
use crate::problem::{self, Problem};
use crate::state::AppState;
use crate::trace;

/// CORS for the origins configured for the surface.
pub fn cors(config: &BffConfig) -> CorsLayer {
    let origins: Vec<HeaderValue> = config
        .cors_origins()
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-correlation-id"),
        ])
        .expose_headers([
            header::LOCATION,
            header::RETRY_AFTER,
            HeaderName::from_static("x-correlation-id"),
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// The path prefix of the admin API, which `BFF_ADMIN_ALLOWED_CIDRS` restricts.
pub const ADMIN_PREFIX: &str = "/api/v1/admin/";

/// `/api/v1/admin/*` only from the allowed networks, when some are configured: 403 before the
/// token is even looked at. The client's address is the trusted proxy header's right-most entry
/// when one is configured, else the connection's peer (unknown: refused).
pub async fn admin_networks(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let networks = &state.config.admin_allowed_networks;
    if networks.is_empty() || !request.uri().path().starts_with(ADMIN_PREFIX) {
        return next.run(request).await;
    }
    let client = client_address(&request, state.config.trusted_proxy_header.as_ref());
    if client.is_some_and(|ip| networks.iter().any(|n| n.contains(&ip))) {
        return next.run(request).await;
    }
    Problem::forbidden("the admin API is not available from this network").into_response()
}

fn client_address(request: &Request, proxy_header: Option<&HeaderName>) -> Option<std::net::IpAddr> {
    if let Some(name) = proxy_header {
        let value = request.headers().get_all(name).iter().next_back()?.to_str().ok()?;
        return value.rsplit(',').next()?.trim().parse().ok();
    }
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

/// Upper bound on handling one request: 504 problem after `BFF_REQUEST_TIMEOUT_SECONDS`.
pub async fn timeout(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::timeout().into_response(),
    }
}

/// A usable incoming correlation id: 1-128 characters of `[A-Za-z0-9._:-]`.
fn incoming_correlation(request: &Request) -> Option<String> {
    let value = request.headers().get("x-correlation-id")?.to_str().ok()?;
    (!value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')))
    .then(|| value.to_owned())
}

/// Outermost middleware: assigns the correlation id, rejects NUL bytes in the URL, and makes
/// every error a problem+json document carrying the correlation id (axum's own 404/405/413
/// answers included, a 405 keeping its `Allow`).
pub async fn finish(mut request: Request, next: Next) -> Response {
    let correlation = incoming_correlation(&request).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    request.extensions_mut().insert(CorrelationId(correlation.clone()));
    let span = trace::request_span(&request, &correlation);
    let trace_id = telemetry::trace_id_of(&span);
    let uri = request.uri().to_string();
    let personal = carries_personal_data(&request);
    let mut response = if uri.to_ascii_lowercase().contains("%00") {
        Problem::bad_request("the URL must not contain NUL characters").into_response()
    } else {
        next.run(request).instrument(span.clone()).await
    };
    let status = response.status();
    trace::record_status(&span, status);
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == problem::CONTENT_TYPE.as_bytes());
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    // Errors with a JSON body of their own (`/readyz`) keep it.
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let (parts, body) = response.into_parts();
        let mut problem = if is_problem {
            match axum::body::to_bytes(body, 64 * 1024).await {
                Ok(bytes) => serde_json::from_slice::<Problem>(&bytes).unwrap_or_else(|_| Problem::internal()),
                Err(_) => Problem::internal(),
            }
        } else {
            match status {
                StatusCode::NOT_FOUND => Problem::not_found("no such resource"),
                StatusCode::METHOD_NOT_ALLOWED => Problem::new(status, "method-not-allowed", "Method not allowed"),
                StatusCode::PAYLOAD_TOO_LARGE => extract::payload_too_large(),
                _ => Problem::new(status, "http-error", status.canonical_reason().unwrap_or("Error")),
            }
        };
        problem.correlation_id = Some(correlation.clone());
        problem.trace_id = trace_id;
        let mut rebuilt = problem.into_response();
        for (name, value) in parts.headers.iter() {
            if name == header::CONTENT_TYPE || name == header::CONTENT_LENGTH {
                continue;
            }
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
        *rebuilt.status_mut() = parts.status;
        response = rebuilt;
    }
    if !response.headers().contains_key("x-correlation-id")
        && let Ok(value) = HeaderValue::from_str(&correlation)
    {
        response.headers_mut().insert("x-correlation-id", value);
    }
    protect_from_caches_and_sniffing(&mut response, personal);
    response
}

/// Whether the answer to `request` may carry personal data: every authenticated request, and
/// every route under `/api/v1` except the public OpenAPI document.
fn carries_personal_data(request: &Request) -> bool {
    let path = request.uri().path();
    request.headers().contains_key(header::AUTHORIZATION)
        || (path.starts_with("/api/v1/") && path != crate::OPENAPI_PATH)
}

/// OWASP's REST headers: no answer is content-sniffed; no answer that may carry personal data,
/// and no problem, is stored by a browser or a shared cache.
fn protect_from_caches_and_sniffing(response: &mut Response, personal: bool) {
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let is_problem = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == problem::CONTENT_TYPE.as_bytes());
    if personal || is_problem {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
