//! `/api/v1/audit`: the audit trail (admins only), served by audit-svc over gRPC.

use axum::Json;
use ordermesh_proto::audit as pb;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Shared, next_token};
use crate::auth::Caller;
use crate::extract::{ApiQuery, page_size};
use crate::models::{AuditEntry, AuditPage};
use crate::problem::ApiResult;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct QueryAudit {
    pub actor_id: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub action: Option<String>,
    pub correlation_id: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// Query the audit trail, newest first.
#[utoipa::path(get, path = "/api/v1/audit/logs", tag = "audit", params(QueryAudit),
    responses((status = 200, description = "A page of audit entries", body = AuditPage)))]
pub async fn logs(state: Shared, caller: Caller, ApiQuery(q): ApiQuery<QueryAudit>) -> ApiResult<Json<AuditPage>> {
    let request = pb::QueryAuditLogsRequest {
        actor_id: q.actor_id.unwrap_or_default(),
        entity_type: q.entity_type.unwrap_or_default(),
        entity_id: q.entity_id.unwrap_or_default(),
        action: q.action.unwrap_or_default(),
        correlation_id: q.correlation_id.unwrap_or_default(),
        page_size: page_size(q.page_size)?,
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
