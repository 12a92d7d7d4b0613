//! The one error type of the service layer and its single mapping to `tonic::Status` with
//! `google.rpc` rich details (BadRequest field violations, ErrorInfo), so callers and grpcurl
//! can see why a call failed.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The error domain reported in `google.rpc.ErrorInfo`.
pub const ERROR_DOMAIN: &str = "ordermesh";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `items[2].quantity`.
    pub field: String,
    pub description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid request: {}", summarize(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{resource} {id} not found")]
    NotFound { resource: &'static str, id: String },
    /// `field` names what collides; the value is not echoed (it may be personal data).
    #[error("{resource} with this {field} already exists")]
    AlreadyExists {
        resource: &'static str,
        field: &'static str,
    },
    /// The request is valid but the resource is not in a state that allows it.
    #[error("{message}")]
    FailedPrecondition { reason: &'static str, message: String },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("deadline exceeded")]
    DeadlineExceeded,
    #[error("conflict: {0}")]
    Aborted(String),
    /// Anything unexpected. Logged with its cause; the caller sees only "internal error".
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

fn summarize(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    pub fn not_found(resource: &'static str, id: impl std::fmt::Display) -> Self {
        Self::NotFound {
            resource,
            id: id.to_string(),
        }
    }

    pub fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::FailedPrecondition {
            reason,
            message: message.into(),
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    /// The stable machine-readable reason reported in ErrorInfo.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "INVALID_ARGUMENT",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::AlreadyExists { .. } => "ALREADY_EXISTS",
            Self::FailedPrecondition { reason, .. } => reason,
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::PermissionDenied(_) => "PERMISSION_DENIED",
            Self::ResourceExhausted(_) => "RESOURCE_EXHAUSTED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::Aborted(_) => "ABORTED",
            Self::Internal(_) => "INTERNAL",
        }
    }

    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound { .. } => Code::NotFound,
            Self::AlreadyExists { .. } => Code::AlreadyExists,
            Self::FailedPrecondition { .. } => Code::FailedPrecondition,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::DeadlineExceeded => Code::DeadlineExceeded,
            Self::Aborted(_) => Code::Aborted,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        let mut details = ErrorDetails::new();
        let mut metadata = std::collections::HashMap::new();
        match &error {
            ServiceError::InvalidArgument(violations) => {
                for v in violations {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
            }
            ServiceError::NotFound { resource, .. } | ServiceError::AlreadyExists { resource, .. } => {
                metadata.insert("resource".to_owned(), (*resource).to_owned());
            }
            ServiceError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
            }
            _ => {}
        }
        details.set_error_info(error.reason(), ERROR_DOMAIN, metadata);
        let message = match &error {
            ServiceError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        Status::with_error_details(error.code(), message, details)
    }
}

impl From<crate::db::StoreError> for ServiceError {
    fn from(error: crate::db::StoreError) -> Self {
        use crate::db::StoreError;
        match error {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Self::Unavailable("database unavailable".to_owned())
            }
            other => Self::Internal(other.into()),
        }
    }
}

/// Lets a gRPC handler use `?` on a store call directly.
impl From<crate::db::StoreError> for Status {
    fn from(error: crate::db::StoreError) -> Self {
        ServiceError::from(error).into()
    }
}

impl From<sqlx::Error> for ServiceError {
    fn from(error: sqlx::Error) -> Self {
        crate::db::StoreError::from(error).into()
    }
}

/// Collects field violations so a request reports its problems at once: the first
/// [`Violations::MAX`] of them, since they travel in the status's message and details headers,
/// whose size is bounded (a list of 500 bad ids must not turn a 400 into a transport error).
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>, usize);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a violation of `field` unless `ok`.
    pub fn check(&mut self, ok: bool, field: impl Into<String>, description: impl Into<String>) -> &mut Self {
        if !ok {
            self.add(field, description);
        }
        self
    }

    /// Violations reported with one answer.
    pub const MAX: usize = 20;

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) -> &mut Self {
        self.1 += 1;
        if self.0.len() < Self::MAX {
            self.0.push(FieldViolation {
                field: field.into(),
                description: description.into(),
            });
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` when nothing was recorded, else `InvalidArgument` with every violation.
    pub fn into_result(self) -> Result<(), ServiceError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut violations = self.0;
        if self.1 > violations.len() {
            violations.push(FieldViolation {
                field: "request".to_owned(),
                description: format!("and {} more problems", self.1 - violations.len()),
            });
        }
        Err(ServiceError::InvalidArgument(violations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_report_the_first_twenty_and_count_the_rest() {
        let mut v = Violations::new();
        for i in 0..25 {
            v.add(format!("ids[{i}]"), "is not an id");
        }
        let Err(ServiceError::InvalidArgument(reported)) = v.into_result() else {
            panic!("violations must fail the request");
        };
        assert_eq!(reported.len(), Violations::MAX + 1);
        assert_eq!(reported[19].field, "ids[19]");
        assert_eq!(reported[20].description, "and 5 more problems");
    }

    #[test]
    fn field_violations_travel_as_bad_request_details() {
        let mut v = Violations::new();
        v.check(false, "sku", "must not be empty")
            .check(true, "name", "unused")
            .add("price.currency_code", "not ISO-4217");
        let status: Status = v.into_result().unwrap_err().into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().expect("BadRequest detail");
        let fields: Vec<_> = bad.field_violations.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["sku", "price.currency_code"]);
        assert_eq!(details.error_info().unwrap().reason, "INVALID_ARGUMENT");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status: Status = ServiceError::internal(anyhow::anyhow!("password=hunter2")).into();
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn precondition_reason_is_reported() {
        let status: Status = ServiceError::precondition("ORDER_ALREADY_SHIPPED", "order is shipped").into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(
            status.get_error_details().error_info().unwrap().reason,
            "ORDER_ALREADY_SHIPPED"
        );
    }
}
