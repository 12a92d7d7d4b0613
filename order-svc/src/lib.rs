//! The order service: `run` starts it on a listener it is given, so tests and `ordermesh up`
//! run it in-process on any port.

pub mod domain;
pub mod store;

use ordermesh_platform::{ServiceConfig, Shutdown, grpc::GrpcServer};
use tokio::net::TcpListener;

/// Short name used in logs, configuration variables and the database schema.
pub const SERVICE: &str = "order";
/// Default gRPC port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 50053;

/// Serves the order service on `listener` until `shutdown` is triggered.
pub async fn run(config: ServiceConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    GrpcServer::new(&config).serve(listener, shutdown).await
}
