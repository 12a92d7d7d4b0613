//! `ordermesh.ops.v1.OpsService`, served by every service on its own port (see
//! [`crate::host::ServiceHost::serve`]): the service's readiness, outbox backlog and consumers'
//! lag, and its dead letters — listed, replayed or discarded. Works the same on both buses.
//!
//! Only admins and the `ops` workload may call it. Every replay and discard publishes
//! `DeadLetterReplayed` / `DeadLetterDiscarded` on `ops-events` through the outbox, in a
//! transaction that commits only once the bus has done it, so audit-svc records exactly what
//! happened.

use std::sync::Arc;

use async_trait::async_trait;
use ordermesh_proto::events as ev;
use ordermesh_proto::ops as pb;
use ordermesh_proto::ops::ops_service_server::{OpsService, OpsServiceServer};
use tonic::{Request, Response, Status};

use crate::actor::Origin;
use crate::auth::Principal;
use crate::convert::{now, timestamp};
use crate::db::Database;
use crate::events::{BusError, DeadLetter, EventBus, OutgoingEvent, Tx, outbox};
use crate::grpc::caller;
use crate::{ServiceError, Violations, validate};

/// The gRPC service of [`OpsApi`], served by every domain service.
pub const OPS_SERVICE: &str = "ordermesh.ops.v1.OpsService";
/// The subject of the `ops` workload's service token.
pub const OPS_WORKLOAD: &str = "ops";
/// Dead letters listed when the request does not say.
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;
pub const MAX_REASON_CHARS: usize = 500;

/// The ops API of one service.
pub struct OpsApi {
    /// e.g. `order-svc`: the name its consumers and dead letters carry.
    service: String,
    db: Database,
    bus: Arc<dyn EventBus>,
    /// The topics the service consumes.
    topics: Vec<String>,
}

impl OpsApi {
    pub fn server(
        service: impl Into<String>,
        db: Database,
        bus: Arc<dyn EventBus>,
        topics: Vec<String>,
    ) -> OpsServiceServer<Self> {
        OpsServiceServer::new(Self {
            service: service.into(),
            db,
            bus,
            topics,
        })
    }

    /// This service's dead letters, oldest first (of `topic` only, unless empty).
    async fn own_dead_letters(&self, topic: &str) -> Result<Vec<DeadLetter>, ServiceError> {
        let letters = self.bus.dead_letters().await.map_err(bus_error)?;
        Ok(letters
            .into_iter()
            .filter(|l| l.service == self.service && (topic.is_empty() || l.topic == topic))
            .collect())
    }

    /// Dead letter `id` if it is this service's; NOT_FOUND otherwise (another service's letters
    /// are not this API's to touch).
    async fn own_dead_letter(&self, id: u64) -> Result<DeadLetter, ServiceError> {
        let mut v = Violations::new();
        v.check(id > 0, "id", "is required");
        v.into_result()?;
        self.own_dead_letters("")
            .await?
            .into_iter()
            .find(|l| l.id == id)
            .ok_or_else(|| ServiceError::NotFound {
                resource: "dead letter",
                id: id.to_string(),
            })
    }

    /// Replays `letter`, committing its audit event only once the bus has delivered it again.
    async fn replay(&self, letter: &DeadLetter, origin: &Origin) -> Result<(), ServiceError> {
        let event = ev::DeadLetterReplayed {
            service: self.service.clone(),
            dead_letter_id: letter.id,
            event_id: letter.event.id.to_string(),
            topic: letter.topic.clone(),
            event_type: letter.event.event_type.clone(),
            actor: Some((&origin.actor).into()),
            occur_time: Some(timestamp(now())),
        };
        let audit = OutgoingEvent::of(&self.service, &letter.id.to_string(), &origin.correlation_id, &event);
        self.audited(&audit, self.bus.replay_dead_letter(letter.id)).await
    }

    /// Enqueues `audit` in a transaction, runs `action`, and commits only if it succeeded.
    async fn audited(
        &self,
        audit: &OutgoingEvent,
        action: impl std::future::Future<Output = Result<(), BusError>>,
    ) -> Result<(), ServiceError> {
        let mut tx = Tx::begin(&self.db).await.map_err(internal)?;
        tx.enqueue(audit).await.map_err(internal)?;
        if let Err(error) = action.await {
            let _ = tx.rollback().await;
            return Err(bus_error(error));
        }
        tx.commit().await.map_err(internal)
    }

    async fn consumers(&self) -> Result<Vec<pb::ConsumerStatus>, ServiceError> {
        let mut consumers = Vec::with_capacity(self.topics.len());
        for topic in &self.topics {
            let state = self.bus.consumer_state(&self.service, topic).await.map_err(bus_error)?;
            consumers.push(pb::ConsumerStatus {
                topic: topic.clone(),
                lag: state.lag,
                ack_pending: state.ack_pending,
                redelivered: state.redelivering,
            });
        }
        Ok(consumers)
    }

    async fn outbox(&self) -> Result<pb::OutboxStatus, ServiceError> {
        let backlog = outbox::backlog(&self.db).await.map_err(internal)?;
        let oldest_pending_age = backlog.oldest.map(|oldest| {
            let age = (now() - oldest).to_std().unwrap_or_default();
            prost_types::Duration {
                seconds: age.as_secs() as i64,
                nanos: age.subsec_nanos() as i32,
            }
        });
        Ok(pb::OutboxStatus {
            backlog: backlog.pending,
            oldest_pending_age,
        })
    }
}

/// Admins and the `ops` workload; PERMISSION_DENIED for everyone else.
fn authorize<T>(request: &Request<T>) -> Result<Origin, ServiceError> {
    let principal = caller(request)?;
    let allowed = principal.is_admin() || matches!(&principal, Principal::Service { name } if name == OPS_WORKLOAD);
    if !allowed {
        return Err(ServiceError::PermissionDenied(
            "OpsService is for admins and the ops workload".into(),
        ));
    }
    let correlation_id = request
        .extensions()
        .get::<crate::grpc::CorrelationId>()
        .map(|c| c.0.as_str());
    Ok(Origin::of(&principal, correlation_id))
}

fn bus_error(error: BusError) -> ServiceError {
    match error {
        BusError::NotFound(id) => ServiceError::NotFound {
            resource: "dead letter",
            id,
        },
        BusError::Unavailable(message) | BusError::Unknown(message) => {
            ServiceError::Unavailable(format!("event bus: {message}"))
        }
        BusError::Other(message) => ServiceError::Internal(anyhow::anyhow!("event bus: {message}")),
    }
}

fn internal(error: sqlx::Error) -> ServiceError {
    crate::db::StoreError::from(error).into()
}

/// The proto form of a dead letter: identifiers and the error, never the payload.
pub fn dead_letter_proto(letter: &DeadLetter) -> pb::DeadLetter {
    pb::DeadLetter {
        id: letter.id,
        service: letter.service.clone(),
        topic: letter.topic.clone(),
        event_type: letter.event.event_type.clone(),
        event_id: letter.event.id.to_string(),
        aggregate_id: letter.event.aggregate_id.clone(),
        correlation_id: letter.event.correlation_id.clone(),
        error: letter.error.clone(),
        delivery_count: letter.delivery_count,
        occur_time: Some(timestamp(letter.event.occur_time)),
        dead_lettered_time: Some(timestamp(letter.dead_lettered_at)),
    }
}

fn page_size(v: &mut Violations, requested: i32) -> usize {
    v.check(
        (0..=MAX_PAGE_SIZE as i32).contains(&requested),
        "page_size",
        format!("must be between 1 and {MAX_PAGE_SIZE} (0 for {DEFAULT_PAGE_SIZE})"),
    );
    match requested {
        0 => DEFAULT_PAGE_SIZE,
        n => n.clamp(1, MAX_PAGE_SIZE as i32) as usize,
    }
}

#[async_trait]
impl OpsService for OpsApi {
    async fn get_service_status(
        &self,
        request: Request<pb::GetServiceStatusRequest>,
    ) -> Result<Response<pb::GetServiceStatusResponse>, Status> {
        authorize(&request)?;
        let readiness_reason = match self.db.ping().await {
            Ok(()) => String::new(),
            Err(error) => format!("database: {error}"),
        };
        let ready = readiness_reason.is_empty();
        // A database that does not answer has no backlog to tell; report what is known.
        let outbox = if ready { Some(self.outbox().await?) } else { None };
        Ok(Response::new(pb::GetServiceStatusResponse {
            service: self.service.clone(),
            ready,
            readiness_reason,
            bus: self.bus.kind().to_owned(),
            outbox,
            consumers: self.consumers().await?,
            dead_letters: self.own_dead_letters("").await?.len() as i64,
        }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        authorize(&request)?;
        let message = request.get_ref();
        let mut v = Violations::new();
        let size = page_size(&mut v, message.page_size);
        check_topic(&mut v, &message.topic);
        v.into_result()?;
        let letters = self.own_dead_letters(&message.topic).await?;
        Ok(Response::new(pb::ListDeadLettersResponse {
            total_size: letters.len() as i64,
            dead_letters: letters.iter().take(size).map(dead_letter_proto).collect(),
        }))
    }

    async fn replay_dead_letter(
        &self,
        request: Request<pb::ReplayDeadLetterRequest>,
    ) -> Result<Response<pb::ReplayDeadLetterResponse>, Status> {
        let origin = authorize(&request)?;
        let letter = self.own_dead_letter(request.get_ref().id).await?;
        self.replay(&letter, &origin).await?;
        tracing::info!(
            dead_letter = letter.id,
            event_id = %letter.event.id,
            topic = %letter.topic,
            actor = %origin.actor.id,
            "dead letter replayed"
        );
        Ok(Response::new(pb::ReplayDeadLetterResponse {
            dead_letter: Some(dead_letter_proto(&letter)),
        }))
    }

    async fn replay_all_dead_letters(
        &self,
        request: Request<pb::ReplayAllDeadLettersRequest>,
    ) -> Result<Response<pb::ReplayAllDeadLettersResponse>, Status> {
        let origin = authorize(&request)?;
        let mut v = Violations::new();
        check_topic(&mut v, &request.get_ref().topic);
        v.into_result()?;
        let letters = self.own_dead_letters(&request.get_ref().topic).await?;
        let mut replayed = Vec::with_capacity(letters.len());
        for letter in &letters {
            match self.replay(letter, &origin).await {
                Ok(()) => replayed.push(dead_letter_proto(letter)),
                // Replayed or discarded by someone else meanwhile.
                Err(ServiceError::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        tracing::info!(count = replayed.len(), actor = %origin.actor.id, "dead letters replayed");
        Ok(Response::new(pb::ReplayAllDeadLettersResponse {
            dead_letters: replayed,
        }))
    }

    async fn discard_dead_letter(
        &self,
        request: Request<pb::DiscardDeadLetterRequest>,
    ) -> Result<Response<pb::DiscardDeadLetterResponse>, Status> {
        let origin = authorize(&request)?;
        let message = request.get_ref();
        let mut v = Violations::new();
        v.check(message.id > 0, "id", "is required");
        validate::length(&mut v, "reason", message.reason.trim(), 1, MAX_REASON_CHARS);
        v.into_result()?;
        let letter = self.own_dead_letter(message.id).await?;
        let event = ev::DeadLetterDiscarded {
            service: self.service.clone(),
            dead_letter_id: letter.id,
            event_id: letter.event.id.to_string(),
            topic: letter.topic.clone(),
            event_type: letter.event.event_type.clone(),
            reason: message.reason.trim().to_owned(),
            actor: Some((&origin.actor).into()),
            occur_time: Some(timestamp(now())),
        };
        let audit = OutgoingEvent::of(&self.service, &letter.id.to_string(), &origin.correlation_id, &event);
        self.audited(&audit, self.bus.discard_dead_letter(letter.id)).await?;
        tracing::info!(
            dead_letter = letter.id,
            event_id = %letter.event.id,
            topic = %letter.topic,
            actor = %origin.actor.id,
            "dead letter discarded"
        );
        Ok(Response::new(pb::DiscardDeadLetterResponse {
            dead_letter: Some(dead_letter_proto(&letter)),
        }))
    }
}

fn check_topic(v: &mut Violations, topic: &str) {
    v.check(
        topic.is_empty() || crate::events::TOPICS.contains(&topic),
        "topic",
        format!("must be one of {}", crate::events::TOPICS.join(", ")),
    );
}
