//! `/api/v1/audit`: the audit trail (admins only: query it, record an event), served by
//! audit-svc over gRPC.

use axum::Json;
use axum::http::StatusCode;
use ordermesh_proto::audit as pb;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Shared, next_token};
use crate::auth::Caller;
use crate::extract::{ApiJson, ApiQuery, page_size, time_range};
use crate::models::{AuditEntry, AuditPage, RecordAuditEvent};
use crate::problem::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct QueryAudit {
    #[param(max_length = 256)]
    pub actor_id: Option<String>,
    #[param(max_length = 64)]
    pub entity_type: Option<String>,
    #[param(max_length = 128)]
    pub entity_id: Option<String>,
    /// An action code, or a prefix of codes ending in `.*` (`order.*`).
    #[param(pattern = "^([a-z0-9._]{1,128}(\\.\\*)?)?$", example = "order.*")]
    pub action: Option<String>,
    #[param(max_length = 128)]
    pub correlation_id: Option<String>,
    /// Only entries of actions at or after this instant (RFC 3339).
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only entries of actions before this instant (RFC 3339); none when it is not after `from`.
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    #[param(minimum = 1, maximum = 200)]
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// Query the audit trail, newest first.
#[utoipa::path(get, path = "/api/v1/audit/logs", tag = "audit", params(QueryAudit),
    responses((status = 200, description = "A page of audit entries", body = AuditPage)))]
pub async fn logs(state: Shared, caller: Caller, ApiQuery(q): ApiQuery<QueryAudit>) -> ApiResult<Json<AuditPage>> {
    let page_size = page_size(q.page_size)?;
    let Some((start_time, end_time)) = time_range(q.from, q.to) else {
        return Ok(Json(AuditPage {
            items: Vec::new(),
            next_page_token: None,
        }));
    };
    let request = pb::QueryAuditLogsRequest {
        start_time,
        end_time,
        actor_id: q.actor_id.unwrap_or_default(),
        entity_type: q.entity_type.unwrap_or_default(),
        entity_id: q.entity_id.unwrap_or_default(),
        action: q.action.unwrap_or_default(),
        correlation_id: q.correlation_id.unwrap_or_default(),
        page_size,
        page_token: q.page_token.unwrap_or_default(),
        ..Default::default()
    };
    let response = state
        .clients
        .audit
        .read
        .clone()
        .query_audit_logs(caller.ctx().request(request))
        .await?
        .into_inner();
    Ok(Json(AuditPage {
        items: response.entries.into_iter().map(AuditEntry::from_proto).collect(),
        next_page_token: next_token(response.next_page_token),
    }))
}

/// Record an event in the audit trail, as the calling admin.
#[utoipa::path(post, path = "/api/v1/audit/logs", tag = "audit", request_body = RecordAuditEvent,
    responses((status = 201, description = "The appended entry (a repeat with the same `eventId`: the first one)",
        body = AuditEntry)))]
pub async fn record(
    state: Shared,
    caller: Caller,
    ApiJson(body): ApiJson<RecordAuditEvent>,
) -> ApiResult<(StatusCode, Json<AuditEntry>)> {
    let request = pb::RecordAuditEventRequest {
        actor: None,
        action: body.action,
        entity_type: body.entity_type,
        entity_id: body.entity_id,
        data_subject_id: body.data_subject_id.map(|d| d.to_string()).unwrap_or_default(),
        correlation_id: caller.correlation_id.clone(),
        // Recorded as happening now: an entry of the past is the services' to make (gRPC), with
        // the time their own event carries.
        occur_time: None,
        details: body.details.as_ref().map(ordermesh_platform::convert::to_struct),
        event_id: body.event_id.unwrap_or_default(),
    };
    let entry = state
        .clients
        .audit
        .write
        .clone()
        .record_audit_event(caller.ctx().request(request))
        .await?
        .into_inner()
        .entry
        .ok_or_else(Problem::internal)?;
    Ok((StatusCode::CREATED, Json(AuditEntry::from_proto(entry))))
}
