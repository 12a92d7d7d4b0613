//! Request extractors whose rejections are problem+json: JSON bodies (unknown fields are
//! rejected by the DTOs' `deny_unknown_fields`, so no mass assignment), query strings and path
//! parameters.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::problem::Problem;

mod strict;

/// A JSON request body of type `T`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            })
            .unwrap_or(false);
        if !json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            )
            .detail("the body must be application/json"));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(body_rejection)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON").detail(e.to_string())
        })?;
        if !value.is_object() {
            return Err(Problem::bad_request("the body must be a JSON object"));
        }
        if has_nul(&value) {
            return Err(Problem::bad_request("strings must not contain NUL characters"));
        }
        let mut value = value;
        integral_numbers_as_integers(&mut value);
        strict::from_value(value).map(ApiJson).map_err(|e| {
            Problem::new(StatusCode::BAD_REQUEST, "invalid-body", "Invalid request body").detail(e.to_string())
        })
    }
}

/// JSON has one number type: `2.0` is the integer 2 to JSON Schema (and to JavaScript), while
/// serde would refuse it for an integer field. Floats with no fraction become integers (within
/// the range where a double holds every integer exactly); a float field takes an integer as well.
fn integral_numbers_as_integers(value: &mut serde_json::Value) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() <= EXACT
            {
                *value = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn body_rejection(rejection: BytesRejection) -> Problem {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        payload_too_large()
    } else {
        Problem::bad_request(rejection.body_text())
    }
}

pub fn payload_too_large() -> Problem {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large")
        .detail("the request body is larger than the BFF accepts")
}

/// Query parameters of type `T`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query parameters").detail(e.body_text())
            })
    }
}

/// Path parameters of type `T`.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| Problem::bad_request(e.body_text()))
    }
}

/// Page size of list routes: 1-200, default 50 (decided by the service).
pub fn page_size(value: Option<u32>) -> Result<i32, Problem> {
    match value {
        None => Ok(0),
        Some(n @ 1..=200) => Ok(n as i32),
        Some(_) => Err(Problem::invalid_field("pageSize", "must be between 1 and 200")),
    }
}

/// A `from`/`to` range of a list's query (RFC 3339 instants, `from` inclusive, `to` exclusive),
/// as the services' timestamps; `None` when `to` is not after `from`: a range that holds no
/// instant, whose list is empty (JSON Schema cannot relate two parameters, so an API that
/// refused it would refuse requests its document calls valid).
pub type TimeRange = (Option<prost_types::Timestamp>, Option<prost_types::Timestamp>);

pub fn time_range(
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<TimeRange> {
    if let (Some(from), Some(to)) = (from, to)
        && to <= from
    {
        return None;
    }
    let timestamp = |t: chrono::DateTime<chrono::Utc>| ordermesh_platform::convert::timestamp(t);
    Some((from.map(timestamp), to.map(timestamp)))
}

/// Values from an untrusted client that will be sent on: bounded, no control characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), Problem> {
    if value.chars().count() > max {
        return Err(Problem::invalid_field(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(Problem::invalid_field(field, "must not contain control characters"));
    }
    Ok(())
}
