//! The backend-for-frontend. For now it serves its liveness probe; the REST and SSE routes of
//! DESIGN §5 are built on top of this router.

use axum::{Json, Router, routing::get};
use ordermesh_platform::Shutdown;
use tokio::net::TcpListener;

/// Default HTTP port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 8080;

pub fn router() -> Router {
    Router::new().route("/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
}

/// Serves the BFF on `listener` until `shutdown` is triggered, then drains open requests.
pub async fn run(listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "BFF listening");
    axum::serve(listener, router())
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await?;
    Ok(())
}
