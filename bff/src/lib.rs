//! The backend-for-frontend (DESIGN §5): REST under `/api/v1` for the client and employee
//! portals, in front of the gRPC services.
//!
//! - [`config`]: `BffConfig::from_env` (surfaces, issuers, service URLs, limits, CORS);
//! - [`auth`] + [`policy`]: bearer-token validation, the role matrix (one table), the client's
//!   own customer;
//! - [`clients`]: one pooled channel per service (reads retry, writes do not);
//! - [`problem`]: RFC 9457 errors and the one gRPC → HTTP mapping;
//! - [`limits`], [`idempotency`]: per-principal rate limits and `Idempotency-Key` replay, in
//!   the shared cache;
//! - [`routes`]: one module per resource; [`openapi`]: the generated OpenAPI 3.1 document;
//! - [`stream`]: live notifications over SSE (stream tickets, bounded buffers, per-user cap,
//!   end on shutdown).

pub mod auth;
pub mod clients;
pub mod config;
pub mod extract;
pub mod idempotency;
pub mod limits;
pub mod models;
pub mod openapi;
pub mod policy;
pub mod problem;
pub mod routes;
pub mod stream;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ordermesh_platform::auth::JwtValidator;
use ordermesh_platform::{Cache, Shutdown};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

pub use config::{BffConfig, Surface};

use crate::auth::CorrelationId;
use crate::problem::Problem;

/// Default HTTP port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 8080;

/// Path of the OpenAPI document.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// What every handler shares.
pub struct AppState {
    pub config: BffConfig,
    pub validator: JwtValidator,
    pub clients: clients::Clients,
    /// Idempotency records and customer lookups.
    pub cache: Cache,
    pub limiter: limits::RateLimiter,
    /// Open notification streams per principal.
    pub streams: Arc<stream::StreamSlots>,
    /// Triggered when the BFF shuts down: open notification streams end.
    pub shutdown: Shutdown,
}

impl AppState {
    pub async fn new(config: BffConfig) -> anyhow::Result<Self> {
        let cache = Cache::connect(config.redis_url.as_deref(), config.cache_prefix.clone()).await?;
        let limiter = limits::RateLimiter::new(
            cache.with_prefix(format!("{}rl:", config.cache_prefix)),
            config.rate_limits.clone(),
        );
        Ok(Self {
            validator: JwtValidator::new(config.auth.clone()),
            clients: clients::Clients::new(&config.peers, config.grpc_timeout)?,
            cache,
            limiter,
            streams: stream::StreamSlots::new(config.streams.max_per_principal),
            shutdown: Shutdown::new(),
            config,
        })
    }
}

type Api = OpenApiRouter<Arc<AppState>>;

/// Adds a route unless the surface does not serve it (employee-only routes on `external`).
fn add(router: Api, surface: Surface, route: UtoipaMethodRouter<Arc<AppState>>) -> Api {
    if !surface.serves_employee_routes() {
        let reachable = route.1.paths.iter().all(|(path, item)| {
            [
                ("GET", item.get.is_some()),
                ("PUT", item.put.is_some()),
                ("POST", item.post.is_some()),
                ("DELETE", item.delete.is_some()),
            ]
            .into_iter()
            .filter(|(_, present)| *present)
            .all(|(method, _)| policy::client_reachable(method, path))
        });
        if !reachable {
            return router;
        }
    }
    router.routes(route)
}

/// The `/api/v1` routes of `surface` and their OpenAPI document.
pub fn api(surface: Surface) -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    use routes::{audit, customers, notifications, orders, payments, products};
    let mut router = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi());
    for route in [
        routes!(products::list),
        routes!(products::search),
        routes!(products::get),
        routes!(products::create),
        routes!(products::update),
        routes!(orders::create),
        routes!(orders::list),
        routes!(orders::get),
        routes!(orders::cancel),
        routes!(orders::update_status),
        routes!(customers::me),
        routes!(customers::create_me),
        routes!(customers::list),
        routes!(customers::get),
        routes!(customers::update),
        routes!(customers::orders),
        routes!(payments::list),
        routes!(payments::create),
        routes!(payments::get),
        routes!(payments::refund),
        routes!(notifications::list),
        routes!(notifications::send),
        routes!(notifications::mark_read),
        routes!(notifications::stream),
        routes!(notifications::stream_ticket),
        routes!(audit::logs),
    ] {
        router = add(router, surface, route);
    }
    let (router, mut doc) = router.split_for_parts();
    openapi::ProblemResponses.modify(&mut doc);
    (router, doc)
}

/// The whole BFF: `/healthz`, `/readyz`, the OpenAPI document and the `/api/v1` routes behind
/// the auth guard, with correlation ids, CORS, body limit and request timeout.
pub fn router(state: Arc<AppState>) -> Router {
    let (api, doc) = api(state.config.surface);
    let doc = Arc::new(serde_json::to_value(&doc).expect("OpenAPI document serializes"));
    let api = api.route_layer(from_fn_with_state(state.clone(), auth::guard));
    Router::new()
        .route("/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route(OPENAPI_PATH, get(move || async move { Json(doc.as_ref().clone()) }))
        .merge(api)
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .layer(from_fn_with_state(state.clone(), timeout))
        .layer(cors(&state.config))
        .layer(from_fn_with_state(state.clone(), finish))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let health = state.clients.health().await;
    let ready = health.iter().all(|(_, serving)| *serving);
    let services: serde_json::Map<String, serde_json::Value> = health
        .into_iter()
        .map(|(name, serving)| {
            (
                name.to_owned(),
                (if serving { "serving" } else { "unavailable" }).into(),
            )
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({"status": if ready { "ready" } else { "not-ready" }, "services": services});
    (status, Json(body)).into_response()
}

fn cors(config: &BffConfig) -> CorsLayer {
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

/// Upper bound on handling one request: 504 problem after `BFF_REQUEST_TIMEOUT_SECONDS`.
async fn timeout(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
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
/// answers included; on the external surface an unrouted method is 404, like an unrouted path).
async fn finish(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let correlation = incoming_correlation(&request).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    request.extensions_mut().insert(CorrelationId(correlation.clone()));
    let uri = request.uri().to_string();
    let mut response = if uri.to_ascii_lowercase().contains("%00") {
        Problem::bad_request("the URL must not contain NUL characters").into_response()
    } else {
        next.run(request).await
    };
    let status = response.status();
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
                StatusCode::METHOD_NOT_ALLOWED if state.config.surface == Surface::External => {
                    Problem::not_found("no such resource")
                }
                StatusCode::METHOD_NOT_ALLOWED => Problem::new(status, "method-not-allowed", "Method not allowed"),
                StatusCode::PAYLOAD_TOO_LARGE => extract::payload_too_large(),
                _ => Problem::new(status, "http-error", status.canonical_reason().unwrap_or("Error")),
            }
        };
        problem.correlation_id = Some(correlation.clone());
        let external_405 = status == StatusCode::METHOD_NOT_ALLOWED && problem.status == 404;
        let mut rebuilt = problem.into_response();
        for (name, value) in parts.headers.iter() {
            if name == header::CONTENT_TYPE || name == header::CONTENT_LENGTH || (external_405 && name == header::ALLOW)
            {
                continue;
            }
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
        *rebuilt.status_mut() = if external_405 {
            StatusCode::NOT_FOUND
        } else {
            parts.status
        };
        response = rebuilt;
    }
    if !response.headers().contains_key("x-correlation-id")
        && let Ok(value) = HeaderValue::from_str(&correlation)
    {
        response.headers_mut().insert("x-correlation-id", value);
    }
    response
}

/// Serves the BFF on `listener` until `shutdown` is triggered, then drains open requests
/// (open notification streams end at once).
pub async fn run(config: BffConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, surface = ?config.surface, "BFF listening");
    let mut state = AppState::new(config).await?;
    state.shutdown = shutdown.clone();
    let state = Arc::new(state);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operations(surface: Surface) -> Vec<(String, String)> {
        let (_, doc) = api(surface);
        let doc = serde_json::to_value(doc).unwrap();
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in ["get", "put", "post", "delete", "patch"] {
                if item.get(method).is_some() {
                    out.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn every_route_has_a_rule_and_every_rule_a_route() {
        let mut rules: Vec<(String, String)> = policy::MATRIX
            .iter()
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect();
        rules.sort();
        assert_eq!(operations(Surface::Both), rules);
        assert_eq!(operations(Surface::Internal), rules);
        let mut external: Vec<(String, String)> = policy::MATRIX
            .iter()
            .filter(|r| r.clients)
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect();
        external.sort();
        assert_eq!(operations(Surface::External), external);
    }

    #[test]
    fn the_document_is_openapi_3_1_with_bearer_and_problems() {
        let (_, doc) = api(Surface::Both);
        let doc = serde_json::to_value(doc).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        let op = &doc["paths"]["/api/v1/orders"]["post"];
        assert!(op["responses"]["202"].is_object());
        assert!(op["responses"]["429"]["content"]["application/problem+json"].is_object());
        let stream = &doc["paths"]["/api/v1/notifications/stream"]["get"];
        assert!(
            stream["responses"]["200"]["content"]["text/event-stream"].is_object(),
            "{stream}"
        );
        let params: Vec<&str> = stream["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(params.contains(&"ticket") && params.contains(&"lastEventId") && params.contains(&"Last-Event-ID"));
        let ticket = &doc["paths"]["/api/v1/notifications/stream-ticket"]["post"];
        assert!(ticket["responses"]["200"]["content"]["application/json"].is_object());
    }
}
