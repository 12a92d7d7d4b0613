//! The GDPR rights over REST: export (`/customers/{id}/gdpr/export`), erasure
//! (`DELETE /customers/{id}`), consents (`/customers/{id}/consents`), and the GDPR trail of a
//! data subject (`/audit/gdpr/{customerId}`). customer-svc decides who may act for whom: a
//! client only for itself (another customer is 404, as an unknown one), `customer-service` and
//! `admin` for anyone.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ordermesh_proto::audit as audit_pb;
use ordermesh_proto::customer as pb;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Shared, next_token};
use crate::auth::{Caller, forget_customer};
use crate::extract::{ApiJson, ApiPath, ApiQuery, page_size};
use crate::models::{AuditEntry, AuditPage, Consent, ConsentPage, DataExport, Erasure, ExportStatus, RecordConsent};
use crate::problem::{ApiResult, Problem};

/// Seconds a client is asked to wait before asking again for a pending export.
const EXPORT_RETRY_AFTER: &str = "2";

fn uuid(field: &str, value: &str) -> Result<(), Problem> {
    uuid::Uuid::parse_str(value)
        .map(drop)
        .map_err(|_| Problem::invalid_field(field, "must be a UUID"))
}

fn export_location(customer_id: &str, export_id: &str) -> String {
    format!("/api/v1/customers/{customer_id}/gdpr/export/{export_id}")
}

/// Start an export of everything the platform holds about a customer (right of access).
///
/// Answers at once with the pending export and its `Location`; a request while an export of the
/// customer is pending answers with that export. The bundle is kept for 7 days.
#[utoipa::path(post, path = "/api/v1/customers/{id}/gdpr/export", tag = "gdpr",
    params(("id" = uuid::Uuid, Path, description = "Customer id")),
    responses((status = 202, description = "Export started (or already pending)", body = DataExport,
        headers(("Location" = String, description = "URL of the export")))))]
pub async fn start_export(state: Shared, caller: Caller, ApiPath(id): ApiPath<String>) -> ApiResult<Response> {
    uuid("id", &id)?;
    let export = state
        .clients
        .customer
        .write
        .clone()
        .export_customer_data(caller.ctx().request(pb::ExportCustomerDataRequest { customer_id: id }))
        .await?
        .into_inner()
        .export
        .and_then(DataExport::from_proto)
        .ok_or_else(Problem::internal)?;
    let location = export_location(&export.customer_id, &export.export_id);
    let mut response = (StatusCode::ACCEPTED, Json(export)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// An export: its status, then (once `ready`) the bundle.
#[utoipa::path(get, path = "/api/v1/customers/{id}/gdpr/export/{exportId}", tag = "gdpr",
    params(("id" = uuid::Uuid, Path, description = "Customer id"),
           ("exportId" = uuid::Uuid, Path, description = "Export id")),
    responses((status = 200, description = "The export; `bundle` once ready, `Retry-After` while pending",
        body = DataExport)))]
pub async fn get_export(
    state: Shared,
    caller: Caller,
    ApiPath((id, export_id)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    uuid("id", &id)?;
    uuid("exportId", &export_id)?;
    let request = pb::GetCustomerDataExportRequest {
        customer_id: id,
        export_id,
    };
    let export = state
        .clients
        .customer
        .read
        .clone()
        .get_customer_data_export(caller.ctx().request(request))
        .await?
        .into_inner()
        .export
        .and_then(DataExport::from_proto)
        .ok_or_else(Problem::internal)?;
    let pending = export.status == ExportStatus::Pending;
    // `Cache-Control: no-store`, as on every authenticated answer (see `middleware::finish`).
    let mut response = Json(export).into_response();
    if pending {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(EXPORT_RETRY_AFTER));
    }
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EraseQuery {
    /// Why (no personal data: it is kept in the audit trail); default "data subject request".
    #[param(max_length = 500)]
    pub reason: Option<String>,
}

/// Erase a customer (right to be forgotten).
///
/// The profile is cleared at once; orders, payments and notifications are erased or
/// anonymised by their services (orders still in flight are cancelled and refunded first), and
/// the customer is `erased` when all have confirmed. Amounts, dates and ids of orders and
/// payments stay for accounting, no longer linked to a person. Afterwards the client's sign-in
/// maps to no customer: a repeat by the client is 404, a new sign-up is a new customer. A repeat
/// by staff answers with the same erasure.
#[utoipa::path(delete, path = "/api/v1/customers/{id}", tag = "gdpr",
    params(("id" = uuid::Uuid, Path, description = "Customer id"), EraseQuery),
    responses((status = 202, description = "Erasure requested (or already requested)", body = Erasure)))]
pub async fn erase(
    state: Shared,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EraseQuery>,
) -> ApiResult<Response> {
    uuid("id", &id)?;
    let reason = q
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "data subject request".to_owned());
    let request = pb::EraseCustomerRequest {
        customer_id: id.clone(),
        reason,
    };
    let response = state
        .clients
        .customer
        .write
        .clone()
        .erase_customer(caller.ctx().request(request))
        .await?
        .into_inner();
    forget_customer(&state, &caller).await;
    let erasure = Erasure {
        customer_id: id,
        ..Erasure::from_proto(response)
    };
    Ok((StatusCode::ACCEPTED, Json(erasure)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListConsents {
    /// Only decisions for this purpose.
    #[param(pattern = "^[a-z0-9_]{1,64}$")]
    pub purpose: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// A purpose filter as the document states it: 1-64 characters of `a-z`, `0-9`, `_`.
fn consent_purpose(purpose: Option<String>) -> Result<String, Problem> {
    match purpose {
        None => Ok(String::new()),
        Some(p)
            if (1..=64).contains(&p.len())
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
        {
            Ok(p)
        }
        Some(_) => Err(Problem::invalid_field(
            "purpose",
            "must be 1-64 characters of a-z, 0-9 and '_'",
        )),
    }
}

/// A customer's consent decisions, newest first (the whole history).
#[utoipa::path(get, path = "/api/v1/customers/{id}/consents", tag = "gdpr",
    params(("id" = uuid::Uuid, Path, description = "Customer id"), ListConsents),
    responses((status = 200, description = "A page of consent decisions", body = ConsentPage)))]
pub async fn consents(
    state: Shared,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListConsents>,
) -> ApiResult<Json<ConsentPage>> {
    uuid("id", &id)?;
    let request = pb::ListConsentsRequest {
        customer_id: id,
        purpose: consent_purpose(q.purpose)?,
        page_size: page_size(q.page_size)?,
        page_token: q.page_token.unwrap_or_default(),
    };
    let response = state
        .clients
        .customer
        .read
        .clone()
        .list_consents(caller.ctx().request(request))
        .await?
        .into_inner();
    Ok(Json(ConsentPage {
        items: response.consents.into_iter().map(Consent::from_proto).collect(),
        next_page_token: next_token(response.next_page_token),
    }))
}

/// Record that a customer granted or withdrew a consent (appended to the history).
#[utoipa::path(post, path = "/api/v1/customers/{id}/consents", tag = "gdpr",
    params(("id" = uuid::Uuid, Path, description = "Customer id")), request_body = RecordConsent,
    responses((status = 201, description = "Recorded", body = Consent)))]
pub async fn record_consent(
    state: Shared,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RecordConsent>,
) -> ApiResult<Response> {
    uuid("id", &id)?;
    let default_source = if caller.is_client() {
        "client-portal"
    } else {
        "employee-portal"
    };
    let request = pb::RecordConsentRequest {
        customer_id: id,
        purpose: body.purpose,
        granted: body.granted,
        policy_version: body.policy_version,
        source: body.source.unwrap_or_else(|| default_source.to_owned()),
    };
    let consent = state
        .clients
        .customer
        .write
        .clone()
        .record_consent(caller.ctx().request(request))
        .await?
        .into_inner()
        .consent
        .ok_or_else(Problem::internal)?;
    Ok((StatusCode::CREATED, Json(Consent::from_proto(consent))).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct TrailQuery {
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// The GDPR trail of a data subject: every audit entry about the customer (reads by staff,
/// changes, consents, exports, each step of an erasure), oldest first.
#[utoipa::path(get, path = "/api/v1/audit/gdpr/{customerId}", tag = "audit",
    params(("customerId" = uuid::Uuid, Path, description = "Customer id"), TrailQuery),
    responses((status = 200, description = "A page of audit entries", body = AuditPage)))]
pub async fn trail(
    state: Shared,
    caller: Caller,
    ApiPath(customer_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TrailQuery>,
) -> ApiResult<Json<AuditPage>> {
    uuid("customerId", &customer_id)?;
    let page_size = match q.page_size {
        Some(n @ 1..=500) => n as i32,
        Some(_) => return Err(Problem::invalid_field("pageSize", "must be 1-500")),
        None => 0,
    };
    let request = audit_pb::GetGdprTrailRequest {
        customer_id,
        page_size,
        page_token: q.page_token.unwrap_or_default(),
    };
    let response = state
        .clients
        .audit
        .read
        .clone()
        .get_gdpr_trail(caller.ctx().request(request))
        .await?
        .into_inner();
    Ok(Json(AuditPage {
        items: response.entries.into_iter().map(AuditEntry::from_proto).collect(),
        next_page_token: next_token(response.next_page_token),
    }))
}
