//! `/api/v1/admin`: the admin dashboard's view of the platform and the dead letters of every
//! service, composed from each service's ops API (`ordermesh.ops.v1.OpsService`). Admins only;
//! optionally from allowed networks only (`BFF_ADMIN_ALLOWED_CIDRS`, see
//! [`crate::middleware::admin_networks`]).

use axum::Json;
use futures::future::join_all;
use ordermesh_platform::mesh::Workload;
use ordermesh_proto::ops as pb;
use serde::Deserialize;
use utoipa::IntoParams;

use super::Shared;
use crate::auth::Caller;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::models::{DeadLetter, DeadLetterPage, DiscardDeadLetter, ServiceStatus, SystemStatus};
use crate::problem::{ApiResult, Problem};

/// Dead letters listed when the query does not say, and at most.
const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;

/// Every service's readiness, outbox backlog, consumer lag and dead-letter count.
///
/// A service that does not answer is listed as not ready, with the reason; the call itself
/// succeeds.
#[utoipa::path(get, path = "/api/v1/admin/system", tag = "admin",
    responses((status = 200, description = "The state of every service", body = SystemStatus)))]
pub async fn system(state: Shared, caller: Caller) -> ApiResult<Json<SystemStatus>> {
    let asks = state.clients.ops.iter().map(|(service, client)| {
        let request = caller.ctx().request(pb::GetServiceStatusRequest {});
        let mut client = client.clone();
        async move {
            match client.get_service_status(request).await {
                Ok(answer) => ServiceStatus::from_proto(answer.into_inner()),
                Err(status) => ServiceStatus::unreachable(service.name(), unreachable_reason(&status)),
            }
        }
    });
    let services: Vec<ServiceStatus> = join_all(asks).await;
    let dead_letters = services.iter().filter_map(|s| s.dead_letters).sum();
    Ok(Json(SystemStatus {
        healthy: dead_letters == 0 && services.iter().all(|s| s.ready),
        dead_letters,
        services,
    }))
}

fn unreachable_reason(status: &tonic::Status) -> String {
    format!("did not answer: {:?}: {}", status.code(), status.message())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDeadLetters {
    /// Only this service's, e.g. `order` (or `order-svc`).
    #[param(pattern = "^(product|customer|order|payment|audit|notification)(-svc)?$")]
    pub service: Option<String>,
    /// Only events of this topic, e.g. `order-events`.
    #[param(pattern = "^(order|inventory|payment|customer|notification|gdpr|ops)-events$")]
    pub topic: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    pub page_size: Option<u32>,
}

/// Dead letters of every service (or one), oldest first.
#[utoipa::path(get, path = "/api/v1/admin/dead-letters", tag = "admin", params(ListDeadLetters),
    responses((status = 200, description = "Dead letters, oldest first", body = DeadLetterPage)))]
pub async fn dead_letters(
    state: Shared,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListDeadLetters>,
) -> ApiResult<Json<DeadLetterPage>> {
    let only = query.service.as_deref().map(service_named).transpose()?;
    let size = match query.page_size {
        None => DEFAULT_PAGE_SIZE,
        Some(n @ 1..=MAX_PAGE_SIZE) => n,
        Some(_) => return Err(Problem::invalid_field("pageSize", "must be between 1 and 1000")),
    };
    if let Some(topic) = &query.topic
        && !ordermesh_proto::event_types::topics::ALL.contains(&topic.as_str())
    {
        return Err(Problem::invalid_field("topic", "must be one of the platform's topics"));
    }
    let topic = query.topic.unwrap_or_default();
    let asks = state
        .clients
        .ops
        .iter()
        .filter(|(service, _)| only.is_none_or(|only| only == *service))
        .map(|(service, client)| {
            let request = caller.ctx().request(pb::ListDeadLettersRequest {
                page_size: size as i32,
                topic: topic.clone(),
            });
            let mut client = client.clone();
            async move { (*service, client.list_dead_letters(request).await) }
        });
    let mut items = Vec::new();
    let mut total = 0;
    let mut unavailable_services = Vec::new();
    for (service, answer) in join_all(asks).await {
        match answer {
            Ok(answer) => {
                let answer = answer.into_inner();
                total += answer.total_size;
                items.extend(answer.dead_letters.into_iter().map(DeadLetter::from_proto));
            }
            // Bad input is the same for every service: report it as such.
            Err(status) if status.code() == tonic::Code::InvalidArgument => return Err(status.into()),
            Err(status) => {
                tracing::warn!(service = %service, code = ?status.code(), "dead letters not listed");
                unavailable_services.push(service.name().to_owned());
            }
        }
    }
    items.sort_by_key(|l| (l.dead_lettered_at, l.id));
    items.truncate(size as usize);
    Ok(Json(DeadLetterPage {
        items,
        total,
        unavailable_services,
    }))
}

fn service_named(name: &str) -> Result<Workload, Problem> {
    Workload::of_service(name.strip_suffix("-svc").unwrap_or(name)).ok_or_else(|| {
        Problem::invalid_field(
            "service",
            "must be one of product, customer, order, payment, audit, notification",
        )
    })
}

/// The service holding dead letter `id`, asked of every service; 404 when none has it.
async fn owner(
    state: &Shared,
    caller: &Caller,
    id: u64,
) -> ApiResult<ordermesh_proto::ops::ops_service_client::OpsServiceClient<ordermesh_platform::client::ResilientChannel>>
{
    if id == 0 {
        return Err(Problem::invalid_field("id", "must be a dead-letter id (1 or more)"));
    }
    let asks = state.clients.ops.iter().map(|(_, client)| {
        let request = caller.ctx().request(pb::ListDeadLettersRequest {
            page_size: ordermesh_platform::ops::MAX_PAGE_SIZE as i32,
            topic: String::new(),
        });
        let mut client = client.clone();
        async move {
            let held = client
                .list_dead_letters(request)
                .await
                .map(|answer| answer.into_inner().dead_letters.iter().any(|l| l.id == id));
            (client, held)
        }
    });
    let mut unanswered = false;
    for (client, held) in join_all(asks).await {
        match held {
            Ok(true) => return Ok(client),
            Ok(false) => {}
            Err(_) => unanswered = true,
        }
    }
    Err(if unanswered {
        Problem::unavailable("a service did not answer; the dead letter may be one of its own")
    } else {
        Problem::not_found("no such dead letter (already replayed or discarded?)")
    })
}

/// Deliver a dead letter again to the consumer that failed it (fix the cause first) and remove
/// it from the dead letters. Recorded in the audit log.
#[utoipa::path(post, path = "/api/v1/admin/dead-letters/{id}/replay", tag = "admin",
    params(("id" = u64, Path, minimum = 1, description = "Dead-letter id")),
    responses((status = 200, description = "Replayed; the dead letter as it was", body = DeadLetter)))]
pub async fn replay(state: Shared, caller: Caller, ApiPath(id): ApiPath<u64>) -> ApiResult<Json<DeadLetter>> {
    let mut client = owner(&state, &caller, id).await?;
    let replayed = client
        .replay_dead_letter(caller.ctx().request(pb::ReplayDeadLetterRequest { id }))
        .await?
        .into_inner()
        .dead_letter
        .ok_or_else(Problem::internal)?;
    Ok(Json(DeadLetter::from_proto(replayed)))
}

/// Remove a dead letter without delivering it, for a reason recorded in the audit log.
#[utoipa::path(post, path = "/api/v1/admin/dead-letters/{id}/discard", tag = "admin",
    params(("id" = u64, Path, minimum = 1, description = "Dead-letter id")),
    request_body = DiscardDeadLetter,
    responses((status = 200, description = "Discarded; the dead letter as it was", body = DeadLetter)))]
pub async fn discard(
    state: Shared,
    caller: Caller,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<DiscardDeadLetter>,
) -> ApiResult<Json<DeadLetter>> {
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > ordermesh_platform::ops::MAX_REASON_CHARS {
        return Err(Problem::invalid_field("reason", "must have 1 to 500 characters"));
    }
    let mut client = owner(&state, &caller, id).await?;
    let discarded = client
        .discard_dead_letter(caller.ctx().request(pb::DiscardDeadLetterRequest {
            id,
            reason: reason.to_owned(),
        }))
        .await?
        .into_inner()
        .dead_letter
        .ok_or_else(Problem::internal)?;
    Ok(Json(DeadLetter::from_proto(discarded)))
}
