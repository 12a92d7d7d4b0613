//! The GDPR protocol between services, written once: who contributes to a customer's data export
//! and who takes part in an erasure, the `PersonalDataService` every contributing service serves
//! ([`PersonalDataApi`]), and the participant's side of the erasure saga ([`ErasureStep`]).
//!
//! customer-svc coordinates both rights. An export calls each of [`EXPORT_SOURCES`] for its part
//! over gRPC (personal data never travels over the event bus, whose streams keep messages). An
//! erasure is a saga on `gdpr-events`: customer-svc clears the profile and publishes
//! `ErasureRequested`; each of [`ERASURE_PARTICIPANTS`] erases or anonymises its copy in the
//! consumer's transaction and publishes `ErasureCompleted` from the same transaction; customer-svc
//! marks the customer ERASED when all have confirmed.

use std::sync::Arc;

use async_trait::async_trait;
use ordermesh_proto::event_types::GdprEvent;
use ordermesh_proto::events as ev;
use ordermesh_proto::gdpr as pb;
use ordermesh_proto::gdpr::personal_data_service_server::{PersonalDataService, PersonalDataServiceServer};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::auth::Principal;
use crate::convert::{now, timestamp};
use crate::events::{HandlerError, OutgoingEvent, ReceivedEvent, TopicHandler, Tx};
use crate::grpc::principal;
use crate::mesh::Workload;
use crate::{ServiceError, Violations, validate};

/// The services customer-svc asks for their part of an export, in the bundle's order.
pub const EXPORT_SOURCES: [Workload; 4] = [
    Workload::Order,
    Workload::Payment,
    Workload::Notification,
    Workload::Audit,
];

/// The services that erase their copy of a customer's data and confirm it. audit-svc is not one:
/// its entries carry ids, never personal data, and its log is append-only (the erasure is
/// recorded there, step by step). product-svc holds nothing about customers.
pub const ERASURE_PARTICIPANTS: [Workload; 3] = [Workload::Order, Workload::Payment, Workload::Notification];

/// The gRPC service of [`PersonalDataApi`], served by every workload of [`EXPORT_SOURCES`].
pub const PERSONAL_DATA_SERVICE: &str = "ordermesh.gdpr.v1.PersonalDataService";

/// What one service holds about a customer.
#[async_trait]
pub trait PersonalData: Send + Sync + 'static {
    /// The service's section of the export bundle: one JSON object (empty collections for a
    /// customer it knows nothing about).
    async fn export(&self, customer_id: Uuid) -> Result<serde_json::Value, ServiceError>;
}

/// `ordermesh.gdpr.v1.PersonalDataService` over a service's [`PersonalData`].
pub struct PersonalDataApi {
    service: &'static str,
    source: Arc<dyn PersonalData>,
}

impl PersonalDataApi {
    /// The gRPC server of `source`, the part of `service` (e.g. "order").
    pub fn server(service: &'static str, source: impl PersonalData) -> PersonalDataServiceServer<Self> {
        PersonalDataServiceServer::new(Self {
            service,
            source: Arc::new(source),
        })
    }
}

#[async_trait]
impl PersonalDataService for PersonalDataApi {
    async fn export_personal_data(
        &self,
        request: Request<pb::ExportPersonalDataRequest>,
    ) -> Result<Response<pb::ExportPersonalDataResponse>, Status> {
        // Clients and employees export through customer-svc, which decides who may see whom.
        if !matches!(principal(&request)?, Principal::Service { .. }) {
            return Err(ServiceError::PermissionDenied(
                "only ordermesh services may call PersonalDataService; export through CustomerService.ExportCustomerData"
                    .into(),
            )
            .into());
        }
        let customer_id = customer_id(&request.get_ref().customer_id)?;
        let part = self.source.export(customer_id).await?;
        let json_part = serde_json::to_vec(&part).map_err(|e| ServiceError::Internal(e.into()))?;
        tracing::info!(%customer_id, service = self.service, "personal data exported");
        Ok(Response::new(pb::ExportPersonalDataResponse {
            service: self.service.to_owned(),
            json_part,
        }))
    }
}

fn customer_id(raw: &str) -> Result<Uuid, ServiceError> {
    let mut v = Violations::new();
    let id = validate::uuid(&mut v, "customer_id", raw);
    v.into_result()?;
    Ok(id.expect("validated"))
}

/// What a participant erases, in the consumer's transaction.
#[async_trait]
pub trait Erase: Send + Sync + 'static {
    /// Erases or anonymises everything this service holds about `customer_id`, writing through
    /// `tx` only. Must be idempotent (a redelivery runs it again on erased data).
    async fn erase(&self, tx: &mut Tx, customer_id: Uuid, envelope: &ReceivedEvent) -> Result<(), HandlerError>;
}

/// A participant of the erasure saga: on `ErasureRequested`, runs its [`Erase`] and publishes
/// `ErasureCompleted` from the same transaction, so the confirmation is sent exactly when the
/// erasure has committed. Consumes `gdpr-events` (other GDPR events are not its business).
pub struct ErasureStep<E> {
    workload: Workload,
    erase: E,
}

impl<E: Erase> ErasureStep<E> {
    /// The step of `workload` (one of [`ERASURE_PARTICIPANTS`]).
    pub fn new(workload: Workload, erase: E) -> Self {
        debug_assert!(ERASURE_PARTICIPANTS.contains(&workload));
        Self { workload, erase }
    }
}

#[async_trait]
impl<E: Erase> TopicHandler<GdprEvent> for ErasureStep<E> {
    async fn handle(&self, event: GdprEvent, envelope: &ReceivedEvent, tx: &mut Tx) -> Result<(), HandlerError> {
        let GdprEvent::ErasureRequested(request) = event else {
            return Ok(());
        };
        let customer_id = Uuid::parse_str(&request.customer_id)
            .map_err(|_| HandlerError::permanent(anyhow::anyhow!("ErasureRequested without a valid customer id")))?;
        self.erase.erase(tx, customer_id, envelope).await?;
        let completed = ev::ErasureCompleted {
            customer_id: request.customer_id.clone(),
            erasure_request_id: request.erasure_request_id.clone(),
            service: self.workload.service().to_owned(),
            occur_time: Some(timestamp(now())),
        };
        tx.enqueue(&OutgoingEvent::of(
            self.workload.name(),
            &request.customer_id,
            &envelope.correlation_id,
            &completed,
        ))
        .await?;
        // On SQLite, the pages that held the erased values may still sit in the write-ahead log:
        // checkpoint and truncate it once this commits (see `Database::purge_freed`).
        let db = tx.database().clone();
        tx.after_commit(move || {
            tokio::spawn(async move { db.purge_freed().await });
        });
        tracing::info!(%customer_id, service = self.workload.service(), "customer erased here");
        Ok(())
    }
}
