//! A small byte cache shared by the services (product reads today; BFF idempotency replay and
//! rate limits later): Redis (fred) in production, an in-process map with TTLs when `REDIS_URL`
//! is absent.
//!
//! The cache is an optimisation, never a dependency: every Redis failure (unreachable, slow,
//! protocol error) is logged at warn level, counted in [`CacheStats::errors`] and reported to the
//! caller as a miss (for `get`) or silently dropped (for `set`/`delete`). Each Redis operation is
//! bounded by [`Cache::DEFAULT_OP_TIMEOUT`], and while the client is disconnected operations fail
//! at once instead of waiting for a reconnect, so a dead Redis never stalls a read.
//!
//! Every key is prefixed with the instance's prefix (e.g. `ordermesh:product:`), so services and
//! tests sharing one Redis do not see each other's keys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::{Builder, Client, ClientLike, Config, Expiration, KeysInterface, ReconnectPolicy};

/// Counters of one cache instance (and its clones). Readable by tests and metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    last_warn_ms: AtomicU64,
}

/// A point-in-time copy of [`CacheStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStatsSnapshot {
    /// `get` calls answered from the cache.
    pub hits: u64,
    /// `get` calls not answered from the cache (absent, expired, or the backend failed).
    pub misses: u64,
    /// Backend failures of any operation (each also logged at warn level, rate-limited).
    pub errors: u64,
}

/// Values with their expiry instants.
type MemoryMap = Arc<Mutex<HashMap<String, (Vec<u8>, Instant)>>>;

#[derive(Clone)]
enum Backend {
    Redis(Client),
    InMemory(MemoryMap),
}

/// A prefixed byte cache over Redis or memory. Cheap to clone; clones share the connection and
/// the counters.
#[derive(Clone)]
pub struct Cache {
    backend: Backend,
    prefix: String,
    op_timeout: Duration,
    stats: Arc<CacheStats>,
    /// The service whose `cache.requests` look-ups of [`Cache::get`] count, if any.
    metered: Option<&'static str>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.backend_name())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Cache {
    /// Upper bound on one Redis operation.
    pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(300);

    /// Redis when `redis_url` is set, else in-memory. A Redis server that cannot be reached at
    /// start-up is not an error: the client keeps reconnecting in the background and the cache
    /// reports misses meanwhile. Only an unparsable URL is an error.
    /// A `rediss://` URL is verified against the CA certificates in `ca_file`.
    pub async fn connect(
        redis_url: Option<&str>,
        ca_file: Option<&std::path::Path>,
        prefix: impl Into<String>,
    ) -> anyhow::Result<Self> {
        match redis_url {
            Some(url) => Self::redis(url, ca_file, prefix).await,
            None => Ok(Self::in_memory(prefix)),
        }
    }

    /// An in-process cache; entries expire after their TTL.
    pub fn in_memory(prefix: impl Into<String>) -> Self {
        Self::with_backend(Backend::InMemory(Arc::default()), prefix.into())
    }

    /// A Redis cache. Waits briefly for the first connection, but never fails because Redis is
    /// down.
    pub async fn redis(
        url: &str,
        ca_file: Option<&std::path::Path>,
        prefix: impl Into<String>,
    ) -> anyhow::Result<Self> {
        let mut config = Config::from_url(url).map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
        if url.starts_with("rediss://") {
            let ca = ca_file.ok_or_else(|| anyhow::anyhow!("REDIS_CA_FILE is required with a rediss:// REDIS_URL"))?;
            let tls = crate::backing::client_tls(ca)?;
            config.tls = Some(fred::types::config::TlsConnector::from(tls).into());
        }
        // Keep retrying the first connection in the background instead of failing start-up.
        config.fail_fast = false;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(1);
                c.internal_command_timeout = Duration::from_secs(1);
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = Self::DEFAULT_OP_TIMEOUT;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()?;
        client.connect();
        let this = Self::with_backend(Backend::Redis(client.clone()), prefix.into());
        match tokio::time::timeout(Duration::from_secs(1), client.wait_for_connect()).await {
            Ok(Ok(())) => tracing::info!("cache: connected to Redis"),
            Ok(Err(error)) => this.warn("connect", &error.to_string()),
            Err(_) => this.warn("connect", "timed out; reconnecting in the background"),
        }
        Ok(this)
    }

    fn with_backend(backend: Backend, prefix: String) -> Self {
        Self {
            backend,
            prefix,
            op_timeout: Self::DEFAULT_OP_TIMEOUT,
            stats: Arc::default(),
            metered: None,
        }
    }

    /// Counts this cache's look-ups ([`Cache::get`], hit or miss) in `cache.requests` as
    /// `service`'s (a workload name), for the hit ratio on the dashboards. Caches of other
    /// purposes (tickets, rate limits) stay out of it.
    pub fn metered(mut self, service: &'static str) -> Self {
        self.metered = Some(service);
        self
    }

    /// The same backend and counters under another prefix (e.g. one per purpose).
    pub fn with_prefix(&self, prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            ..self.clone()
        }
    }

    /// Overrides the per-operation time limit of the Redis backend.
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `redis` or `in-memory`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Redis(_) => "redis",
            Backend::InMemory(_) => "in-memory",
        }
    }

    pub fn stats(&self) -> CacheStatsSnapshot {
        CacheStatsSnapshot {
            hits: self.stats.hits.load(Ordering::Relaxed),
            misses: self.stats.misses.load(Ordering::Relaxed),
            errors: self.stats.errors.load(Ordering::Relaxed),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The value under `key`, or `None` on a miss or any backend failure.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let key = self.key(key);
        let found = match &self.backend {
            Backend::InMemory(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                match map.get(&key) {
                    Some((value, expires)) if *expires > Instant::now() => Some(value.clone()),
                    Some(_) => {
                        map.remove(&key);
                        None
                    }
                    None => None,
                }
            }
            Backend::Redis(client) => self
                .redis_op("get", client, async { client.get::<Option<Vec<u8>>, _>(key).await })
                .await
                .flatten(),
        };
        let counter = if found.is_some() {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(service) = self.metered {
            crate::metrics::record_cache(service, found.is_some());
        }
        found
    }

    /// Stores `value` under `key` for `ttl` (at least one millisecond). Failures are logged and
    /// counted; the answer says whether the value was stored (most callers may ignore it).
    pub async fn set_with_ttl(&self, key: &str, value: &[u8], ttl: Duration) -> bool {
        let key = self.key(key);
        let ttl = ttl.max(Duration::from_millis(1));
        match &self.backend {
            Backend::InMemory(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                // Keep the map bounded by dropping expired entries when it grows.
                if map.len() >= 10_000 {
                    let now = Instant::now();
                    map.retain(|_, (_, expires)| *expires > now);
                }
                map.insert(key, (value.to_vec(), Instant::now() + ttl));
                true
            }
            Backend::Redis(client) => {
                let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
                self.redis_op("set", client, async {
                    client
                        .set::<(), _, _>(key, value, Some(Expiration::PX(millis)), None, false)
                        .await
                })
                .await
                .is_some()
            }
        }
    }

    /// Atomically adds one to the counter under `key` and returns the new value; a new counter
    /// expires after `ttl` (later increments keep its expiry). `None` on any backend failure,
    /// so callers (rate limits) can fall back. The value reads back through [`Cache::get`] as
    /// its decimal digits.
    pub async fn incr(&self, key: &str, ttl: Duration) -> Option<i64> {
        let key = self.key(key);
        let ttl = ttl.max(Duration::from_millis(1));
        match &self.backend {
            Backend::InMemory(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let (current, expires) = match map.get(&key) {
                    Some((value, expires)) if *expires > now => (
                        std::str::from_utf8(value)
                            .ok()
                            .and_then(|v| v.parse::<i64>().ok())
                            .unwrap_or(0),
                        *expires,
                    ),
                    _ => (0, now + ttl),
                };
                let next = current + 1;
                map.insert(key, (next.to_string().into_bytes(), expires));
                Some(next)
            }
            Backend::Redis(client) => {
                let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
                self.redis_op("incr", client, async {
                    let value = client.incr::<i64, _>(key.as_str()).await?;
                    client
                        .pexpire::<(), _>(key.as_str(), millis, Some(fred::types::ExpireOptions::NX))
                        .await?;
                    Ok(value)
                })
                .await
            }
        }
    }

    /// Atomically reads and removes the value under `key` (Redis `GETDEL`; under the map's lock
    /// in memory): of concurrent callers at most one gets the value, so it suits single-use
    /// tokens. `None` on a miss, an expired entry or any backend failure.
    pub async fn take(&self, key: &str) -> Option<Vec<u8>> {
        let key = self.key(key);
        let found = match &self.backend {
            Backend::InMemory(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                map.remove(&key)
                    .and_then(|(value, expires)| (expires > Instant::now()).then_some(value))
            }
            Backend::Redis(client) => self
                .redis_op("take", client, async { client.getdel::<Option<Vec<u8>>, _>(key).await })
                .await
                .flatten(),
        };
        let counter = if found.is_some() {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Removes `key`. Failures are logged and counted (the entry then expires with its TTL).
    pub async fn delete(&self, key: &str) {
        let key = self.key(key);
        match &self.backend {
            Backend::InMemory(map) => {
                map.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            }
            Backend::Redis(client) => {
                self.redis_op("delete", client, async { client.del::<i64, _>(key).await })
                    .await;
            }
        }
    }

    async fn redis_op<T>(
        &self,
        op: &'static str,
        client: &Client,
        future: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Option<T> {
        if !client.is_connected() {
            self.warn(op, "not connected");
            return None;
        }
        match tokio::time::timeout(self.op_timeout, future).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                self.warn(op, &error.to_string());
                None
            }
            Err(_) => {
                self.warn(op, "timed out");
                None
            }
        }
    }

    /// Counts a failure and logs it at most once per second per instance, so a dead Redis does
    /// not flood the logs. Keys are never logged (they may be derived from request data).
    fn warn(&self, op: &'static str, error: &str) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let last = self.stats.last_warn_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1_000
            && self
                .stats
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                op,
                error,
                errors = self.stats.errors.load(Ordering::Relaxed),
                "cache unavailable; serving from the source"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique_prefix() -> String {
        format!("test:{}:", uuid::Uuid::now_v7().simple())
    }

    async fn round_trip(cache: &Cache) {
        assert_eq!(cache.get("a").await, None);
        cache.set_with_ttl("a", b"one", Duration::from_secs(30)).await;
        assert_eq!(cache.get("a").await.as_deref(), Some(&b"one"[..]));
        cache.delete("a").await;
        assert_eq!(cache.get("a").await, None);
        cache.set_with_ttl("short", b"x", Duration::from_millis(50)).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(cache.get("short").await, None, "expired after its TTL");
        assert_eq!(
            cache.stats(),
            CacheStatsSnapshot {
                hits: 1,
                misses: 3,
                errors: 0
            }
        );
    }

    #[tokio::test]
    async fn in_memory_round_trip_and_ttl() {
        round_trip(&Cache::in_memory(unique_prefix())).await;
    }

    #[tokio::test]
    async fn redis_round_trip_and_ttl() {
        let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let cache = Cache::connect(Some(&url), None, unique_prefix()).await.unwrap();
        assert_eq!(cache.backend_name(), "redis");
        round_trip(&cache).await;
    }

    async fn counts(cache: &Cache) {
        assert_eq!(cache.incr("n", Duration::from_millis(200)).await, Some(1));
        assert_eq!(cache.incr("n", Duration::from_millis(200)).await, Some(2));
        assert_eq!(cache.get("n").await.as_deref(), Some(&b"2"[..]));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(cache.incr("n", Duration::from_millis(200)).await, Some(1), "expired");
    }

    #[tokio::test]
    async fn counters_in_memory_and_redis() {
        counts(&Cache::in_memory(unique_prefix())).await;
        let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        counts(&Cache::connect(Some(&url), None, unique_prefix()).await.unwrap()).await;
    }

    async fn takes_once(cache: &Cache) {
        cache.set_with_ttl("t", b"secret", Duration::from_secs(30)).await;
        let takers = (0..8).map(|_| cache.take("t"));
        let taken: Vec<_> = futures::future::join_all(takers).await.into_iter().flatten().collect();
        assert_eq!(taken, vec![b"secret".to_vec()], "exactly one taker gets the value");
        assert_eq!(cache.get("t").await, None, "gone after the take");
        cache.set_with_ttl("short", b"x", Duration::from_millis(50)).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(cache.take("short").await, None, "expired values are not taken");
        assert_eq!(cache.take("never").await, None);
    }

    #[tokio::test]
    async fn take_is_single_use_in_memory_and_redis() {
        takes_once(&Cache::in_memory(unique_prefix())).await;
        let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let cache = Cache::connect(Some(&url), None, unique_prefix()).await.unwrap();
        assert_eq!(cache.backend_name(), "redis");
        takes_once(&cache).await;
    }

    #[tokio::test]
    async fn prefixes_isolate_instances() {
        let a = Cache::in_memory("a:");
        let b = a.with_prefix("b:");
        a.set_with_ttl("k", b"1", Duration::from_secs(5)).await;
        assert_eq!(b.get("k").await, None);
        assert!(a.get("k").await.is_some());
    }

    #[tokio::test]
    async fn unreachable_redis_is_a_fast_miss_not_an_error() {
        let started = Instant::now();
        let cache = Cache::connect(Some("redis://127.0.0.1:1"), None, unique_prefix())
            .await
            .unwrap();
        cache.set_with_ttl("k", b"v", Duration::from_secs(5)).await;
        for _ in 0..20 {
            assert_eq!(cache.get("k").await, None);
        }
        cache.delete("k").await;
        let stats = cache.stats();
        assert_eq!(stats.misses, 20);
        assert!(stats.errors >= 22, "{stats:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
    }
}
