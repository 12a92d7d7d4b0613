//! The order service: orders, their items and status history, and the orchestration of the
//! order saga (DESIGN §2). `run` starts it on a listener it is given, so tests and
//! `ordermesh up` run it in-process on any port.
//!
//! Modules point inward: [`grpc`] and [`saga`] (adapters) → [`app`] → [`domain`] (no I/O) ←
//! [`store`]; [`peers`] are the gRPC clients of customer-, product- and payment-svc.

pub mod app;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod peers;
pub mod saga;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use ordermesh_platform::auth::JwtValidator;
use ordermesh_platform::db::Database;
use ordermesh_platform::events::EventRuntime;
use ordermesh_platform::{ServiceConfig, Shutdown, grpc::GrpcServer};
use ordermesh_proto::order::order_service_server::OrderServiceServer;
use tokio::net::TcpListener;

/// Short name used in logs, configuration variables and the database schema.
pub const SERVICE: &str = "order";
/// Default gRPC port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 50053;

/// Serves the order service on `listener` until `shutdown` is triggered, with its saga
/// consumers running beside it.
pub async fn run(config: ServiceConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let db = Database::for_service(&config).await?;
    db.migrate(&store::migrations()).await?;
    let peers = Arc::new(peers::Peers::connect(&config)?);

    let mut runtime = EventRuntime::start(&config, &db, &shutdown).await?;
    runtime
        .consume("inventory-events", Arc::new(saga::InventoryHandler))
        .await?;
    // Charging waits out a payment-svc outage: many retries, short backoff steps.
    let payment_step = saga::PaymentStep {
        db: db.clone(),
        peers: peers.clone(),
    };
    runtime
        .consume_with(events::TOPIC, Arc::new(payment_step), |c| {
            c.max_deliver = 500;
            c.backoff = [200, 500, 1000, 2000, 5000].map(Duration::from_millis).to_vec();
        })
        .await?;

    let validator = JwtValidator::new(config.auth.clone());
    let server = GrpcServer::new(&config).with_auth(Arc::new(validator));
    let max = server.max_message_bytes();
    let api = OrderServiceServer::new(grpc::OrderApi::new(db.clone(), peers))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let ping = db.clone();
    let result = server
        .add_service(api)
        .readiness(move || async move { ping.ping().await })
        .serve(listener, shutdown)
        .await;
    runtime.join().await;
    db.close().await;
    result
}
