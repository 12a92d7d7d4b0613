//! The REST routes under `/api/v1`, one module per resource. Each handler is documented with
//! `#[utoipa::path]`, from which the OpenAPI document is generated; authorization happens
//! before any handler runs (see [`crate::auth::guard`] and [`crate::policy`]). [`health`] serves
//! `/healthz` and `/readyz`, outside `/api/v1`.

pub mod admin;
pub mod analytics;
pub mod audit;
pub mod customers;
pub mod gdpr;
pub mod health;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod products;

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::AppState;
use crate::problem::Problem;

pub type Shared = axum::extract::State<Arc<AppState>>;

/// `None` for the empty page token of the last page.
/// The `expectedVersion` of an update: a version is never negative.
pub fn expected_version(version: Option<i64>) -> Result<Option<i64>, Problem> {
    match version {
        Some(v) if v < 0 => Err(Problem::invalid_field("expectedVersion", "must not be negative")),
        other => Ok(other),
    }
}

/// An update that changes nothing still honours `expectedVersion`: 409 unless it is current.
pub fn check_version(expected: Option<i64>, current: i64) -> Result<(), Problem> {
    match expected {
        // As the services answer a stale version (ABORTED).
        Some(expected) if expected != current => Err(Problem::new(
            StatusCode::CONFLICT,
            "concurrent-modification",
            "Concurrent modification",
        )
        .detail(format!("the resource is at version {current}, not {expected}"))),
        _ => Ok(()),
    }
}

pub fn next_token(token: String) -> Option<String> {
    (!token.is_empty()).then_some(token)
}

/// A `201 Created` answer with `Location`.
pub fn created<T: Serialize>(location: &str, body: T) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
