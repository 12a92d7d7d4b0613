//! RFC 9457 problem details: every error the BFF answers is `application/problem+json` with a
//! stable `type` URI, a title, the HTTP status and a safe detail (never a stack trace or a
//! token). gRPC statuses map to problems in exactly one function, [`Problem::from_status`];
//! a FAILED_PRECONDITION whose `google.rpc.ErrorInfo` reason is in [`PRECONDITION_TYPES`] gets
//! a type of its own.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ordermesh_platform::error::ERROR_DOMAIN;
use serde::{Deserialize, Serialize};
use tonic_types::StatusExt;
use utoipa::ToSchema;

/// Base of every problem `type` URI.
pub const TYPE_BASE: &str = "https://ordermesh.dev/problems/";
pub const CONTENT_TYPE: &str = "application/problem+json";

/// Slug of a FAILED_PRECONDITION without a reason of [`PRECONDITION_TYPES`].
pub const FAILED_PRECONDITION: &str = "failed-precondition";

/// The FAILED_PRECONDITION reasons the services report in `google.rpc.ErrorInfo` (domain
/// `ordermesh`) and the slug of the problem type each becomes (the reason in kebab-case). Only
/// these reasons name a type: any other reason is [`FAILED_PRECONDITION`], so a string from a
/// peer never becomes a type. The README's error list describes each.
pub const PRECONDITION_TYPES: &[(&str, &str)] = &[
    // customer-svc
    ("CUSTOMER_ERASED", "customer-erased"),
    // order-svc
    ("CUSTOMER_NOT_ACTIVE", "customer-not-active"),
    ("ORDER_STATUS_CONFLICT", "order-status-conflict"),
    ("PRODUCT_UNAVAILABLE", "product-unavailable"),
    ("MIXED_CURRENCIES", "mixed-currencies"),
    ("ORDER_TOTAL_TOO_LARGE", "order-total-too-large"),
    // payment-svc
    ("PAYMENT_STATE", "payment-state"),
    ("NOTHING_TO_REFUND", "nothing-to-refund"),
    ("AMOUNT_EXCEEDS_REFUNDABLE", "amount-exceeds-refundable"),
    ("AMOUNT_EXCEEDS_AUTHORIZATION", "amount-exceeds-authorization"),
    ("OPERATION_IN_PROGRESS", "operation-in-progress"),
    ("IDEMPOTENCY_KEY_REUSED", "idempotency-key-reused"),
    // product-svc
    ("STOCK_BELOW_RESERVED", "stock-below-reserved"),
    ("RESERVATION_STATE", "reservation-state"),
];

/// The problem slug of a FAILED_PRECONDITION `status`: its reason's entry in
/// [`PRECONDITION_TYPES`] when it carries an ErrorInfo of the `ordermesh` domain with a known
/// reason, else [`FAILED_PRECONDITION`].
fn precondition_slug(status: &tonic::Status) -> &'static str {
    status
        .get_error_details()
        .error_info()
        .filter(|info| info.domain == ERROR_DOMAIN)
        .and_then(|info| PRECONDITION_TYPES.iter().find(|(reason, _)| *reason == info.reason))
        .map_or(FAILED_PRECONDITION, |(_, slug)| slug)
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// Path of the field, e.g. `items[0].quantity`.
    pub field: String,
    pub message: String,
}

/// An RFC 9457 problem, boxed so `Result<_, Problem>` stays small; its fields are those of
/// [`ProblemDocument`] (through `Deref`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Problem(Box<ProblemDocument>);

impl std::ops::Deref for Problem {
    type Target = ProblemDocument;
    fn deref(&self) -> &ProblemDocument {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemDocument {
        &mut self.0
    }
}

/// An RFC 9457 problem document (`application/problem+json`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Problem)]
pub struct ProblemDocument {
    /// Stable URI identifying the kind of problem, e.g. `https://ordermesh.dev/problems/not-found`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// Explanation specific to this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Invalid fields, for validation problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Correlation id of the request (also in the `X-Correlation-Id` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// W3C trace id of the request (32 hex digits), when the BFF exports traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Seconds to wait before retrying (rate limits).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str) -> Self {
        Self(Box::new(ProblemDocument {
            kind: format!("{TYPE_BASE}{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
            correlation_id: None,
            trace_id: None,
            retry_after: None,
        }))
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request").detail(detail)
    }

    /// A request whose fields are invalid.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut problem = Self::new(StatusCode::BAD_REQUEST, "validation-error", "Invalid request");
        problem.detail = Some(
            errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        );
        problem.errors = errors;
        problem
    }

    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized").detail(detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(detail)
    }

    /// A client token whose identity has no customer profile yet (first sign-in).
    pub fn customer_profile_missing() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "customer-profile-missing",
            "No customer profile for this sign-in",
        )
        .detail("create it with POST /api/v1/customers/me")
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error")
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service-unavailable",
            "Service unavailable",
        )
        .detail(detail)
    }

    pub fn timeout() -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", "Request timed out")
            .detail("the request took longer than the BFF allows")
    }

    pub fn too_many_requests(retry_after: u64) -> Self {
        let mut problem = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests")
            .detail(format!("request budget exhausted; retry in {retry_after} s"));
        problem.retry_after = Some(retry_after);
        problem
    }

    /// The single mapping of a gRPC status from a service to an HTTP problem.
    pub fn from_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let message = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange => {
                let details = status.get_error_details();
                let errors: Vec<FieldError> = details
                    .bad_request()
                    .map(|bad| {
                        bad.field_violations
                            .iter()
                            .map(|v| FieldError {
                                field: camel_path(&v.field),
                                message: v.description.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if errors.is_empty() {
                    Self::bad_request(message)
                } else {
                    Self::validation(errors)
                }
            }
            Code::NotFound => Self::not_found(message),
            Code::AlreadyExists => Self::new(StatusCode::CONFLICT, "already-exists", "Already exists").detail(message),
            Code::FailedPrecondition => Self::new(
                StatusCode::CONFLICT,
                precondition_slug(status),
                "Not allowed in the current state",
            )
            .detail(message),
            Code::Aborted => Self::new(
                StatusCode::CONFLICT,
                "concurrent-modification",
                "Concurrent modification",
            )
            .detail(message),
            Code::PermissionDenied => Self::forbidden(message),
            Code::Unauthenticated => Self::unauthorized(message),
            Code::ResourceExhausted => {
                let mut problem = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests");
                problem.detail = Some(message);
                problem.retry_after = Some(1);
                problem
            }
            Code::Unavailable | Code::Cancelled => {
                Self::unavailable("a service this request needs is unavailable; retry later")
            }
            Code::DeadlineExceeded => Self::timeout(),
            Code::Unimplemented => Self::new(StatusCode::NOT_IMPLEMENTED, "not-implemented", "Not implemented"),
            Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => {
                tracing::error!(code = ?status.code(), message = status.message(), "service failed");
                Self::internal()
            }
        }
    }
}

/// `items[0].product_id` → `items[0].productId`: services name proto fields, clients see JSON names.
fn camel_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl From<tonic::Status> for Problem {
    fn from(status: tonic::Status) -> Self {
        Self::from_status(&status)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The result type of every handler.
pub type ApiResult<T> = Result<T, Problem>;

#[cfg(test)]
mod tests {
    use super::*;
    use ordermesh_platform::ServiceError;

    #[test]
    fn grpc_statuses_map_to_http_problems() {
        let cases = [
            (tonic::Status::not_found("x"), 404, "not-found"),
            (tonic::Status::already_exists("x"), 409, "already-exists"),
            (tonic::Status::failed_precondition("x"), 409, "failed-precondition"),
            (tonic::Status::aborted("x"), 409, "concurrent-modification"),
            (tonic::Status::permission_denied("x"), 403, "forbidden"),
            (tonic::Status::unauthenticated("x"), 401, "unauthorized"),
            (tonic::Status::resource_exhausted("x"), 429, "rate-limited"),
            (tonic::Status::unavailable("x"), 503, "service-unavailable"),
            (tonic::Status::deadline_exceeded("x"), 504, "timeout"),
            (tonic::Status::internal("secret"), 500, "internal"),
            (tonic::Status::invalid_argument("x"), 400, "bad-request"),
        ];
        for (status, http, slug) in cases {
            let problem = Problem::from_status(&status);
            assert_eq!(problem.status, http, "{status:?}");
            assert_eq!(problem.kind, format!("{TYPE_BASE}{slug}"));
            assert!(!problem.detail.clone().unwrap_or_default().contains("secret"));
        }
    }

    fn precondition(domain: &str, reason: &str) -> tonic::Status {
        let mut details = tonic_types::ErrorDetails::new();
        details.set_error_info(reason, domain, std::collections::HashMap::new());
        tonic::Status::with_error_details(tonic::Code::FailedPrecondition, "not now", details)
    }

    #[test]
    fn known_precondition_reasons_have_their_own_type() {
        let status: tonic::Status = ServiceError::precondition("ORDER_STATUS_CONFLICT", "order is delivered").into();
        let problem = Problem::from_status(&status);
        assert_eq!(problem.status, 409);
        assert_eq!(problem.kind, format!("{TYPE_BASE}order-status-conflict"));
        assert_eq!(problem.title, "Not allowed in the current state");
        assert_eq!(problem.detail.as_deref(), Some("order is delivered"));
        for (reason, slug) in PRECONDITION_TYPES {
            assert_eq!(*slug, reason.to_ascii_lowercase().replace('_', "-"), "slug of {reason}");
            let problem = Problem::from_status(&precondition(ERROR_DOMAIN, reason));
            assert_eq!(
                (problem.status, problem.kind.clone()),
                (409, format!("{TYPE_BASE}{slug}"))
            );
        }
    }

    #[test]
    fn other_preconditions_are_generic() {
        let generic = format!("{TYPE_BASE}{FAILED_PRECONDITION}");
        for status in [
            // No details at all.
            tonic::Status::failed_precondition("x"),
            // Reasons outside the table: an unknown one, a path, a known one in another case.
            precondition(ERROR_DOMAIN, "SOMETHING_NEW"),
            precondition(ERROR_DOMAIN, "../../evil"),
            precondition(ERROR_DOMAIN, "order_status_conflict"),
            // A known reason from another domain.
            precondition("example.com", "ORDER_STATUS_CONFLICT"),
            // Details without an ErrorInfo.
            tonic::Status::with_error_details(
                tonic::Code::FailedPrecondition,
                "x",
                tonic_types::ErrorDetails::with_bad_request_violation("field", "wrong"),
            ),
        ] {
            let problem = Problem::from_status(&status);
            assert_eq!(
                (problem.status, problem.kind.clone()),
                (409, generic.clone()),
                "{status:?}"
            );
        }
    }

    #[test]
    fn field_violations_become_errors() {
        let status: tonic::Status = ServiceError::invalid("items[0].product_id", "must be a UUID").into();
        let problem = Problem::from_status(&status);
        assert_eq!(problem.status, 400);
        assert_eq!(
            problem.errors,
            [FieldError {
                field: "items[0].productId".into(),
                message: "must be a UUID".into()
            }]
        );
    }
}
