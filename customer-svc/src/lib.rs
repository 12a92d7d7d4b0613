//! The customer service: profiles, identity links, preferences and consents. `run` starts it
//! on a listener it is given, so tests and `ordermesh up` run it in-process on any port.
//!
//! Modules point inward: [`grpc`] (handlers) → [`domain`] (types and rules, no I/O) ←
//! [`store`] (PostgreSQL and SQLite).

pub mod domain;
pub mod grpc;
pub mod store;

use std::sync::Arc;

use ordermesh_platform::auth::JwtValidator;
use ordermesh_platform::db::Database;
use ordermesh_platform::{ServiceConfig, Shutdown, grpc::GrpcServer};
use ordermesh_proto::customer::customer_service_server::CustomerServiceServer;
use tokio::net::TcpListener;

/// Short name used in logs, configuration variables and the database schema.
pub const SERVICE: &str = "customer";
/// Default gRPC port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 50052;

/// Serves the customer service on `listener` until `shutdown` is triggered.
pub async fn run(config: ServiceConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let db = Database::for_service(&config).await?;
    db.migrate(&store::migrations()).await?;
    let store = store::for_database(&db);
    let validator = JwtValidator::new(config.auth.clone());
    let server = GrpcServer::new(&config).with_auth(Arc::new(validator));
    let max = server.max_message_bytes();
    let api = CustomerServiceServer::new(grpc::CustomerApi::new(store))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let ping = db.clone();
    let result = server
        .add_service(api)
        .readiness(move || async move { ping.ping().await })
        .serve(listener, shutdown)
        .await;
    db.close().await;
    result
}
