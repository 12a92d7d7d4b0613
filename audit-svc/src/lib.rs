//! The audit service: an append-only, hash-chained audit log and GDPR trail. `run` starts it on a
//! listener it is given, so tests and `ordermesh up` run it in-process on any port.
//!
//! Modules point inward: [`grpc`] (handlers) → [`domain`] (entries, canonical encoding, hash
//! chain, PII rules; no I/O) ← [`store`] (PostgreSQL and SQLite) and [`events`] (one durable
//! consumer per topic, every topic; one entry per event).

pub mod domain;
pub mod events;
pub mod grpc;
pub mod store;

use std::sync::Arc;

use ordermesh_platform::auth::JwtValidator;
use ordermesh_platform::db::Database;
use ordermesh_platform::events::EventRuntime;
use ordermesh_platform::{ServiceConfig, Shutdown, grpc::GrpcServer};
use ordermesh_proto::audit::audit_service_server::AuditServiceServer;
use tokio::net::TcpListener;

/// Short name used in logs, configuration variables and the database schema.
pub const SERVICE: &str = "audit";
/// Default gRPC port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 50055;
/// The service's name as a source and actor.
pub const SOURCE: &str = "audit-svc";
/// Lanes of each topic's consumer.
const CONSUMER_LANES: usize = 2;

/// Serves the audit service on `listener` until `shutdown` is triggered.
pub async fn run(config: ServiceConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let db = Database::for_service(&config).await?;
    db.migrate(&store::migrations()).await?;
    // The consumers stop with the service, or when the server ends on its own (an error),
    // without triggering the caller's shutdown (which `ordermesh up` shares).
    let events_shutdown = Shutdown::new();
    let linked = {
        let (outer, inner) = (shutdown.clone(), events_shutdown.clone());
        tokio::spawn(async move {
            outer.wait().await;
            inner.trigger();
        })
    };
    let mut runtime = EventRuntime::start(&config, &db, &events_shutdown).await?;
    let recorder = events::AuditRecorder::new();
    // Appends are serialized on one chain anyway, so a few lanes per topic suffice; this also keeps
    // the waiting writers (6 topics x lanes) below the connection pool's size.
    for topic in events::TOPICS {
        runtime
            .consume_with(topic, recorder.clone(), |c| c.lanes = CONSUMER_LANES)
            .await?;
    }
    let validator = JwtValidator::new(config.auth.clone());
    let server = GrpcServer::new(&config).with_auth(Arc::new(validator));
    let max = server.max_message_bytes();
    let api = AuditServiceServer::new(grpc::AuditApi::new(db.clone()))
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
