//! Opaque page tokens and page sizes shared by every List RPC (DESIGN §2).
//!
//! A token is the base64url of a small JSON document holding the sort key of the last item of
//! the previous page plus a fingerprint of the request's filters, so a token is stable across
//! pages (keyset pagination: rows inserted meanwhile never shift a page) and a token used with
//! other filters is rejected with INVALID_ARGUMENT instead of silently returning wrong rows.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ServiceError;

/// Page size when the request says 0.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Larger requested sizes are lowered to this.
pub const MAX_PAGE_SIZE: usize = 200;
/// Tokens longer than this are rejected without decoding.
const MAX_TOKEN_LEN: usize = 1024;

/// The effective page size of a request: 0 → [`DEFAULT_PAGE_SIZE`], above
/// [`MAX_PAGE_SIZE`] → the maximum, negative → INVALID_ARGUMENT on `page_size`.
pub fn page_size(requested: i32) -> Result<usize, ServiceError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(ServiceError::invalid("page_size", "must not be negative")),
        n => Ok((n as usize).min(MAX_PAGE_SIZE)),
    }
}

#[derive(Serialize, serde::Deserialize)]
struct Envelope<K> {
    /// Sort key of the last item returned.
    k: K,
    /// Fingerprint of the filters the token belongs to.
    f: String,
}

/// A short fingerprint of a request's filters (anything that must not change between pages).
pub fn fingerprint(filters: &impl Serialize) -> String {
    use sha2::Digest;
    let bytes = serde_json::to_vec(filters).unwrap_or_default();
    let digest = sha2::Sha256::digest(&bytes);
    URL_SAFE_NO_PAD.encode(&digest[..9])
}

/// Encodes the sort key of the last item of a page for requests with `filters`.
pub fn encode<K: Serialize>(last_key: &K, filters: &impl Serialize) -> String {
    let envelope = Envelope {
        k: last_key,
        f: fingerprint(filters),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&envelope).unwrap_or_default())
}

/// Decodes `token` (empty → `None`, the first page). A token that is malformed or was issued for
/// other filters is INVALID_ARGUMENT on `page_token`.
pub fn decode<K: DeserializeOwned>(token: &str, filters: &impl Serialize) -> Result<Option<K>, ServiceError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        ServiceError::invalid(
            "page_token",
            "is not a token returned by a previous call with these filters",
        )
    };
    if token.len() > MAX_TOKEN_LEN {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let envelope: Envelope<K> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if envelope.f != fingerprint(filters) {
        return Err(invalid());
    }
    Ok(Some(envelope.k))
}

/// Splits a result fetched with `limit + 1` rows into the page and its next token.
pub fn finish<T, K: Serialize>(
    mut rows: Vec<T>,
    limit: usize,
    filters: &impl Serialize,
    key_of: impl Fn(&T) -> K,
) -> (Vec<T>, String) {
    if rows.len() > limit {
        rows.truncate(limit);
        let token = rows
            .last()
            .map(|last| encode(&key_of(last), filters))
            .unwrap_or_default();
        (rows, token)
    } else {
        (rows, String::new())
    }
}

/// One page of a keyset-paginated list, the way every List RPC reads: decodes `token` (bound to
/// `filters`), fetches `limit + 1` rows after its key, and returns at most `limit` of them with
/// the token of the next page (empty on the last one).
pub async fn fetch_page<T, K, E, Fut>(
    limit: usize,
    token: &str,
    filters: &impl Serialize,
    key_of: impl Fn(&T) -> K,
    fetch: impl FnOnce(Option<K>, usize) -> Fut,
) -> Result<(Vec<T>, String), ServiceError>
where
    K: Serialize + DeserializeOwned,
    Fut: std::future::Future<Output = Result<Vec<T>, E>>,
    ServiceError: From<E>,
{
    let after = decode(token, filters)?;
    let rows = fetch(after, limit + 1).await?;
    Ok(finish(rows, limit, filters, key_of))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(page_size(0).unwrap(), 50);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(10_000).unwrap(), 200);
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_filters() {
        let token = encode(&(1_700_000_000_000_000i64, "abc".to_owned()), &("cat", true));
        let key: Option<(i64, String)> = decode(&token, &("cat", true)).unwrap();
        assert_eq!(key, Some((1_700_000_000_000_000, "abc".to_owned())));
        assert!(decode::<(i64, String)>(&token, &("other", true)).is_err());
        assert!(decode::<(i64, String)>("not-a-token!", &()).is_err());
        assert!(decode::<(i64, String)>("", &()).unwrap().is_none());
    }

    #[tokio::test]
    async fn fetch_page_walks_a_list_page_by_page() {
        let all: Vec<i32> = (1..=5).collect();
        let fetch = |after: Option<i32>, n: usize| {
            let rows: Vec<i32> = all
                .iter()
                .copied()
                .filter(|x| after.is_none_or(|a| *x > a))
                .take(n)
                .collect();
            async move { Ok::<_, ServiceError>(rows) }
        };
        let (first, token) = fetch_page(2, "", &"f", |x| *x, fetch).await.unwrap();
        assert_eq!(first, [1, 2]);
        let (second, token) = fetch_page(2, &token, &"f", |x| *x, fetch).await.unwrap();
        assert_eq!(second, [3, 4]);
        let (last, token) = fetch_page(2, &token, &"f", |x| *x, fetch).await.unwrap();
        assert_eq!(last, [5]);
        assert!(token.is_empty());
        assert!(fetch_page(2, "garbage", &"f", |x| *x, fetch).await.is_err());
    }

    #[test]
    fn finish_sets_a_token_only_when_more_rows_exist() {
        let (page, token) = finish(vec![1, 2, 3], 2, &(), |n| *n);
        assert_eq!(page, [1, 2]);
        assert_eq!(decode::<i32>(&token, &()).unwrap(), Some(2));
        let (page, token) = finish(vec![1, 2], 2, &(), |n| *n);
        assert_eq!(page, [1, 2]);
        assert!(token.is_empty());
    }
}
