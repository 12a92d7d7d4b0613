//! The BFF's in-process tier of product answers: a product read is answered from memory for at
//! most `BFF_PRODUCT_CACHE_MILLIS` (default 1000) after product-svc last answered it, so the
//! catalogue's hot reads skip the hop to product-svc. A change through this BFF forgets the
//! product at once; a change made elsewhere (another BFF instance, an operator's grpcurl) is
//! served within that bound. Authentication, the rate limit and the role matrix still run on
//! every request (they run before the handler).
//!
//! Only what every caller may see is answered from here: an inactive product, which clients may
//! not see, is asked of product-svc again when a client reads it, so the answer (404) is exactly
//! product-svc's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;

/// A product's JSON answer and whether clients may see it.
#[derive(Debug, Clone)]
pub struct CachedProduct {
    pub body: Bytes,
    pub active: bool,
}

pub struct ProductTier {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Instant, CachedProduct)>>,
}

impl ProductTier {
    /// Products are kept for `ttl` (zero: not at all), `capacity` at most.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for product `id`, if product-svc gave it less than `ttl` ago.
    pub fn get(&self, id: &str) -> Option<CachedProduct> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(id)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, product)| product.clone())
    }

    /// Keeps product-svc's answer for `id`. When full, stale entries go first, then all.
    pub fn put(&self, id: &str, product: CachedProduct) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(id.to_owned(), (Instant::now(), product));
    }

    /// Forgets product `id` (it was just changed through this BFF).
    pub fn forget(&self, id: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(body: &'static str) -> CachedProduct {
        CachedProduct {
            body: Bytes::from_static(body.as_bytes()),
            active: true,
        }
    }

    #[test]
    fn answers_within_the_bound_forgets_on_change_and_keeps_nothing_when_off() {
        let tier = ProductTier::new(Duration::from_millis(50), 10);
        tier.put("p", product("{}"));
        assert!(tier.get("p").is_some());
        tier.forget("p");
        assert!(tier.get("p").is_none());

        tier.put("p", product("{}"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(tier.get("p").is_none(), "stale after the bound");

        let off = ProductTier::new(Duration::ZERO, 10);
        off.put("p", product("{}"));
        assert!(off.get("p").is_none());
    }

    #[test]
    fn stays_within_its_capacity() {
        let tier = ProductTier::new(Duration::from_secs(60), 2);
        for id in ["a", "b", "c"] {
            tier.put(id, product("{}"));
        }
        assert!(tier.entries.lock().unwrap().len() <= 2);
        assert!(tier.get("c").is_some());
    }
}
