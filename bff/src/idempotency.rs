//! `Idempotency-Key` on `POST /api/v1/orders`: the first response (status, headers, body) is
//! kept in the [`Cache`] for `BFF_IDEMPOTENCY_TTL_SECONDS` and replayed for a repeat with the
//! same key and the same body; the same key with a different body is 422. What the cache keeps
//! carries no personal data: the caller stores the body without it and puts it back from the
//! resource on replay ([`Replay::resource`]), so an erased customer's address does not outlive
//! the erasure in Redis. The key is also
//! passed to order-svc, whose own per-customer idempotency keeps a repeat from placing a second
//! order even when the cache has lost the entry (Redis down or restarted).

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ordermesh_platform::Cache;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::problem::Problem;

pub const HEADER: &str = "idempotency-key";

/// The validated `Idempotency-Key` header, if present: 1-128 visible ASCII characters.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 128 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| Problem::invalid_field("Idempotency-Key", "must be 1-128 visible ASCII characters"))?;
    Ok(Some(key.to_owned()))
}

/// A digest of a request body (its canonical JSON).
pub fn fingerprint<T: Serialize>(body: &T) -> String {
    let json = serde_json::to_vec(body).unwrap_or_default();
    hex(&sha2::Sha256::digest(&json))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn cache_key(scope: &str, key: &str) -> String {
    format!(
        "idem:{}",
        hex(&sha2::Sha256::digest(format!("{scope}\0{key}").as_bytes()))
    )
}

#[derive(Serialize, Deserialize)]
struct Stored {
    fingerprint: String,
    status: u16,
    headers: Vec<(String, String)>,
    /// The first body, without personal data.
    body: String,
    /// The id of the resource the first request created.
    resource: String,
}

/// The first answer to a repeated request.
pub struct Replay {
    status: StatusCode,
    headers: Vec<(String, String)>,
    /// The first body, as stored (without personal data).
    pub body: String,
    /// The id of the resource the first request created.
    pub resource: String,
}

impl Replay {
    /// The first answer with `body` (the stored body with the personal data put back), marked as
    /// a replay.
    pub fn with_body(self, body: String) -> Response {
        let mut response = (self.status, body).into_response();
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                response.headers_mut().insert(name, value);
            }
        }
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        response
    }
}

/// The stored answer for `key` in `scope` (e.g. one customer), or `None` for a first use;
/// 422 when the key was used with another body.
pub async fn replay(cache: &Cache, scope: &str, key: &str, fingerprint: &str) -> Result<Option<Replay>, Problem> {
    let Some(bytes) = cache.get(&cache_key(scope, key)).await else {
        return Ok(None);
    };
    let Ok(stored) = serde_json::from_slice::<Stored>(&bytes) else {
        return Ok(None);
    };
    if stored.fingerprint != fingerprint {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency key reused with a different request",
        )
        .detail("this Idempotency-Key was first used with another body; use a new key for a new request"));
    }
    Ok(Some(Replay {
        status: StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK),
        headers: stored.headers,
        body: stored.body,
        resource: stored.resource,
    }))
}

/// Where a response is kept: the cache, for how long, and under which scope, key and body.
pub struct Record<'a> {
    pub cache: &'a Cache,
    pub ttl: std::time::Duration,
    pub scope: &'a str,
    pub key: &'a str,
    pub fingerprint: &'a str,
}

/// Keeps an answer for replay: status, headers, the body without personal data, and the id of
/// the created resource (to put the personal data back from).
pub async fn store(record: Record<'_>, status: StatusCode, headers: &[(&str, String)], body: &str, resource: &str) {
    let Record {
        cache,
        ttl,
        scope,
        key,
        fingerprint,
    } = record;
    let stored = Stored {
        fingerprint: fingerprint.to_owned(),
        status: status.as_u16(),
        headers: headers.iter().map(|(n, v)| ((*n).to_owned(), v.clone())).collect(),
        body: body.to_owned(),
        resource: resource.to_owned(),
    };
    if let Ok(bytes) = serde_json::to_vec(&stored) {
        cache.set_with_ttl(&cache_key(scope, key), &bytes, ttl).await;
    }
}
