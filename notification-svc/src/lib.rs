//! The notification service: notifications of customers and employee role groups, created from
//! order, payment and notification events and by employees; read state and preferences; live
//! delivery with gap-free resume (`Subscribe`). `run` starts it on a listener it is given, so
//! tests and `ordermesh up` run it in-process on any port.
//!
//! Modules point inward: [`grpc`] and [`events`] (adapters) → [`domain`] (no I/O) ← [`store`];
//! [`live`] is the cross-replica live feed (NATS core subject, or in-process broadcast).
//! Ids and resume: see [`domain`]; who sees what and the Subscribe protocol: see [`grpc`]; the
//! live fan-out: see [`live`].

pub mod domain;
pub mod events;
pub mod grpc;
pub mod live;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use ordermesh_platform::auth::JwtValidator;
use ordermesh_platform::client::{ClientConfig, channel};
use ordermesh_platform::db::Database;
use ordermesh_platform::events::EventRuntime;
use ordermesh_platform::{Env, ServiceConfig, Shutdown, grpc::GrpcServer};
use ordermesh_proto::customer::customer_service_client::CustomerServiceClient;
use ordermesh_proto::notification::notification_service_server::NotificationServiceServer;
use tokio::net::TcpListener;

/// Short name used in logs, configuration variables and the database schema.
pub const SERVICE: &str = "notification";
/// Default gRPC port (DESIGN §8).
pub const DEFAULT_PORT: u16 = 50056;

/// Tunables of the live delivery.
#[derive(Debug, Clone)]
pub struct Options {
    /// Heartbeat after this long without a message on a Subscribe stream
    /// (`NOTIFICATION_HEARTBEAT_SECONDS`, default 15).
    pub heartbeat: Duration,
    /// Capacity of the instance's live broadcast; a stream further behind than this ends with
    /// RESOURCE_EXHAUSTED (`NOTIFICATION_LIVE_BUFFER`, default 1024).
    pub live_buffer: usize,
    /// Messages buffered per stream before it waits for its client (`NOTIFICATION_STREAM_BUFFER`,
    /// default 64).
    pub stream_buffer: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            live_buffer: 1024,
            stream_buffer: 64,
        }
    }
}

impl Options {
    /// Reads the `NOTIFICATION_*` variables (defaults when absent).
    pub fn from_env(env: &Env) -> anyhow::Result<Self> {
        let defaults = Self::default();
        let heartbeat = env.seconds_or("NOTIFICATION_HEARTBEAT_SECONDS", defaults.heartbeat.as_secs())?;
        anyhow::ensure!(
            !heartbeat.is_zero(),
            "NOTIFICATION_HEARTBEAT_SECONDS must be at least 1"
        );
        Ok(Self {
            heartbeat,
            live_buffer: env.parse_or("NOTIFICATION_LIVE_BUFFER", defaults.live_buffer)?,
            stream_buffer: env.parse_or("NOTIFICATION_STREAM_BUFFER", defaults.stream_buffer)?,
        })
    }
}

/// The NATS core subject of the live feed.
pub fn live_subject(config: &ServiceConfig) -> String {
    format!("{}.live.notifications", config.events.subject_prefix)
}

/// Serves the notification service on `listener` until `shutdown` is triggered, with options
/// from the environment.
pub async fn run(config: ServiceConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let options = Options::from_env(&Env::from_process())?;
    run_with(config, options, listener, shutdown).await
}

/// [`run`] with explicit [`Options`].
pub async fn run_with(
    config: ServiceConfig,
    options: Options,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let db = Database::for_service(&config).await?;
    db.migrate(&store::migrations()).await?;

    let nats = match &config.nats_url {
        Some(url) => Some((async_nats::connect(url.as_str()).await?, live_subject(&config))),
        None => None,
    };
    let hub = live::LiveHub::start(db.clone(), nats, options.live_buffer, shutdown.clone()).await?;

    let mut runtime = EventRuntime::start(&config, &db, &shutdown).await?;
    for topic in events::CONSUMED {
        runtime
            .consume(topic, Arc::new(events::NotificationHandler { hub: hub.clone() }))
            .await?;
    }

    let (customer_channel, _) = channel(&ClientConfig::new("customer-svc", config.peers.customer.clone()))?;
    let validator = JwtValidator::new(config.auth.clone());
    let server = GrpcServer::new(&config).with_auth(Arc::new(validator));
    let max = server.max_message_bytes();
    let api = grpc::NotificationApi::new(
        db.clone(),
        hub,
        CustomerServiceClient::new(customer_channel),
        grpc::ApiOptions {
            heartbeat: options.heartbeat,
            stream_buffer: options.stream_buffer,
        },
        shutdown.clone(),
    );
    let api = NotificationServiceServer::new(api)
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
