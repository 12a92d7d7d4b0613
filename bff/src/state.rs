//! [`AppState`]: what every handler and middleware shares.

use std::sync::Arc;

use ordermesh_platform::auth::JwtValidator;
use ordermesh_platform::{Cache, Shutdown};

use crate::config::BffConfig;
use crate::product_tier::ProductTier;
use crate::{clients, feed, limits, stream};

/// Products the in-process tier keeps at most.
const PRODUCT_TIER_CAPACITY: usize = 10_000;

/// What every handler shares.
pub struct AppState {
    pub config: BffConfig,
    pub validator: std::sync::Arc<JwtValidator>,
    pub clients: clients::Clients,
    /// Idempotency records and customer lookups.
    pub cache: Cache,
    pub limiter: limits::RateLimiter,
    /// Open notification streams per principal.
    pub streams: Arc<stream::StreamSlots>,
    /// The one live feed of notifications that every open stream takes its share of.
    pub feed: Arc<feed::Feed>,
    /// Triggered when the BFF shuts down: open notification streams end.
    pub shutdown: Shutdown,
    /// Product answers kept for a moment (`GET /products/{id}`).
    pub products: ProductTier,
}

impl AppState {
    /// The state of a BFF that stops when `shutdown` triggers.
    pub async fn new(config: BffConfig, shutdown: Shutdown) -> anyhow::Result<Self> {
        let cache = Cache::connect(
            config.redis_url.as_deref(),
            config.redis_ca_file.as_deref(),
            config.cache_prefix.clone(),
        )
        .await?
        .metered("bff");
        let limiter = limits::RateLimiter::new(
            cache.with_prefix(format!("{}rl:", config.cache_prefix)),
            config.rate_limits.clone(),
        );
        let clients = clients::Clients::new(&config)?;
        Ok(Self {
            validator: JwtValidator::shared(config.auth.clone()),
            feed: feed::Feed::new(
                clients.notification.read.clone(),
                config.credentials.clone(),
                shutdown.clone(),
            ),
            clients,
            cache,
            limiter,
            streams: stream::StreamSlots::new(config.streams.max_per_principal),
            shutdown,
            products: ProductTier::new(config.product_cache, PRODUCT_TIER_CAPACITY),
            config,
        })
    }
}
