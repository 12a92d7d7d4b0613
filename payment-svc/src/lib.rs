//! The payment service: payments, their gateway transactions and refunds. `run` starts it on a
//! listener it is given, so tests and `ordermesh up` run it in-process on any port.
//!
//! Modules point inward: [`grpc`] (handlers) → [`service`] (use cases around the gateway) →
//! [`domain`] (types and rules, no I/O) ← [`store`] (PostgreSQL and SQLite) and [`events`]
//! (published `payment-events`, consumed `order-events`); [`gateway`] is the port to the
//! payment provider with its sandbox and HTTP adapters.

pub mod domain;
pub mod events;
pub mod gateway;
pub mod grpc;
pub mod service;
pub mod store;

use std::sync::Arc;

use ordermesh_platform::auth::JwtValidator;
use ordermesh_platform::db::Database;
use ordermesh_platform::events::EventRuntime;
use ordermesh_platform::{ServiceConfig, Shutdown, grpc::GrpcServer};
use ordermesh_proto::payment::payment_service_server::PaymentServiceServer;
use tokio::net::TcpListener;

use crate::gateway::{HttpGateway, HttpGatewayConfig, PaymentGateway, SandboxGateway};

/// Short name used in logs, configuration variables and the database schema.
pub const SERVICE: &str = "payment";
/// Default gRPC port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 50054;

/// The gateway of the environment: [`HttpGateway`] on `PAYMENT_GATEWAY_URL` (with
/// `PAYMENT_GATEWAY_API_KEY` as its bearer key, if set), else the [`SandboxGateway`].
pub fn gateway_from_env() -> anyhow::Result<Arc<dyn PaymentGateway>> {
    match std::env::var("PAYMENT_GATEWAY_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        Some(url) => {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "PAYMENT_GATEWAY_URL must be an http:// or https:// URL"
            );
            let mut config = HttpGatewayConfig::new(url);
            config.api_key = std::env::var("PAYMENT_GATEWAY_API_KEY").ok().filter(|k| !k.is_empty());
            Ok(Arc::new(HttpGateway::new(config)?))
        }
        None => {
            tracing::info!("PAYMENT_GATEWAY_URL not set: using the sandbox payment gateway");
            Ok(Arc::new(SandboxGateway::new()))
        }
    }
}

/// Serves the payment service on `listener` until `shutdown` is triggered, with the gateway of
/// the environment ([`gateway_from_env`]).
pub async fn run(config: ServiceConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let gateway = gateway_from_env()?;
    run_with_gateway(config, listener, shutdown, gateway).await
}

/// [`run`] with a gateway chosen by the caller (tests use fakes and counting wrappers).
pub async fn run_with_gateway(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: Shutdown,
    gateway: Arc<dyn PaymentGateway>,
) -> anyhow::Result<()> {
    let db = Database::for_service(&config).await?;
    db.migrate(&store::migrations()).await?;
    let payments = Arc::new(service::Payments::new(store::for_database(&db), gateway));
    // The relay and consumer stop with the service, or when the server ends on its own (an
    // error), without triggering the caller's shutdown (which `ordermesh up` shares).
    let events_shutdown = Shutdown::new();
    let linked = {
        let (outer, inner) = (shutdown.clone(), events_shutdown.clone());
        tokio::spawn(async move {
            outer.wait().await;
            inner.trigger();
        })
    };
    let mut runtime = EventRuntime::start(&config, &db, &events_shutdown).await?;
    runtime
        .consume(
            events::ORDER_EVENTS,
            Arc::new(events::OrderEventsHandler::new(payments.clone())),
        )
        .await?;
    let validator = JwtValidator::new(config.auth.clone());
    let server = GrpcServer::new(&config).with_auth(Arc::new(validator));
    let max = server.max_message_bytes();
    let api = PaymentServiceServer::new(grpc::PaymentApi::new(payments))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let ping = db.clone();
    let result = server
        .add_service(api)
        .readiness(move || async move { ping.ping().await })
        .serve(listener, shutdown.clone())
        .await;
    events_shutdown.trigger();
    linked.abort();
    runtime.join().await;
    db.close().await;
    result
}
