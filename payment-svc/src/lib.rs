//! The payment service: payments, their gateway transactions and refunds. `run` starts it on a
//! listener it is given (or an address), so tests and `ordermesh up` run it in-process on any
//! port.
//!
//! Modules point inward: [`grpc`] (handlers) → [`service`] (use cases around the gateway) →
//! [`domain`] (types and rules, no I/O) ← [`store`] (PostgreSQL and SQLite) and [`events`]
//! (published `payment-events`, consumed `order-events`); [`convert`] reads and writes the API's
//! messages; [`gateway`] is the port to the payment provider with its sandbox and HTTP adapters.

pub mod convert;
pub mod domain;
pub mod events;
pub mod gateway;
pub mod gdpr;
pub mod grpc;
pub mod service;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use ordermesh_platform::{Listen, ServiceConfig, ServiceHost, Shutdown};
use ordermesh_proto::event_types::OrderEvent;
use ordermesh_proto::payment::payment_service_server::PaymentServiceServer;

use crate::gateway::PaymentGateway;
use crate::store::Store;

/// Short name used in logs, configuration variables and the database schema.
pub const SERVICE: &str = "payment";
/// Default gRPC port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 50054;

/// Serves the payment service on `listen` until `shutdown` is triggered, with the gateway of
/// the environment ([`gateway::from_env`]).
pub async fn run(config: ServiceConfig, listen: Listen, shutdown: Shutdown) -> anyhow::Result<()> {
    let gateway = gateway::from_env(&ordermesh_platform::Env::from_process())?;
    run_with_gateway(config, listen, shutdown, gateway).await
}

/// [`run`] with a gateway chosen by the caller (tests use fakes and counting wrappers).
pub async fn run_with_gateway(
    config: ServiceConfig,
    listen: Listen,
    shutdown: Shutdown,
    gateway: Arc<dyn PaymentGateway>,
) -> anyhow::Result<()> {
    let mut host = ServiceHost::start(config, listen, store::migrations(), &shutdown).await?;
    let store = Store::new(host.db());
    // The revenue rollup lags the writes by at most this (a read folds first anyway).
    let folder = store.clone();
    host.every("fold the revenue rollup", Duration::from_secs(1), move || {
        let store = folder.clone();
        async move { Ok(store.fold_revenue().await.map(drop)?) }
    });
    let personal_data = gdpr::PaymentPersonalData::new(store.clone());
    host.take_part_in_erasures(personal_data.clone()).await?;
    host.export_personal_data(personal_data);
    let payments = Arc::new(service::Payments::new(store, gateway));
    host.consume::<OrderEvent, _>(events::OrderEventsHandler::new(payments.clone()))
        .await?;
    host.serve(PaymentServiceServer::new(grpc::PaymentApi::new(payments)))
        .await
}
