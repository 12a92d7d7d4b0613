//! The GDPR exporter: builds the bundles of pending export jobs. Each bundle is one JSON
//! document — customer-svc's own section (profile, preferences, consents, erasure) and the
//! section of every service of [`EXPORT_SOURCES`], asked over gRPC
//! (`PersonalDataService/ExportPersonalData`) — described by
//! `docs/gdpr/export-bundle.schema.json`.
//!
//! Jobs are claimed from the store with a lease, so the exporter may run on every replica. One
//! service that does not answer fails the attempt; the job stays PENDING and is retried with
//! backoff until every part is in (an export is never handed out incomplete).

use std::sync::Arc;
use std::time::Duration;

use ordermesh_platform::auth::ServiceCredentials;
use ordermesh_platform::client::{CallContext, ResilientChannel, channel};
use ordermesh_platform::gdpr::EXPORT_SOURCES;
use ordermesh_platform::mesh::Workload;
use ordermesh_platform::{ServiceConfig, Shutdown};
use ordermesh_proto::gdpr::ExportPersonalDataRequest;
use ordermesh_proto::gdpr::personal_data_service_client::PersonalDataServiceClient;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::domain::{self, Consent, Customer, DataExport, EXPORT_RETENTION, Erasure, ExportState};
use crate::events;
use crate::store::Store;

/// The bundle format's version, in the document and in its schema.
pub const BUNDLE_VERSION: &str = "ordermesh.gdpr.export/v1";

/// How often the exporter looks for due jobs when nothing wakes it (a retry falling due, a job
/// requested on another replica).
const POLL: Duration = Duration::from_secs(2);
/// Jobs claimed per pass.
const BATCH: i64 = 8;

/// Wakes the exporter when a job was requested.
#[derive(Clone, Default)]
pub struct ExportWake(Arc<Notify>);

impl ExportWake {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

pub struct Exporter {
    store: Store,
    sources: Vec<(Workload, PersonalDataServiceClient<ResilientChannel>)>,
    credentials: ServiceCredentials,
}

impl Exporter {
    pub fn new(store: Store, config: &ServiceConfig) -> anyhow::Result<Self> {
        let mut sources = Vec::new();
        for source in EXPORT_SOURCES {
            let (channel, _) = channel(&config.client(source))?;
            sources.push((source, PersonalDataServiceClient::new(channel)));
        }
        Ok(Self {
            store,
            sources,
            credentials: config.credentials.clone(),
        })
    }

    /// Runs the exporter until `shutdown`; `wake` makes it look for jobs at once.
    pub fn spawn(self, wake: ExportWake, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                self.run_once().await;
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = wake.0.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        })
    }

    /// Builds the due jobs; how many became READY.
    pub async fn run_once(&self) -> usize {
        let due = match self.store.claim_due_exports(domain::now(), BATCH).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "looking for due exports failed");
                return 0;
            }
        };
        let mut ready = 0;
        for export in due {
            match self.complete(export.clone()).await {
                Ok(true) => ready += 1,
                Ok(false) => {}
                Err(error) => {
                    let attempts = export.attempts + 1;
                    let retry_at = domain::now() + DataExport::retry_delay(attempts);
                    tracing::warn!(export_id = %export.id, attempts, error = %error, "export attempt failed; retrying later");
                    if let Err(error) = self.store.retry_export_later(export.id, attempts, retry_at).await {
                        tracing::warn!(export_id = %export.id, %error, "recording a failed export attempt failed");
                    }
                }
            }
        }
        ready
    }

    async fn complete(&self, mut export: DataExport) -> anyhow::Result<bool> {
        let document = self.bundle(&export).await?;
        let now = domain::now();
        export.state = ExportState::Ready;
        export.complete_time = Some(now);
        export.expire_time = Some(now + EXPORT_RETENTION);
        export.document = Some(serde_json::to_string(&document)?);
        let done = self
            .store
            .complete_export(&export, &events::data_exported(&export))
            .await?;
        if done {
            tracing::info!(export_id = %export.id, customer_id = %export.customer_id, "export ready");
        }
        Ok(done)
    }

    /// The whole bundle of `export`: every part, or an error naming the part that failed.
    async fn bundle(&self, export: &DataExport) -> anyhow::Result<Value> {
        let customer_id = export.customer_id;
        let mut sections = Map::new();
        sections.insert("customer".into(), self.own_part(customer_id).await?);
        let context = CallContext {
            bearer_token: self.credentials.token()?,
            correlation_id: Some(export.correlation_id.clone()),
        };
        for (source, client) in &self.sources {
            let request = context.request(ExportPersonalDataRequest {
                customer_id: customer_id.to_string(),
            });
            let part = client
                .clone()
                .export_personal_data(request)
                .await
                .map_err(|status| anyhow::anyhow!("{source} answered {:?}: {}", status.code(), status.message()))?
                .into_inner();
            let value: Value = serde_json::from_slice(&part.json_part)
                .map_err(|e| anyhow::anyhow!("{source} sent a part that is not JSON: {e}"))?;
            sections.insert(source.service().to_owned(), value);
        }
        Ok(json!({
            "bundleVersion": BUNDLE_VERSION,
            "exportId": export.id,
            "customerId": customer_id,
            "requestTime": export.create_time,
            "generateTime": domain::now(),
            "sections": sections,
        }))
    }

    /// customer-svc's section: the profile, its preferences, every consent decision and, for an
    /// erased customer, the erasure request.
    async fn own_part(&self, customer_id: Uuid) -> anyhow::Result<Value> {
        let customer = self.store.get_customer(customer_id).await?;
        let mut consents = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.list_consents(customer_id, None, after, 200).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.list_key());
            consents.extend(page);
        }
        let erasure = self.store.erasure_of(customer_id).await?;
        Ok(customer_section(customer.as_ref(), &consents, erasure.as_ref()))
    }
}

/// The name of a contact channel, as the API's enum names it without its prefix.
fn contact_channel(code: i32) -> &'static str {
    match code {
        1 => "EMAIL",
        2 => "SMS",
        3 => "PHONE",
        4 => "IN_APP",
        _ => "UNSPECIFIED",
    }
}

/// customer-svc's section of the bundle.
pub fn customer_section(customer: Option<&Customer>, consents: &[Consent], erasure: Option<&Erasure>) -> Value {
    let profile = customer.map(|c| {
        json!({
            "id": c.id,
            "displayName": c.display_name,
            "email": c.email,
            "phone": c.phone,
            "addresses": c.addresses.iter().map(|a| json!({
                "label": a.label, "recipientName": a.recipient_name, "line1": a.line1, "line2": a.line2,
                "city": a.city, "region": a.region, "postalCode": a.postal_code, "countryCode": a.country_code,
            })).collect::<Vec<_>>(),
            "status": c.status.as_str(),
            "identity": c.identity.as_ref().map(|i| json!({"issuer": i.issuer, "subject": i.subject})),
            "preferences": {
                "languageCode": c.preferences.language_code,
                "currencyCode": c.preferences.currency_code,
                "timeZone": c.preferences.time_zone,
                "preferredContactChannel": contact_channel(c.preferences.preferred_contact_channel),
            },
            "createTime": c.create_time,
            "updateTime": c.update_time,
            "eraseTime": c.erase_time,
        })
    });
    json!({
        "profile": profile,
        "consents": consents.iter().map(|c| json!({
            "id": c.id, "purpose": c.purpose, "granted": c.granted, "policyVersion": c.policy_version,
            "source": c.source, "recordedBy": c.recorded_by.kind.as_str(), "recordTime": c.record_time,
        })).collect::<Vec<_>>(),
        "erasure": erasure.map(|e| json!({
            "id": e.id, "reason": e.reason, "requestTime": e.request_time, "completeTime": e.complete_time,
            "confirmedBy": e.confirmed,
        })),
    })
}
