//! Verified tokens, remembered until they expire: a process verifies a token's signature once
//! and reuses its claims (DESIGN §6). Bounded; keyed by the SHA-256 of the whole token; `exp`
//! and `nbf` checked again on every hit; an entry is only trusted while its issuer's key set is
//! the one it was verified with; nothing is kept for a token that failed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::{AuthError, Principal};

/// A verified token's claims as far as a later hit needs them.
#[derive(Debug, Clone)]
pub(super) struct Verified {
    pub principal: Principal,
    /// Seconds since the epoch.
    pub exp: i64,
    pub nbf: Option<i64>,
    /// Index of the issuer in the validator's configuration.
    pub issuer: usize,
    /// The issuer's key-set generation the signature was checked against.
    pub generation: u64,
}

/// Counters of a validator's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenCacheStats {
    /// Tokens answered from the cache.
    pub hits: u64,
    /// Tokens that were verified (or failed) in full.
    pub misses: u64,
    /// Tokens remembered now.
    pub entries: usize,
}

pub(super) struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Verified>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

pub(super) type TokenKey = [u8; 32];

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn key(token: &str) -> TokenKey {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The remembered answer for `key`: its principal, or why it is no longer good (`exp`,
    /// `nbf`, checked against `now` with `leeway`); `None` when it must be verified in full
    /// (unknown, or its issuer's keys changed since: `current_generation(issuer)`).
    pub fn get(
        &self,
        key: &TokenKey,
        now: i64,
        leeway: i64,
        current_generation: impl Fn(usize) -> u64,
    ) -> Option<Result<Principal, AuthError>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let Some(verified) = entries.get(key) else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if verified.generation != current_generation(verified.issuer) {
            entries.remove(key);
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        if now > verified.exp.saturating_add(leeway) {
            entries.remove(key);
            return Some(Err(AuthError::Expired));
        }
        if verified.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Some(Err(AuthError::NotYetValid));
        }
        Some(Ok(verified.principal.clone()))
    }

    /// Remembers a token that passed every check. When full, expired entries go first, then
    /// an arbitrary tenth (a later hit on one of them verifies it again).
    pub fn insert(&self, key: TokenKey, verified: Verified, now: i64) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, v| v.exp > now);
            if entries.len() >= self.capacity {
                let evict: Vec<TokenKey> = entries.keys().take(self.capacity / 10 + 1).copied().collect();
                for key in evict {
                    entries.remove(&key);
                }
            }
        }
        entries.insert(key, verified);
    }

    pub fn stats(&self) -> TokenCacheStats {
        TokenCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.entries.lock().map(|e| e.len()).unwrap_or_default(),
        }
    }
}
