//! The BFF's configuration, read from the environment and validated at start-up. Every error
//! names the variable at fault.

use std::sync::Arc;
use std::time::Duration;

use ordermesh_platform::auth::{AuthConfig, ServiceCredentials};
use ordermesh_platform::mesh::Workload;
use ordermesh_platform::mesh::tls::{HttpsConfig, WorkloadTls};
use ordermesh_platform::{ConfigError, Env, PeerUrls};

/// Which portal(s) this deployment serves (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Surface {
    /// The client portal: employee-only routes are not routed at all (404).
    External,
    /// The employee portal.
    Internal,
    /// Both portals from one listener.
    Both,
}

impl Surface {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "external" => Some(Self::External),
            "internal" => Some(Self::Internal),
            "both" => Some(Self::Both),
            _ => None,
        }
    }

    /// The surface as configured (`external`, `internal`, `both`): for span attributes and
    /// metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::External => "external",
            Self::Internal => "internal",
            Self::Both => "both",
        }
    }

    /// Whether routes that only employees may call are served.
    pub fn serves_employee_routes(self) -> bool {
        self != Self::External
    }
}

/// Where the BFF listens: `BFF_ADDR`, default `0.0.0.0:8080`.
pub fn listen_addr(env: &Env) -> Result<std::net::SocketAddr, ConfigError> {
    env.parse_or(
        "BFF_ADDR",
        std::net::SocketAddr::from(([0, 0, 0, 0], crate::DEFAULT_PORT)),
    )
}

/// Per-principal request budgets (sliding window).
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// Requests per window for client (external) principals.
    pub external: u64,
    /// Requests per window for employee (internal) principals.
    pub internal: u64,
    pub window: Duration,
}

#[derive(Clone)]
pub struct BffConfig {
    pub surface: Surface,
    pub auth: AuthConfig,
    /// gRPC addresses of the services.
    pub peers: PeerUrls,
    /// Idempotency replay, rate limits and customer lookups; in-memory when absent.
    pub redis_url: Option<String>,
    /// The CA of a `rediss://` server (`REDIS_CA_FILE`).
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// Prefix of every cache key this BFF writes (tests isolate by prefix).
    pub cache_prefix: String,
    /// The BFF's own workload identity, for reads it checks itself (a client's payments).
    pub credentials: ServiceCredentials,
    pub rate_limits: RateLimits,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Upper bound on handling one request (504 after).
    pub request_timeout: Duration,
    /// Deadline of one gRPC attempt.
    pub grpc_timeout: Duration,
    /// How long an `Idempotency-Key` replays its first response.
    pub idempotency_ttl: Duration,
    /// Allowed CORS origins of the client portal.
    pub cors_external_origins: Vec<String>,
    /// Allowed CORS origins of the employee portal.
    pub cors_internal_origins: Vec<String>,
    /// Live notification streams (SSE).
    pub streams: StreamLimits,
    /// How long a product read is answered from memory (`BFF_PRODUCT_CACHE_MILLIS`; zero: never).
    pub product_cache: Duration,
    /// Mutual TLS to the services (`GRPC_TLS_*`), with the certificate of [`BffConfig::workload`].
    pub tls: Option<Arc<WorkloadTls>>,
    /// HTTPS for the portals (`BFF_TLS_CERT_FILE`, `BFF_TLS_KEY_FILE`); plain HTTP when absent
    /// (behind a gateway or a sidecar that terminates TLS).
    pub https: Option<HttpsConfig>,
    /// Networks `/api/v1/admin/*` may be called from (`BFF_ADMIN_ALLOWED_CIDRS`); empty: any.
    pub admin_allowed_networks: Vec<ipnet::IpNet>,
    /// A header the trusted gateway in front of the BFF sets to the client's address
    /// (`BFF_TRUSTED_PROXY_HEADER`, e.g. `X-Forwarded-For`; its right-most address counts, the
    /// one the gateway appended). Without it the connection's peer address counts.
    pub trusted_proxy_header: Option<axum::http::HeaderName>,
    /// The longest range of days analytics answer for (`BFF_ANALYTICS_MAX_DAYS`).
    pub analytics_max_days: i64,
}

/// Settings of `GET /api/v1/notifications/stream`.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// Interval of the BFF's own SSE comment heartbeats on an idle stream.
    pub heartbeat: Duration,
    /// Concurrent streams one principal may hold on one BFF instance (429 beyond).
    pub max_per_principal: usize,
    /// Events buffered per connection between notification-svc and the client; a client that
    /// falls this far behind is disconnected (it resumes with `Last-Event-ID`).
    pub buffer_events: usize,
    /// Lifetime of a stream ticket.
    pub ticket_ttl: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            max_per_principal: 5,
            buffer_events: 64,
            ticket_ttl: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for BffConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BffConfig")
            .field("surface", &self.surface)
            .field("auth", &self.auth)
            .field("peers", &self.peers)
            .field("redis", &self.redis_url.is_some())
            .field("credentials", &self.credentials)
            .field("rate_limits", &self.rate_limits)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("streams", &self.streams)
            .field("tls", &self.tls)
            .field("https", &self.https.is_some())
            .finish_non_exhaustive()
    }
}

impl BffConfig {
    /// Defaults for `auth` and `peers`; every other value as documented in the README.
    pub fn new(auth: AuthConfig, peers: PeerUrls) -> Self {
        Self {
            surface: Surface::Both,
            auth,
            peers,
            redis_url: None,
            redis_ca_file: None,
            cache_prefix: "ordermesh:bff:".to_owned(),
            credentials: ServiceCredentials::None,
            rate_limits: RateLimits {
                external: 1000,
                internal: 5000,
                window: Duration::from_secs(60),
            },
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(15),
            grpc_timeout: Duration::from_secs(5),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            cors_external_origins: Vec::new(),
            cors_internal_origins: Vec::new(),
            streams: StreamLimits::default(),
            product_cache: Duration::from_millis(1000),
            tls: None,
            https: None,
            admin_allowed_networks: Vec::new(),
            trusted_proxy_header: None,
            analytics_max_days: 366,
        }
    }

    /// The BFF's workload in the call graph: the client portal's calls are a subset of the
    /// employee portal's, and a BFF serving both calls what the employee portal's does.
    pub fn workload(&self) -> Workload {
        match self.surface {
            Surface::External => Workload::BffExternal,
            Surface::Internal | Surface::Both => Workload::BffInternal,
        }
    }

    /// Reads `BFF_SURFACE`, the `AUTH_*` issuers, `<NAME>_SVC_URL`, `REDIS_URL`,
    /// `SERVICE_TOKEN_FILE` and the `BFF_*` limits.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut config = Self::new(AuthConfig::from_env(env)?, PeerUrls::from_env(env)?);
        if let Some(raw) = env.optional("BFF_SURFACE") {
            config.surface = Surface::parse(raw.trim()).ok_or_else(|| {
                ConfigError::new("BFF_SURFACE", format!("{raw:?} is not one of external, internal, both"))
            })?;
        }
        config.tls = WorkloadTls::from_env(env, config.workload())?;
        config.https = HttpsConfig::from_env(env)?;
        config.redis_url = env.url("REDIS_URL", &["redis", "rediss"])?;
        config.redis_ca_file = ordermesh_platform::backing::redis_ca_from_env(env)?;
        if let Some(prefix) = env.optional("BFF_CACHE_PREFIX") {
            config.cache_prefix = prefix;
        }
        if let Some(path) = env.optional("SERVICE_TOKEN_FILE") {
            config.credentials = ServiceCredentials::File(path.into());
        }
        let positive = |name: &str, default: u64| -> Result<u64, ConfigError> {
            let value: u64 = env.parse_or(name, default)?;
            if value == 0 {
                return Err(ConfigError::new(name, "must be greater than 0"));
            }
            Ok(value)
        };
        config.rate_limits = RateLimits {
            external: positive("BFF_RATE_LIMIT_EXTERNAL", 1000)?,
            internal: positive("BFF_RATE_LIMIT_INTERNAL", 5000)?,
            window: Duration::from_secs(positive("BFF_RATE_LIMIT_WINDOW_SECONDS", 60)?),
        };
        config.body_limit_bytes = positive("BFF_BODY_LIMIT_BYTES", 64 * 1024)? as usize;
        config.request_timeout = Duration::from_secs(positive("BFF_REQUEST_TIMEOUT_SECONDS", 15)?);
        config.grpc_timeout = Duration::from_secs(positive("BFF_GRPC_TIMEOUT_SECONDS", 5)?);
        config.idempotency_ttl = Duration::from_secs(positive("BFF_IDEMPOTENCY_TTL_SECONDS", 24 * 3600)?);
        config.product_cache = Duration::from_millis(env.parse_or("BFF_PRODUCT_CACHE_MILLIS", 1000)?);
        config.cors_external_origins = origins(env, "BFF_CORS_EXTERNAL_ORIGINS")?;
        config.cors_internal_origins = origins(env, "BFF_CORS_INTERNAL_ORIGINS")?;
        config.admin_allowed_networks = networks(env, "BFF_ADMIN_ALLOWED_CIDRS")?;
        config.analytics_max_days =
            positive("BFF_ANALYTICS_MAX_DAYS", 366)?.min(ordermesh_platform::analytics::MAX_DAYS as u64) as i64;
        if let Some(raw) = env.optional("BFF_TRUSTED_PROXY_HEADER") {
            let name = axum::http::HeaderName::from_bytes(raw.trim().as_bytes())
                .map_err(|_| ConfigError::new("BFF_TRUSTED_PROXY_HEADER", format!("{raw:?} is not a header name")))?;
            config.trusted_proxy_header = Some(name);
        }
        config.streams = StreamLimits {
            heartbeat: Duration::from_secs(positive("BFF_SSE_HEARTBEAT_SECONDS", 15)?),
            max_per_principal: positive("BFF_SSE_MAX_STREAMS_PER_PRINCIPAL", 5)? as usize,
            buffer_events: positive("BFF_SSE_BUFFER_EVENTS", 64)? as usize,
            ticket_ttl: Duration::from_secs(positive("BFF_STREAM_TICKET_TTL_SECONDS", 30)?),
        };
        Ok(config)
    }

    /// The CORS origins of the surfaces served.
    pub fn cors_origins(&self) -> Vec<String> {
        match self.surface {
            Surface::External => self.cors_external_origins.clone(),
            Surface::Internal => self.cors_internal_origins.clone(),
            Surface::Both => {
                let mut all = self.cors_external_origins.clone();
                all.extend(self.cors_internal_origins.iter().cloned());
                all
            }
        }
    }
}

/// A comma-separated list of networks (`10.0.0.0/8, 192.168.1.7/32`; a bare address is one
/// host).
fn networks(env: &Env, name: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    let Some(raw) = env.optional(name) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<ipnet::IpNet>()
                .or_else(|_| part.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| ConfigError::new(name, format!("{part:?} is not a network such as 10.0.0.0/8")))
        })
        .collect()
}

/// A comma-separated list of `http(s)://host[:port]` origins.
fn origins(env: &Env, name: &str) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = env.optional(name) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|origin| {
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .ok_or_else(|| ConfigError::new(name, format!("{origin:?} is not an http(s) origin")))?;
            if rest.is_empty() || rest.contains(['/', '?', '#']) || http::HeaderValue::from_str(origin).is_err() {
                return Err(ConfigError::new(
                    name,
                    format!("{origin:?} is not an origin (scheme://host[:port])"),
                ));
            }
            Ok(origin.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let config = BffConfig::from_env(&Env::default()).unwrap();
        assert_eq!(config.surface, Surface::Both);
        assert_eq!(config.rate_limits.external, 1000);
        assert_eq!(config.rate_limits.internal, 5000);
        assert_eq!(config.streams.heartbeat, Duration::from_secs(15));
        assert_eq!(config.streams.max_per_principal, 5);
        let env = Env::from_pairs([
            ("BFF_SURFACE", "external"),
            ("BFF_RATE_LIMIT_EXTERNAL", "5"),
            ("BFF_SSE_HEARTBEAT_SECONDS", "3"),
            (
                "BFF_CORS_EXTERNAL_ORIGINS",
                "https://shop.example, http://localhost:3000",
            ),
        ]);
        let config = BffConfig::from_env(&env).unwrap();
        assert_eq!(config.surface, Surface::External);
        assert_eq!(config.rate_limits.external, 5);
        assert_eq!(config.streams.heartbeat, Duration::from_secs(3));
        assert_eq!(config.cors_origins(), ["https://shop.example", "http://localhost:3000"]);
    }

    #[test]
    fn errors_name_the_variable() {
        for (var, value) in [
            ("BFF_SURFACE", "public"),
            ("BFF_RATE_LIMIT_INTERNAL", "lots"),
            ("BFF_RATE_LIMIT_EXTERNAL", "0"),
            ("BFF_SSE_HEARTBEAT_SECONDS", "0"),
            ("BFF_SSE_MAX_STREAMS_PER_PRINCIPAL", "many"),
            ("BFF_CORS_INTERNAL_ORIGINS", "ftp://x"),
            ("BFF_CORS_EXTERNAL_ORIGINS", "https://x/path"),
            ("ORDER_SVC_URL", "tcp://x"),
            ("REDIS_URL", "http://x"),
        ] {
            let err = BffConfig::from_env(&Env::from_pairs([(var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
    }
}
