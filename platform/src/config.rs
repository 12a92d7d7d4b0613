//! Configuration from the environment, validated at start-up. Every error names the variable
//! that is wrong so an operator can fix it without reading code.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use std::sync::Arc;

use crate::auth::{AuthConfig, IssuerConfig, IssuerKind, ServiceCredentials};
use crate::client::ClientConfig;
use crate::mesh::Workload;
use crate::mesh::tls::WorkloadTls;
use crate::telemetry::{LogFormat, TelemetryConfig};

/// A configuration variable that is missing or cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub fn new(var: &str, reason: impl Into<String>) -> Self {
        Self {
            var: var.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A snapshot of environment variables. Tests build one from pairs instead of mutating the
/// process environment, which is shared by every test thread. It remembers every name asked
/// for, so a test can tell which variables the code reads (deployment manifests set no other).
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
    asked: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

impl Env {
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
            asked: Default::default(),
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self {
            vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            asked: Default::default(),
        }
    }

    /// The value of `name`, treating an empty value as absent.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned());
        self.vars.get(name).filter(|v| !v.trim().is_empty()).cloned()
    }

    /// Every variable asked for so far (through this snapshot or a clone of it).
    pub fn asked(&self) -> std::collections::BTreeSet<String> {
        self.asked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.optional(name)
            .ok_or_else(|| ConfigError::new(name, "is required but not set"))
    }

    pub fn parse<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.optional(name)
            .map(|raw| {
                raw.trim()
                    .parse::<T>()
                    .map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}")))
            })
            .transpose()
    }

    /// A comma-separated list of milliseconds (`200,1000,5000`), at least one, each at most an
    /// hour.
    pub fn millis_list(&self, name: &str) -> Result<Option<Vec<Duration>>, ConfigError> {
        let Some(raw) = self.optional(name) else {
            return Ok(None);
        };
        let millis: Result<Vec<u64>, _> = raw.split(',').map(|part| part.trim().parse::<u64>()).collect();
        match millis {
            Ok(millis) if !millis.is_empty() && millis.iter().all(|&m| m <= 3_600_000) => {
                Ok(Some(millis.into_iter().map(Duration::from_millis).collect()))
            }
            _ => Err(ConfigError::new(
                name,
                format!("must be comma-separated milliseconds (each at most 3600000), got {raw:?}"),
            )),
        }
    }

    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        Ok(self.parse(name)?.unwrap_or(default))
    }

    /// A URL whose scheme must be one of `schemes`.
    pub fn url(&self, name: &str, schemes: &[&str]) -> Result<Option<String>, ConfigError> {
        let Some(raw) = self.optional(name) else {
            return Ok(None);
        };
        let scheme = raw.split_once("://").map(|(s, _)| s).unwrap_or("");
        if schemes.contains(&scheme) {
            Ok(Some(raw))
        } else {
            Err(ConfigError::new(
                name,
                format!(
                    "scheme {scheme:?} is not supported (expected one of {})",
                    schemes.join(", ")
                ),
            ))
        }
    }

    /// A switch: `on`/`true`/`1` or `off`/`false`/`0`; `default` when unset.
    pub fn switch_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None => Ok(default),
            Some("on" | "true" | "1") => Ok(true),
            Some("off" | "false" | "0") => Ok(false),
            Some(other) => Err(ConfigError::new(name, format!("{other:?} is not on or off"))),
        }
    }

    pub fn seconds_or(&self, name: &str, default: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(self.parse_or(name, default)?))
    }
}

/// Everything a domain service needs to start. Built by [`ServiceConfig::from_env`].
#[derive(Clone)]
pub struct ServiceConfig {
    /// Short name, e.g. `product`; used for logs, schemas and default file names.
    pub service: &'static str,
    pub listen_addr: SocketAddr,
    /// `postgres://…` (production) or `sqlite://…` (embedded).
    pub database_url: String,
    /// Pool size per service instance (`DATABASE_MAX_CONNECTIONS`); the sum over all instances
    /// must stay below the server's `max_connections`.
    pub database_max_connections: u32,
    /// Absent → the in-process bus.
    pub nats_url: Option<String>,
    /// Absent → in-memory cache.
    pub redis_url: Option<String>,
    /// The CA of a `rediss://` server (`REDIS_CA_FILE`).
    pub redis_ca_file: Option<std::path::PathBuf>,
    pub auth: AuthConfig,
    /// Stream and subject naming (`NATS_SUBJECT_PREFIX`, `NATS_STREAM_PREFIX`; tests isolate by prefix).
    pub events: crate::events::EventsConfig,
    /// A bus to use instead of connecting one (tests and `ordermesh up` share one in-process bus).
    pub bus: Option<std::sync::Arc<dyn crate::events::EventBus>>,
    /// Where the other services are (`<NAME>_SVC_URL`, default `http://127.0.0.1:<its port>`).
    pub peers: PeerUrls,
    /// How this service authenticates its own calls to other services (`SERVICE_TOKEN_FILE`).
    pub credentials: ServiceCredentials,
    pub telemetry: TelemetryConfig,
    pub grpc: GrpcLimits,
    /// Mutual TLS without a mesh (`GRPC_TLS_*`): served with required client certificates and
    /// the call graph enforced, and used for every call to a peer.
    pub tls: Option<Arc<WorkloadTls>>,
}

impl ServiceConfig {
    /// The service's name as a peer and source, e.g. `order-svc`.
    pub fn service_name(&self) -> String {
        format!("{}-svc", self.service)
    }

    /// The service's workload in the call graph (`None` for a name that is not one of the six).
    pub fn workload(&self) -> Option<Workload> {
        Workload::of_service(self.service)
    }

    /// This service's client of `callee`: its address from [`PeerUrls`], this service's TLS,
    /// and its calls recorded under its workload.
    pub fn client(&self, callee: Workload) -> ClientConfig {
        let url = self.peers.url(callee).to_owned();
        match self.workload() {
            Some(caller) => ClientConfig::between(caller, callee, url, self.tls.clone()),
            None => ClientConfig {
                tls: self.tls.clone(),
                ..ClientConfig::new(callee.name(), url)
            },
        }
    }
}

/// Limits applied by the shared gRPC server.
#[derive(Debug, Clone)]
pub struct GrpcLimits {
    /// Upper bound on any request's handling time; a shorter client deadline wins.
    pub request_timeout: Duration,
    pub max_message_bytes: usize,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_message_bytes: 4 * 1024 * 1024,
        }
    }
}

/// gRPC addresses of the six services, as seen by a caller.
#[derive(Debug, Clone)]
pub struct PeerUrls {
    pub product: String,
    pub customer: String,
    pub order: String,
    pub payment: String,
    pub audit: String,
    pub notification: String,
}

impl PeerUrls {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = |name: &str, port: u16| -> Result<String, ConfigError> {
            Ok(env
                .url(&format!("{name}_SVC_URL"), &["http", "https"])?
                .unwrap_or_else(|| format!("http://127.0.0.1:{port}")))
        };
        Ok(Self {
            product: url("PRODUCT", 50051)?,
            customer: url("CUSTOMER", 50052)?,
            order: url("ORDER", 50053)?,
            payment: url("PAYMENT", 50054)?,
            audit: url("AUDIT", 50055)?,
            notification: url("NOTIFICATION", 50056)?,
        })
    }

    /// The address of `service` (one of the six).
    pub fn url(&self, service: Workload) -> &str {
        match service {
            Workload::Product => &self.product,
            Workload::Customer => &self.customer,
            Workload::Order => &self.order,
            Workload::Payment => &self.payment,
            Workload::Audit => &self.audit,
            Workload::Notification => &self.notification,
            other => panic!("{other} serves no gRPC"),
        }
    }
}

impl std::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The database URL may carry a password: only its scheme is shown.
        let scheme = self.database_url.split("://").next().unwrap_or_default();
        f.debug_struct("ServiceConfig")
            .field("service", &self.service)
            .field("listen_addr", &self.listen_addr)
            .field("database", &scheme)
            .field("nats", &self.nats_url.is_some())
            .field("redis", &self.redis_url.is_some())
            .field("auth", &self.auth)
            .field("events", &self.events)
            .field("shared_bus", &self.bus.is_some())
            .field("credentials", &self.credentials)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl ServiceConfig {
    /// Reads `<SERVICE>_ADDR` (or `GRPC_ADDR`), `DATABASE_URL`, `NATS_URL`, `REDIS_URL`, the
    /// `AUTH_*` issuers and the telemetry variables. `default_port` is the service's port of
    /// DESIGN §8.
    pub fn from_env(env: &Env, service: &'static str, default_port: u16) -> Result<Self, ConfigError> {
        let addr_var = format!("{}_ADDR", service.to_uppercase().replace('-', "_"));
        let listen_addr = match env.parse::<SocketAddr>(&addr_var)? {
            Some(addr) => addr,
            None => env.parse_or("GRPC_ADDR", SocketAddr::from(([0, 0, 0, 0], default_port)))?,
        };
        let database_url = env
            .url("DATABASE_URL", &["postgres", "postgresql", "sqlite"])?
            .unwrap_or_else(|| format!("sqlite://data/{service}.db"));
        crate::backing::check_database_url(env, &database_url)?;
        Ok(Self {
            service,
            listen_addr,
            database_url,
            database_max_connections: env
                .parse_or("DATABASE_MAX_CONNECTIONS", crate::db::DEFAULT_MAX_CONNECTIONS)?
                .max(1),
            nats_url: env.url("NATS_URL", &["nats", "tls", "ws", "wss"])?,
            redis_url: env.url("REDIS_URL", &["redis", "rediss"])?,
            redis_ca_file: crate::backing::redis_ca_from_env(env)?,
            auth: AuthConfig::from_env(env)?,
            events: {
                let mut events = crate::events::EventsConfig::default();
                if let Some(prefix) = env.optional("NATS_SUBJECT_PREFIX") {
                    events.subject_prefix = prefix;
                }
                if let Some(prefix) = env.optional("NATS_STREAM_PREFIX") {
                    events.stream_prefix = prefix;
                }
                events.publish = env.switch_or("EVENTS_PUBLISH", true)?;
                events.security = crate::backing::NatsSecurity::from_env(env)?;
                events.replicas = env.parse_or("NATS_STREAM_REPLICAS", 1)?;
                if !(1..=5).contains(&events.replicas) {
                    return Err(ConfigError::new("NATS_STREAM_REPLICAS", "must be 1 to 5"));
                }
                events.max_deliver = env.parse_or("EVENTS_MAX_DELIVER", events.max_deliver)?;
                if !(1..=10_000).contains(&events.max_deliver) {
                    return Err(ConfigError::new("EVENTS_MAX_DELIVER", "must be 1 to 10000"));
                }
                if let Some(backoff) = env.millis_list("EVENTS_RETRY_BACKOFF_MS")? {
                    events.retry_backoff = backoff;
                }
                events
            },
            bus: None,
            peers: PeerUrls::from_env(env)?,
            credentials: env
                .optional("SERVICE_TOKEN_FILE")
                .map(|path| ServiceCredentials::File(path.into()))
                .unwrap_or_default(),
            telemetry: TelemetryConfig::from_env(env, service)?,
            grpc: GrpcLimits {
                request_timeout: env.seconds_or("GRPC_REQUEST_TIMEOUT_SECONDS", 30)?,
                max_message_bytes: env.parse_or("GRPC_MAX_MESSAGE_BYTES", 4 * 1024 * 1024)?,
            },
            tls: match Workload::of_service(service) {
                Some(workload) => WorkloadTls::from_env(env, workload)?,
                None => None,
            },
        })
    }
}

impl AuthConfig {
    /// Issuers from `AUTH_{EMPLOYEE,CLIENT,SERVICE}_{ISSUER,AUDIENCE,JWKS_URL}`. An issuer
    /// without `_JWKS_URL` is resolved through OIDC discovery. `AUTH_LEEWAY_SECONDS` (default 60)
    /// and `AUTH_JWKS_REFETCH_COOLDOWN_SECONDS` (default 30) tune validation;
    /// `AUTH_TOKEN_CACHE_SIZE` (default 10000, 0 turns it off) bounds the verified tokens a
    /// process remembers.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut issuers = Vec::new();
        for (kind, prefix) in [
            (IssuerKind::Employee, "AUTH_EMPLOYEE"),
            (IssuerKind::Client, "AUTH_CLIENT"),
            (IssuerKind::Service, "AUTH_SERVICE"),
        ] {
            let issuer_var = format!("{prefix}_ISSUER");
            let Some(issuer) = env.url(&issuer_var, &["http", "https"])? else {
                continue;
            };
            let audience_var = format!("{prefix}_AUDIENCE");
            let audience = env.required(&audience_var)?;
            let jwks_url = env.url(&format!("{prefix}_JWKS_URL"), &["http", "https"])?;
            issuers.push(IssuerConfig {
                kind,
                issuer,
                audience,
                jwks_url,
            });
        }
        Ok(Self {
            issuers,
            leeway: env.seconds_or("AUTH_LEEWAY_SECONDS", 60)?,
            jwks_refetch_cooldown: env.seconds_or("AUTH_JWKS_REFETCH_COOLDOWN_SECONDS", 30)?,
            token_cache_size: env.parse_or("AUTH_TOKEN_CACHE_SIZE", AuthConfig::default().token_cache_size)?,
        })
    }
}

impl TelemetryConfig {
    /// `ORDERMESH_ENV=production` selects JSON logs unless `LOG_FORMAT` says otherwise;
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` turns on trace export; `OTEL_SERVICE_NAME` overrides the name.
    pub fn from_env(env: &Env, service: &str) -> Result<Self, ConfigError> {
        let production = match env.optional("ORDERMESH_ENV").as_deref() {
            None | Some("development") => false,
            Some("production") => true,
            Some(other) => {
                return Err(ConfigError::new(
                    "ORDERMESH_ENV",
                    format!("{other:?} is not one of development, production"),
                ));
            }
        };
        let log_format = match env.optional("LOG_FORMAT").as_deref() {
            None if production => LogFormat::Json,
            None => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some("pretty") | Some("text") => LogFormat::Pretty,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("{other:?} is not one of json, pretty"),
                ));
            }
        };
        Ok(Self {
            service_name: env
                .optional("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| format!("ordermesh-{service}")),
            log_format,
            otlp_endpoint: env.url("OTEL_EXPORTER_OTLP_ENDPOINT", &["http", "https"])?,
            log_filter: match env.optional("RUST_LOG") {
                Some(directives) => {
                    tracing_subscriber::EnvFilter::try_new(&directives)
                        .map_err(|e| ConfigError::new("RUST_LOG", format!("{directives:?}: {e}")))?;
                    Some(directives)
                }
                None => None,
            },
            metrics_addr: env.parse::<std::net::SocketAddr>("METRICS_ADDR")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_select_the_embedded_profile() {
        let config = ServiceConfig::from_env(&Env::default(), "product", 50051).unwrap();
        assert_eq!(config.listen_addr.port(), 50051);
        assert_eq!(config.database_url, "sqlite://data/product.db");
        assert!(config.nats_url.is_none() && config.redis_url.is_none());
        assert!(config.auth.issuers.is_empty());
    }

    #[test]
    fn a_bad_variable_is_named_in_the_error() {
        let env = Env::from_pairs([("DATABASE_URL", "mysql://x")]);
        let err = ServiceConfig::from_env(&env, "product", 50051).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        assert!(err.to_string().contains("mysql"), "{err}");

        let env = Env::from_pairs([("PRODUCT_ADDR", "not-an-address")]);
        assert_eq!(
            ServiceConfig::from_env(&env, "product", 50051).unwrap_err().var,
            "PRODUCT_ADDR"
        );

        let env = Env::from_pairs([("AUTH_CLIENT_ISSUER", "https://login.example")]);
        assert_eq!(
            ServiceConfig::from_env(&env, "product", 50051).unwrap_err().var,
            "AUTH_CLIENT_AUDIENCE"
        );
    }

    #[test]
    fn the_consumers_retry_policy_is_configurable_and_checked() {
        let config = ServiceConfig::from_env(&Env::default(), "x", 1).unwrap();
        assert_eq!(config.events.max_deliver, 5);
        assert_eq!(config.events.retry_backoff.len(), 4);
        let env = Env::from_pairs([("EVENTS_MAX_DELIVER", "2"), ("EVENTS_RETRY_BACKOFF_MS", "50, 100")]);
        let config = ServiceConfig::from_env(&env, "x", 1).unwrap();
        assert_eq!(config.events.max_deliver, 2);
        assert_eq!(
            config.events.retry_backoff,
            [Duration::from_millis(50), Duration::from_millis(100)]
        );
        for (var, value) in [
            ("EVENTS_MAX_DELIVER", "0"),
            ("EVENTS_RETRY_BACKOFF_MS", ","),
            ("EVENTS_RETRY_BACKOFF_MS", "1s"),
            ("EVENTS_RETRY_BACKOFF_MS", "99999999"),
        ] {
            let Err(error) = ServiceConfig::from_env(&Env::from_pairs([(var, value)]), "x", 1) else {
                panic!("{var}={value} accepted")
            };
            assert_eq!(error.var, var);
        }
    }

    #[test]
    fn publishing_is_a_switch_defaulting_to_on() {
        assert!(ServiceConfig::from_env(&Env::default(), "x", 1).unwrap().events.publish);
        let env = Env::from_pairs([("EVENTS_PUBLISH", "off")]);
        assert!(!ServiceConfig::from_env(&env, "x", 1).unwrap().events.publish);
        let env = Env::from_pairs([("EVENTS_PUBLISH", "sometimes")]);
        let Err(error) = ServiceConfig::from_env(&env, "x", 1) else {
            panic!("EVENTS_PUBLISH=sometimes accepted")
        };
        assert_eq!(error.var, "EVENTS_PUBLISH");
    }

    #[test]
    fn production_logs_are_json_unless_overridden() {
        let env = Env::from_pairs([("ORDERMESH_ENV", "production")]);
        assert_eq!(
            TelemetryConfig::from_env(&env, "x").unwrap().log_format,
            LogFormat::Json
        );
        let env = Env::from_pairs([("ORDERMESH_ENV", "production"), ("LOG_FORMAT", "pretty")]);
        assert_eq!(
            TelemetryConfig::from_env(&env, "x").unwrap().log_format,
            LogFormat::Pretty
        );
    }
}
