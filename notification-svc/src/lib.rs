//! The notification service: notifications of customers and employee role groups, created from
//! order, payment and notification events and by employees; read state and preferences; live
//! delivery with gap-free resume (`Subscribe`). `run` starts it on a listener it is given, so
//! tests and `ordermesh up` run it in-process on any port.
//!
//! Modules point inward: [`grpc`] and [`events`] (adapters, with [`convert`] for the wire forms)
//! → [`domain`] (no I/O) ← [`store`]; [`live`] is the cross-replica live feed, fed by commit
//! hooks. Ids and resume: see [`domain`]; who sees what and the Subscribe protocol: see
//! [`grpc`]; the live fan-out: see [`live`].

pub mod convert;
pub mod domain;
pub mod events;
pub mod gdpr;
pub mod grpc;
pub mod housekeeping;
pub mod live;
pub mod store;

use ordermesh_platform::client::channel;
use ordermesh_platform::mesh::Workload;
use ordermesh_platform::{Env, Listen, ServiceConfig, ServiceHost, Shutdown};
use ordermesh_proto::customer::customer_service_client::CustomerServiceClient;
use ordermesh_proto::event_types::{InventoryEvent, NotificationEvent, OrderEvent, PaymentEvent};
use ordermesh_proto::notification::notification_service_server::NotificationServiceServer;

pub use live::Options;

/// Short name used in logs, configuration variables and the database schema.
pub const SERVICE: &str = "notification";
/// Default gRPC port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 50056;

/// Serves the notification service on `listen` until `shutdown` is triggered, with options
/// from the environment.
pub async fn run(config: ServiceConfig, listen: Listen, shutdown: Shutdown) -> anyhow::Result<()> {
    let options = Options::from_env(&Env::from_process())?;
    run_with(config, options, listen, shutdown).await
}

/// [`run`] with explicit [`Options`].
pub async fn run_with(
    config: ServiceConfig,
    options: Options,
    listen: Listen,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut host = ServiceHost::start(config, listen, store::migrations(), &shutdown).await?;
    let store = store::Store::new(host.db());
    let hub = live::LiveHub::start(host.config(), options.live_buffer, host.shutdown()).await?;
    let handler = events::NotificationHandler::new(store.clone(), hub.clone(), host.config().events.max_deliver);
    host.consume::<OrderEvent, _>(handler.clone()).await?;
    host.consume::<PaymentEvent, _>(handler.clone()).await?;
    // Only StockLow concerns it, and rarely: one lane.
    host.consume_with::<InventoryEvent, _>(handler.clone(), |c| c.lanes = 1)
        .await?;
    host.consume::<NotificationEvent, _>(handler).await?;
    let personal_data = gdpr::NotificationPersonalData::new(store.clone());
    host.take_part_in_erasures(personal_data.clone()).await?;
    host.export_personal_data(personal_data);
    let (customers, _) = channel(&host.config().client(Workload::Customer))?;
    let api = grpc::NotificationApi::new(
        store,
        hub,
        CustomerServiceClient::new(customers),
        options,
        host.shutdown().clone(),
    );
    host.serve(NotificationServiceServer::new(api)).await
}
