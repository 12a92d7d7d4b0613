//! The product service: catalogue, categories and inventory. `run` starts it on a listener it
//! is given, so tests and `ordermesh up` run it in-process on any port.
//!
//! Modules point inward: [`grpc`] (handlers) → [`domain`] (types and rules, no I/O) ←
//! [`store`] (PostgreSQL and SQLite). [`events`] is the service's part of the order saga (the
//! `order-events` consumer) and builds the events the store enqueues in its transactions;
//! [`convert`] gives the domain types their proto form for both.

pub mod convert;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod store;

use ordermesh_platform::{Cache, ConfigError, Env, Listen, ServiceConfig, ServiceHost, Shutdown};
use ordermesh_proto::event_types::OrderEvent;
use ordermesh_proto::product::product_service_server::ProductServiceServer;

/// Short name used in logs, configuration variables and the database schema.
pub const SERVICE: &str = "product";
/// Default gRPC port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 50051;

/// Serves the product service on `listen` until `shutdown` is triggered. The cache is Redis
/// when `REDIS_URL` is set, else in-memory; its keys start with `ordermesh:product:`.
pub async fn run(config: ServiceConfig, listen: Listen, shutdown: Shutdown) -> anyhow::Result<()> {
    let cache = Cache::connect(
        config.redis_url.as_deref(),
        config.redis_ca_file.as_deref(),
        format!("ordermesh:{SERVICE}:"),
    )
    .await?
    .metered("product-svc");
    run_with_cache(config, listen, shutdown, cache).await
}

/// [`run`] with a cache chosen by the caller (tests use their own key prefix and read its
/// counters).
pub async fn run_with_cache(
    config: ServiceConfig,
    listen: Listen,
    shutdown: Shutdown,
    cache: Cache,
) -> anyhow::Result<()> {
    let low_stock = low_stock_from_env(&Env::from_process())?;
    let mut host = ServiceHost::start(config, listen, store::migrations(), &shutdown).await?;
    let store = store::Store::with_low_stock(host.db(), low_stock);
    host.consume::<OrderEvent, _>(events::OrderEventsHandler { low_stock })
        .await?;
    host.serve(ProductServiceServer::new(grpc::ProductApi::new(store, cache)))
        .await
}

/// `LOW_STOCK_THRESHOLD` (default 5): a product with at most this many units available is low on
/// stock — clients see `low`, and the order managers are told when it gets there.
pub fn low_stock_from_env(env: &Env) -> Result<domain::LowStock, ConfigError> {
    let threshold: i64 = env.parse_or("LOW_STOCK_THRESHOLD", domain::LowStock::default().0)?;
    if !(0..=1_000_000).contains(&threshold) {
        return Err(ConfigError::new("LOW_STOCK_THRESHOLD", "must be 0 to 1000000"));
    }
    Ok(domain::LowStock(threshold))
}
