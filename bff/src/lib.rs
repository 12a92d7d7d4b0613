//! The backend-for-frontend (DESIGN §5): REST under `/api/v1` for the client and employee
//! portals, in front of the gRPC services.
//!
//! - [`config`]: `BffConfig::from_env` (surfaces, issuers, service URLs, limits, CORS);
//! - [`state`]: [`AppState`], what every handler shares;
//! - [`auth`] + [`policy`]: bearer-token validation, the role matrix (one table), the client's
//!   own customer;
//! - [`clients`]: one pooled channel per service (reads retry, writes do not);
//! - [`problem`]: RFC 9457 errors and the one gRPC → HTTP mapping;
//! - [`limits`], [`idempotency`]: per-principal rate limits and `Idempotency-Key` replay, in
//!   the shared cache;
//! - [`middleware`]: correlation ids, problem+json for every error, CORS, request timeout;
//! - [`routes`]: one module per resource; [`models`]: their JSON shapes, one module per
//!   resource; [`openapi`]: the generated OpenAPI 3.1 document;
//! - [`metrics`]: RED per route, open streams (the process's `/metrics`, `METRICS_ADDR`);
//! - [`stream`]: live notifications over SSE (stream tickets, bounded buffers, per-user cap,
//!   end on shutdown).

pub mod auth;
pub mod clients;
pub mod config;
pub mod extract;
pub mod feed;
pub mod idempotency;
pub mod limits;
pub mod metrics;
pub mod middleware;
pub mod models;
pub mod openapi;
pub mod policy;
pub mod problem;
pub mod product_tier;
pub mod routes;
pub mod state;
pub mod stream;
pub mod trace;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use axum::{Json, Router};
use ordermesh_platform::Shutdown;
use tokio::net::TcpListener;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

pub use config::{BffConfig, Surface, listen_addr};
pub use state::AppState;

/// Default HTTP port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 8080;

/// Path of the OpenAPI document.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

type Api = OpenApiRouter<Arc<AppState>>;

/// Adds a route, documented unless the surface does not serve it (employee-only routes on
/// `external`). Such a route is left out where another method of its path serves clients, so
/// the path answers 405 with an `Allow` of the clients' methods, as for any method it does not
/// have; a path only employees use is routed but not described, so that the guard answers 404
/// for it rather than a route with a parameter in the same place (`/products/stock` is not the
/// product `stock`).
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
            let paths: Vec<String> = route.1.paths.keys().cloned().collect();
            return paths
                .iter()
                .filter(|path| !policy::path_serves_clients(path))
                .fold(router, |router, path| router.route(path, route.2.clone()));
        }
    }
    router.routes(route)
}

/// The `/api/v1` routes of `surface` and their OpenAPI document.
pub fn api(surface: Surface) -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    use routes::{admin, analytics, audit, customers, gdpr, notifications, orders, payments, products};
    let mut router = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi());
    for route in [
        routes!(products::list),
        routes!(products::search),
        routes!(products::get),
        routes!(products::create),
        routes!(products::update),
        routes!(products::categories),
        routes!(products::create_category),
        routes!(products::stock),
        routes!(products::batch_stock),
        routes!(products::adjust_stock),
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
        routes!(gdpr::erase),
        routes!(gdpr::start_export),
        routes!(gdpr::get_export),
        routes!(gdpr::consents),
        routes!(gdpr::record_consent),
        routes!(payments::list),
        routes!(payments::create),
        routes!(payments::get),
        routes!(payments::refund),
        routes!(notifications::list),
        routes!(notifications::send),
        routes!(notifications::mark_read),
        routes!(notifications::mark_one_read),
        routes!(notifications::stream),
        routes!(notifications::stream_ticket),
        routes!(notifications::preferences),
        routes!(notifications::update_preferences),
        routes!(audit::logs),
        routes!(audit::record),
        routes!(gdpr::trail),
        routes!(analytics::summary),
        routes!(admin::system),
        routes!(admin::dead_letters),
        routes!(admin::replay),
        routes!(admin::discard),
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
    let mut doc = serde_json::to_value(&doc).expect("OpenAPI document serializes");
    openapi::complete(&mut doc, state.config.analytics_max_days);
    let doc = Arc::new(doc);
    let api = api.route_layer(from_fn_with_state(state.clone(), auth::guard));
    Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route(OPENAPI_PATH, get(move || async move { Json(doc.as_ref().clone()) }))
        .merge(api)
        .layer(from_fn_with_state(state.clone(), middleware::admin_networks))
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .layer(from_fn_with_state(state.clone(), middleware::timeout))
        .layer(middleware::cors(&state.config))
        .layer(axum::middleware::from_fn(middleware::finish))
        // Outermost: the status recorded is the one the client gets.
        .layer(from_fn_with_state(state.clone(), metrics::record))
        .with_state(state)
}

/// Serves the BFF on `listener` until `shutdown` is triggered, then drains open requests
/// (open notification streams end at once).
pub async fn run(config: BffConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, surface = ?config.surface, "BFF listening");
    let state = AppState::new(config, shutdown.clone()).await?;
    let https = state.config.https.clone();
    let state = Arc::new(state);
    let stop = async move { shutdown.wait().await };
    if let Some(https) = https {
        let listener = ordermesh_platform::mesh::tls::TlsListener::new(listener, &https)?;
        // A tap that does nothing: it gives the TLS listener axum's peer-address plumbing.
        let listener = axum::serve::ListenerExt::tap_io(listener, |_| {});
        axum::serve(listener, with_peer_address(router(state)))
            .with_graceful_shutdown(stop)
            .await?;
        return Ok(());
    }
    // No Nagle: an answer written in pieces must not wait for the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, with_peer_address(router(state)))
        .with_graceful_shutdown(stop)
        .await?;
    Ok(())
}

/// The router, told each connection's peer address (for `BFF_ADMIN_ALLOWED_CIDRS`).
fn with_peer_address(
    router: Router,
) -> axum::extract::connect_info::IntoMakeServiceWithConnectInfo<Router, std::net::SocketAddr> {
    router.into_make_service_with_connect_info::<std::net::SocketAddr>()
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
