//! The audit service: an append-only, hash-chained audit log and GDPR trail. `run` starts it on a
//! listener it is given, so tests and `ordermesh up` run it in-process on any port.
//!
//! Modules point inward: [`grpc`] (handlers) → [`domain`] (entries, canonical encoding, hash
//! chain, PII rules; no I/O) ← [`store`] (PostgreSQL and SQLite) and [`events`] (one durable
//! consumer per topic, every topic; one entry per event); [`convert`] holds the proto forms.

pub mod convert;
pub mod domain;
pub mod events;
pub mod gdpr;
pub mod grpc;
pub mod housekeeping;
pub mod store;

use std::sync::Arc;

use ordermesh_platform::events::topics;
use ordermesh_platform::{Listen, ServiceConfig, ServiceHost, Shutdown};
use ordermesh_proto::audit::audit_service_server::AuditServiceServer;

/// Short name used in logs, configuration variables and the database schema.
pub const SERVICE: &str = "audit";
/// Default gRPC port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 50055;
/// The service's name as a source and actor.
pub const SOURCE: &str = "audit-svc";
/// Lanes of each topic's consumer. Appends are serialized on one chain anyway, so a few lanes
/// per topic suffice; this also keeps the waiting writers (6 topics x lanes) below the
/// connection pool's size.
const CONSUMER_LANES: usize = 2;

/// Serves the audit service on `listen` until `shutdown` is triggered.
pub async fn run(config: ServiceConfig, listen: Listen, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut host = ServiceHost::start(config, listen, store::migrations(), &shutdown).await?;
    let store = store::Store::new(host.db());
    // Raw consumers: the audit log records every event, also of types this build does not know.
    let recorder = Arc::new(events::AuditRecorder::new(store.clone()));
    for topic in topics::ALL {
        host.consume_raw(topic, recorder.clone(), |c| c.lanes = CONSUMER_LANES)
            .await?;
    }
    host.export_personal_data(gdpr::AuditTrail::new(store.clone()));
    host.serve(AuditServiceServer::new(grpc::AuditApi::new(store))).await
}
