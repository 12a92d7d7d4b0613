//! The product service: catalogue, categories and inventory. `run` starts it on a listener it
//! is given, so tests and `ordermesh up` run it in-process on any port.
//!
//! Modules point inward: [`grpc`] (handlers) → [`domain`] (types and rules, no I/O) ←
//! [`store`] (PostgreSQL and SQLite). [`events`] is the service's part of the order saga (the
//! `order-events` consumer) and builds the events the store enqueues in its transactions.

pub mod domain;
pub mod events;
pub mod grpc;
pub mod store;

use std::sync::Arc;

use ordermesh_platform::auth::JwtValidator;
use ordermesh_platform::db::Database;
use ordermesh_platform::events::EventRuntime;
use ordermesh_platform::{Cache, ServiceConfig, Shutdown, grpc::GrpcServer};
use ordermesh_proto::product::product_service_server::ProductServiceServer;
use tokio::net::TcpListener;

/// Short name used in logs, configuration variables and the database schema.
pub const SERVICE: &str = "product";
/// Default gRPC port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 50051;

/// Serves the product service on `listener` until `shutdown` is triggered. The cache is Redis
/// when `REDIS_URL` is set, else in-memory; its keys start with `ordermesh:product:`.
pub async fn run(config: ServiceConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let cache = Cache::connect(config.redis_url.as_deref(), format!("ordermesh:{SERVICE}:")).await?;
    run_with_cache(config, listener, shutdown, cache).await
}

/// [`run`] with a cache chosen by the caller (tests use their own key prefix and read its
/// counters).
pub async fn run_with_cache(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: Shutdown,
    cache: Cache,
) -> anyhow::Result<()> {
    let db = Database::for_service(&config).await?;
    db.migrate(&store::migrations()).await?;
    let store = store::for_database(&db);
    // The outbox relay and the saga consumer (DESIGN §3); they stop with `shutdown`.
    let mut events = EventRuntime::start(&config, &db, &shutdown).await?;
    events
        .consume(events::ORDER_EVENTS, Arc::new(events::OrderEventsHandler))
        .await?;
    let validator = JwtValidator::new(config.auth.clone());
    let server = GrpcServer::new(&config).with_auth(Arc::new(validator));
    let max = server.max_message_bytes();
    let api = ProductServiceServer::new(grpc::ProductApi::new(store, cache))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let ping = db.clone();
    let result = server
        .add_service(api)
        .readiness(move || async move { ping.ping().await })
        .serve(listener, shutdown.clone())
        .await;
    // The server returns once shutdown was triggered (or failed to start): make sure the event
    // tasks stop too, and let in-flight events finish before the pool closes.
    shutdown.trigger();
    events.join().await;
    db.close().await;
    result
}
