//! Per-principal rate limits: a sliding-window counter (the current fixed window's count plus
//! the previous window's, weighted by how much of it still overlaps the sliding window) kept in
//! the shared [`Cache`] (Redis in production, so every BFF replica sees one budget), with an
//! in-process counter as fallback while Redis fails. Clients get the external budget,
//! employees the internal one (`BFF_RATE_LIMIT_EXTERNAL` / `_INTERNAL` per
//! `BFF_RATE_LIMIT_WINDOW_SECONDS`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};
use ordermesh_platform::Cache;
use ordermesh_platform::auth::Principal;
use sha2::Digest;

use crate::config::RateLimits;

pub struct RateLimiter {
    shared: Cache,
    local: Cache,
    limits: RateLimits,
}

/// The outcome of counting one request.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the current window ends.
    pub reset: u64,
    pub window: u64,
}

impl Decision {
    /// `RateLimit-*` headers (draft-ietf-httpapi-ratelimit-headers) and, when refused, nothing
    /// else: `Retry-After` comes with the 429 problem.
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert("ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("ratelimit-reset", HeaderValue::from(self.reset));
        if let Ok(policy) = HeaderValue::from_str(&format!("{};w={}", self.limit, self.window)) {
            headers.insert("ratelimit-policy", policy);
        }
    }
}

impl RateLimiter {
    /// `shared` should carry a prefix of its own (its keys are `<principal hash>:<window>`).
    pub fn new(shared: Cache, limits: RateLimits) -> Self {
        Self {
            shared,
            local: Cache::in_memory("rl:"),
            limits,
        }
    }

    /// Counts one request of `principal` and decides whether it may proceed.
    pub async fn check(&self, principal: &Principal) -> Decision {
        let limit = match principal {
            Principal::Client { .. } => self.limits.external,
            _ => self.limits.internal,
        };
        let key = principal_key(principal);
        let window_ms = self.limits.window.as_millis().max(1) as u64;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let index = now_ms / window_ms;
        let elapsed = now_ms % window_ms;
        let ttl = Duration::from_millis(window_ms * 2);
        let current_key = format!("{key}:{index}");
        let previous_key = format!("{key}:{}", index.saturating_sub(1));
        let (current, previous) = match self.shared.incr(&current_key, ttl).await {
            Some(current) => (current, read_count(&self.shared, &previous_key).await),
            None => (
                self.local.incr(&current_key, ttl).await.unwrap_or(1),
                read_count(&self.local, &previous_key).await,
            ),
        };
        let overlap = (window_ms - elapsed) as f64 / window_ms as f64;
        let estimate = previous as f64 * overlap + current as f64;
        let reset = (window_ms - elapsed).div_ceil(1000).max(1);
        Decision {
            allowed: estimate <= limit as f64,
            limit,
            remaining: (limit as f64 - estimate).max(0.0).floor() as u64,
            reset,
            window: self.limits.window.as_secs(),
        }
    }
}

async fn read_count(cache: &Cache, key: &str) -> i64 {
    cache
        .get(key)
        .await
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A stable, non-personal key per principal.
pub fn principal_key(principal: &Principal) -> String {
    let identity = match principal {
        Principal::Client { issuer, subject } => format!("client\0{issuer}\0{subject}"),
        Principal::Employee { subject, .. } => format!("employee\0{subject}"),
        Principal::Service { name } => format!("service\0{name}"),
    };
    let digest = sha2::Sha256::digest(identity.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(subject: &str) -> Principal {
        Principal::Client {
            issuer: "https://issuer.test".into(),
            subject: subject.into(),
        }
    }

    async fn limits_after(cache: Cache) {
        let limiter = RateLimiter::new(
            cache,
            RateLimits {
                external: 3,
                internal: 100,
                window: Duration::from_secs(60),
            },
        );
        for expected in [2, 1, 0] {
            let decision = limiter.check(&client("a")).await;
            assert!(decision.allowed);
            assert!(decision.remaining <= expected, "{decision:?}");
        }
        let refused = limiter.check(&client("a")).await;
        assert!(!refused.allowed);
        assert!(refused.reset >= 1 && refused.reset <= 60);
        assert!(limiter.check(&client("b")).await.allowed, "budgets are per principal");
    }

    #[tokio::test]
    async fn counts_in_memory() {
        limits_after(Cache::in_memory(format!("rl-test:{}:", uuid::Uuid::now_v7()))).await;
    }

    #[tokio::test]
    async fn falls_back_to_local_counting_while_redis_is_down() {
        let dead = Cache::connect(Some("redis://127.0.0.1:1"), None, "rl-test:")
            .await
            .unwrap();
        limits_after(dead).await;
    }
}
