//! The order service: orders, their items and status history, and the orchestration of the
//! order saga (DESIGN §2). `run` starts it on a listener it is given, so tests and
//! `ordermesh up` run it in-process on any port.
//!
//! Modules point inward: [`grpc`] and [`saga`] (adapters, with [`convert`] and [`events`] for
//! the generated forms) → [`app`] → [`domain`] (no I/O) ← [`store`]; [`peers`] are the gRPC
//! clients of customer-, product- and payment-svc.

pub mod app;
pub mod convert;
pub mod domain;
pub mod events;
pub mod gdpr;
pub mod grpc;
pub mod housekeeping;
pub mod peers;
pub mod saga;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use ordermesh_platform::{Listen, ServiceConfig, ServiceHost, Shutdown};
use ordermesh_proto::event_types::{InventoryEvent, OrderEvent};
use ordermesh_proto::order::order_service_server::OrderServiceServer;

/// Short name used in logs, configuration variables and the database schema.
pub const SERVICE: &str = "order";
/// Default gRPC port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 50053;

/// Serves the order service on `listen` until `shutdown` is triggered, with its saga
/// consumers running beside it.
pub async fn run(config: ServiceConfig, listen: Listen, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut host = ServiceHost::start(config, listen, store::migrations(), &shutdown).await?;
    let store = store::Store::new(host.db());
    let peers = Arc::new(peers::Peers::connect(host.config())?);
    host.consume::<InventoryEvent, _>(saga::InventoryHandler::new(store.clone()))
        .await?;
    // Charging waits out a payment-svc outage: many retries, short backoff steps. Each charge
    // waits for payment-svc (and its gateway) holding no transaction, so more lanes put more
    // charges in flight: with the default 8, charging fell behind intake under load.
    host.consume_with::<OrderEvent, _>(saga::PaymentStep::new(store.clone(), peers.clone()), |c| {
        c.lanes = 32;
        c.max_deliver = 500;
        c.backoff = [200, 500, 1000, 2000, 5000].map(Duration::from_millis).to_vec();
    })
    .await?;
    // The analytics rollups lag the writes by at most this (a read folds first anyway).
    let folder = store.clone();
    host.every("fold analytics rollups", Duration::from_secs(1), move || {
        let store = folder.clone();
        async move { Ok(store.fold_rollups().await.map(drop)?) }
    });
    let personal_data = gdpr::OrderPersonalData::new(store.clone());
    host.take_part_in_erasures(personal_data.clone()).await?;
    host.export_personal_data(personal_data);
    host.serve(OrderServiceServer::new(grpc::OrderApi::new(store, peers)))
        .await
}
