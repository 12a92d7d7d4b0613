//! The customer service: profiles, identity links, preferences and consents. `run` starts it
//! on a listener it is given, so tests and `ordermesh up` run it in-process on any port.
//!
//! Modules point inward: [`grpc`] (handlers; [`convert`] for the generated types) → [`domain`]
//! (types and rules, no I/O) ← [`store`] (PostgreSQL or SQLite), which publishes [`events`] on
//! `customer-events` and `gdpr-events` through the outbox, in the transaction of each write.
//! GDPR: [`export`] builds export bundles in the background from every service's part; an
//! erasure completes when [`events::ErasureConfirmations`] has heard from every participant.

pub mod convert;
pub mod domain;
pub mod events;
pub mod export;
pub mod grpc;
pub mod housekeeping;
pub mod store;

use ordermesh_platform::{Listen, ServiceConfig, ServiceHost, Shutdown};
use ordermesh_proto::customer::customer_service_server::CustomerServiceServer;
use ordermesh_proto::event_types::{GdprEvent, OrderEvent};

/// Short name used in logs, configuration variables and the database schema.
pub const SERVICE: &str = "customer";
/// Default gRPC port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 50052;

/// Serves the customer service on `listen` until `shutdown` is triggered.
pub async fn run(config: ServiceConfig, listen: Listen, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut host = ServiceHost::start(config, listen, store::migrations(), &shutdown).await?;
    let store = store::Store::new(host.db());
    // Erasures are rare: one lane.
    host.consume_with::<GdprEvent, _>(events::ErasureConfirmations::new(store.clone()), |c| c.lanes = 1)
        .await?;
    host.consume::<OrderEvent, _>(events::ActivityTracker::new(store.clone()))
        .await?;
    let wake = export::ExportWake::default();
    let exporter = export::Exporter::new(store.clone(), host.config())?.spawn(wake.clone(), host.shutdown().clone());
    let served = host
        .serve(CustomerServiceServer::new(grpc::CustomerApi::new(store, wake)))
        .await;
    exporter.abort();
    served
}
