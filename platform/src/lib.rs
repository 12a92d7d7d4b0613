//! Shared runtime of every ordermesh service. Services depend on this crate; it never depends on
//! a service. Each concern lives in one module so the six services do not copy it.

pub mod actor;
pub mod analytics;
pub mod auth;
pub mod backing;
pub mod cache;
pub mod client;
pub mod config;
pub mod convert;
pub mod crash;
pub mod db;
pub mod error;
pub mod events;
pub mod gdpr;
pub mod grpc;
pub mod host;
pub mod housekeeping;
pub mod launch;
pub mod mesh;
pub mod metrics;
pub mod ops;
pub mod pagination;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validate;

pub use actor::{Actor, ActorKind, Origin};
pub use cache::{Cache, CacheStatsSnapshot};
pub use config::{ConfigError, Env, PeerUrls, ServiceConfig};
pub use db::{StoreError, StoreResult};
pub use error::{FieldViolation, ServiceError, Violations};
pub use host::{Listen, ServiceHost};
pub use shutdown::Shutdown;

/// Installs the process-wide rustls crypto provider (ring). reqwest is built without a default
/// provider, so this must run before the first HTTPS client is made; calling it twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
