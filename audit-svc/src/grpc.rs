//! The tonic handlers of `ordermesh.audit.v1.AuditService`: decode, authorize, call the store,
//! map errors through `ServiceError`.
//!
//! Authorization (every RPC needs an authenticated principal; anonymous calls are
//! UNAUTHENTICATED):
//! - QueryAuditLogs, VerifyChain: employees with the `admin` role, and service principals
//!   (ordermesh services, e.g. the BFF for the admin portal). Other employees and clients get
//!   PERMISSION_DENIED.
//! - GetGdprTrail: the same, and `customer-service` employees, who answer data subjects'
//!   questions about what was done with their data.
//! - RecordAuditEvent: service principals (the BFF records employees' reads of customer data;
//!   the actor is taken from the request) and employees (the actor is the caller, whatever the
//!   request says). Clients get PERMISSION_DENIED.

use chrono::{DateTime, Utc};
use ordermesh_platform::auth::{Principal, Role};
use ordermesh_platform::convert::{actor_kind, from_timestamp};
use ordermesh_platform::grpc::{CorrelationId, principal};
use ordermesh_platform::{Actor, ActorKind, ServiceError, Violations, pagination, validate};
use ordermesh_proto::audit as pb;
use ordermesh_proto::audit::audit_service_server::AuditService;
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::convert::from_struct;
use crate::domain::{self, Filter, MAX_DETAILS_BYTES, NewEntry, canonical_json, is_action_code, micros, personal_key};
use crate::store::Store;

type Reply<T> = Result<Response<T>, Status>;

/// Page size when the request says 0.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page size.
pub const MAX_PAGE_SIZE: usize = 500;
/// How far in the future an `occur_time` may lie (clock skew between services).
const MAX_FUTURE_SKEW: chrono::Duration = chrono::Duration::minutes(5);

pub struct AuditApi {
    store: Store,
}

impl AuditApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

/// The GDPR trail of a data subject: also customer-service staff.
fn can_read_gdpr_trail(p: &Principal) -> Result<(), Status> {
    if matches!(p, Principal::Employee { .. }) && p.has_any_role(&[Role::CustomerService]) {
        return Ok(());
    }
    can_read(p)
}

fn can_read(p: &Principal) -> Result<(), Status> {
    match p {
        Principal::Service { .. } => Ok(()),
        Principal::Employee { .. } if p.has_any_role(&[Role::Admin]) => Ok(()),
        Principal::Employee { .. } => {
            Err(ServiceError::PermissionDenied("reading the audit log requires the admin role".into()).into())
        }
        Principal::Client { .. } => {
            Err(ServiceError::PermissionDenied("clients cannot read the audit log".into()).into())
        }
    }
}

/// Not `pagination::page_size`: audit pages are larger than the platform's default and maximum.
fn page_size(requested: i32) -> Result<usize, ServiceError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(ServiceError::invalid("page_size", "must not be negative")),
        n => Ok((n as usize).min(MAX_PAGE_SIZE)),
    }
}

/// The time of `t`, or a violation of `field` when it is not a valid timestamp.
fn time_field(v: &mut Violations, field: &str, t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let time = from_timestamp(t);
    if time.is_none() {
        v.add(field, "is not a valid timestamp");
    }
    time
}

fn filter_of(req: &pb::QueryAuditLogsRequest) -> Result<Filter, ServiceError> {
    let mut v = Violations::new();
    validate::length(&mut v, "actor_id", &req.actor_id, 0, 256);
    validate::length(&mut v, "entity_type", &req.entity_type, 0, 64);
    validate::length(&mut v, "entity_id", &req.entity_id, 0, 128);
    validate::length(&mut v, "correlation_id", &req.correlation_id, 0, 128);
    let (action, action_prefix) = match req.action.strip_suffix(".*") {
        Some(prefix) => (format!("{prefix}."), true),
        None => (req.action.clone(), false),
    };
    if !action.is_empty() && !is_action_code(&action) {
        v.add(
            "action",
            "must be an action code (a-z, 0-9, '.', '_'), optionally ending in \".*\"",
        );
    }
    if ordermesh_proto::common::ActorKind::try_from(req.actor_kind).is_err() {
        v.add("actor_kind", "is not a known actor kind");
    }
    let actor_kind = match actor_kind(req.actor_kind) {
        ActorKind::Unspecified => None,
        kind => Some(kind),
    };
    let start = req
        .start_time
        .as_ref()
        .and_then(|t| time_field(&mut v, "start_time", t));
    let end = req.end_time.as_ref().and_then(|t| time_field(&mut v, "end_time", t));
    if let (Some(s), Some(e)) = (start, end)
        && e <= s
    {
        v.add("end_time", "must be after start_time");
    }
    v.into_result()?;
    Ok(Filter {
        actor_id: req.actor_id.clone(),
        actor_kind,
        entity_type: req.entity_type.clone(),
        entity_id: req.entity_id.clone(),
        action,
        action_prefix,
        correlation_id: req.correlation_id.clone(),
        start_micros: start.map(micros),
        end_micros: end.map(micros),
    })
}

/// Validates a RecordAuditEvent request into the entry to append; `caller` decides the actor.
pub fn record_of(
    req: &pb::RecordAuditEventRequest,
    caller: &Principal,
    correlation: &str,
    now: DateTime<Utc>,
) -> Result<NewEntry, ServiceError> {
    let mut v = Violations::new();
    let (actor, source_service) = match caller {
        Principal::Employee { .. } => (
            Actor::of(caller),
            // Recorded by the employee directly, not reported by another service.
            crate::SOURCE.to_owned(),
        ),
        Principal::Service { name } => {
            let actor = match &req.actor {
                None => {
                    v.add("actor", "is required");
                    Actor::service(name)
                }
                Some(a) => {
                    let actor = Actor::from(a);
                    if actor.kind == ActorKind::Unspecified {
                        v.add("actor.kind", "is required");
                    }
                    validate::length(&mut v, "actor.id", &actor.id, 1, 256);
                    if actor
                        .roles
                        .iter()
                        .any(|r| r.is_empty() || r.len() > 64 || r.contains(','))
                    {
                        v.add("actor.roles", "must be 1-64 characters each, without ','");
                    }
                    actor
                }
            };
            (actor, name.clone())
        }
        Principal::Client { .. } => {
            return Err(ServiceError::PermissionDenied(
                "clients cannot record audit events".into(),
            ));
        }
    };
    if !is_action_code(&req.action) {
        v.add("action", "is required: 1-128 characters of a-z, 0-9, '.', '_'");
    }
    validate::length(&mut v, "entity_type", &req.entity_type, 1, 64);
    validate::length(&mut v, "entity_id", &req.entity_id, 1, 128);
    validate::optional_uuid(&mut v, "data_subject_id", &req.data_subject_id);
    validate::length(&mut v, "correlation_id", &req.correlation_id, 0, 128);
    validate::length(&mut v, "event_id", &req.event_id, 0, 128);
    let occur_time = match &req.occur_time {
        None => now,
        Some(t) => match time_field(&mut v, "occur_time", t) {
            Some(t) if t > now + MAX_FUTURE_SKEW => {
                v.add("occur_time", "must not be in the future");
                now
            }
            Some(t) => t,
            None => now,
        },
    };
    let details = req.details.as_ref().map(from_struct).unwrap_or_default();
    if let Some(key) = personal_key(&details, "details") {
        v.add(
            key,
            "looks like personal data; audit details hold ids, codes and statuses only",
        );
    }
    if canonical_json(&Value::Object(details.clone())).len() > MAX_DETAILS_BYTES {
        v.add(
            "details",
            format!("must be at most {MAX_DETAILS_BYTES} bytes serialised"),
        );
    }
    v.into_result()?;
    Ok(NewEntry {
        actor,
        action: req.action.clone(),
        entity_type: req.entity_type.clone(),
        entity_id: req.entity_id.clone(),
        data_subject_id: req.data_subject_id.clone(),
        correlation_id: if req.correlation_id.is_empty() {
            correlation.to_owned()
        } else {
            req.correlation_id.clone()
        },
        occur_time,
        details,
        source_service,
        event_id: (!req.event_id.is_empty()).then(|| req.event_id.clone()),
    })
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn query_audit_logs(&self, request: Request<pb::QueryAuditLogsRequest>) -> Reply<pb::QueryAuditLogsResponse> {
        can_read(principal(&request)?)?;
        let req = request.into_inner();
        let filter = filter_of(&req)?;
        let limit = page_size(req.page_size)?;
        let (page, next_page_token) =
            pagination::fetch_page(limit, &req.page_token, &filter, domain::page_key, |after, n| {
                self.store.query(&filter, after, n)
            })
            .await?;
        Ok(Response::new(pb::QueryAuditLogsResponse {
            entries: page.iter().map(pb::AuditEntry::from).collect(),
            next_page_token,
        }))
    }

    async fn get_gdpr_trail(&self, request: Request<pb::GetGdprTrailRequest>) -> Reply<pb::GetGdprTrailResponse> {
        can_read_gdpr_trail(principal(&request)?)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        validate::uuid(&mut v, "customer_id", &req.customer_id);
        v.into_result()?;
        let limit = page_size(req.page_size)?;
        let filters = ("gdpr", &req.customer_id);
        let (page, next_page_token) =
            pagination::fetch_page(limit, &req.page_token, &filters, domain::page_key, |after, n| {
                self.store.gdpr_trail(&req.customer_id, after, n)
            })
            .await?;
        Ok(Response::new(pb::GetGdprTrailResponse {
            entries: page.iter().map(pb::AuditEntry::from).collect(),
            next_page_token,
        }))
    }

    async fn verify_chain(&self, request: Request<pb::VerifyChainRequest>) -> Reply<pb::VerifyChainResponse> {
        can_read(principal(&request)?)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        if req.from_sequence.is_some_and(|s| s < 1) {
            v.add("from_sequence", "must be at least 1");
        }
        if let (Some(from), Some(to)) = (req.from_sequence, req.to_sequence)
            && to < from
        {
            v.add("to_sequence", "must not be less than from_sequence");
        }
        if req.to_sequence.is_some_and(|s| s < 1) {
            v.add("to_sequence", "must be at least 1");
        }
        v.into_result()?;
        let result = self.store.verify(req.from_sequence, req.to_sequence).await?;
        if let Some(broken) = &result.broken {
            tracing::error!(sequence = broken.sequence, reason = %broken.reason, "audit chain does not verify");
        }
        Ok(Response::new(pb::VerifyChainResponse {
            ok: result.broken.is_none(),
            entries_checked: result.checked,
            first_broken_sequence: result.broken.as_ref().map(|b| b.sequence),
            first_broken_id: result.broken.as_ref().map(|b| b.id.clone()).unwrap_or_default(),
            reason: result.broken.as_ref().map(|b| b.reason.clone()).unwrap_or_default(),
            last_sequence: result.last_sequence,
            last_hash: result.last_hash,
        }))
    }

    async fn record_audit_event(
        &self,
        request: Request<pb::RecordAuditEventRequest>,
    ) -> Reply<pb::RecordAuditEventResponse> {
        let caller = principal(&request)?.clone();
        let correlation = request
            .extensions()
            .get::<CorrelationId>()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        let new = record_of(request.get_ref(), &caller, &correlation, Utc::now())?;
        let entry = self.store.append_one(&new).await?;
        Ok(Response::new(pb::RecordAuditEventResponse {
            entry: Some((&entry).into()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use ordermesh_platform::db::Database;
    use ordermesh_platform::testing::TestDatabase;
    use tonic::Code;

    use super::*;
    use crate::store;

    fn as_service<T>(message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .extensions_mut()
            .insert(Principal::Service { name: "bff".into() });
        request
    }

    /// A database the service cannot reach is UNAVAILABLE (retry later), like in every other
    /// service, not INTERNAL.
    #[tokio::test]
    async fn a_database_that_is_gone_is_unavailable() {
        let test_db = TestDatabase::sqlite().unwrap();
        let db = Database::connect(test_db.url(), crate::SERVICE).await.unwrap();
        db.migrate(&store::migrations()).await.unwrap();
        let api = AuditApi::new(Store::new(&db));
        db.close().await;

        let read = api.verify_chain(as_service(pb::VerifyChainRequest::default())).await;
        assert_eq!(read.unwrap_err().code(), Code::Unavailable);
        let write = api
            .record_audit_event(as_service(pb::RecordAuditEventRequest {
                actor: Some(ordermesh_proto::common::Actor {
                    kind: ordermesh_proto::common::ActorKind::Employee as i32,
                    id: "e-1".into(),
                    roles: Vec::new(),
                }),
                action: "customer.viewed".into(),
                entity_type: "customer".into(),
                entity_id: "c-1".into(),
                ..Default::default()
            }))
            .await;
        assert_eq!(write.unwrap_err().code(), Code::Unavailable);
    }
}
