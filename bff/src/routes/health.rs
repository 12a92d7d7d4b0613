//! `/healthz` (the process is alive) and `/readyz` (200 or 503, with each service's gRPC
//! health), outside `/api/v1` and without authentication.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// `/healthz`: the process is alive.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `/readyz`: 200 when every service answers its gRPC health check, else 503; the body names
/// each service's state.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
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
