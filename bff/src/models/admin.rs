//! Admin: the platform's state for the admin dashboard, and the dead letters of every service
//! (from each service's ops API).

use chrono::{DateTime, Utc};
use ordermesh_proto::ops;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{non_empty, time};

/// Every service at a glance: one call for the admin dashboard.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemStatus {
    /// Whether every service is ready and no service has dead letters.
    pub healthy: bool,
    /// Dead letters across all services.
    pub dead_letters: i64,
    pub services: Vec<ServiceStatus>,
}

/// One service, as its ops API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// e.g. `order-svc`.
    pub service: String,
    /// Whether it answered and can serve.
    pub ready: bool,
    /// Why it is not ready (or could not be asked); absent when ready.
    pub readiness_reason: Option<String>,
    /// `nats-jetstream` or `in-process`; absent when the service did not answer.
    pub bus: Option<String>,
    pub outbox: Option<OutboxStatus>,
    pub consumers: Vec<ConsumerStatus>,
    /// Absent when the service did not answer.
    pub dead_letters: Option<i64>,
}

/// Events committed by a service and not yet published.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxStatus {
    pub backlog: i64,
    /// Age of the oldest unpublished event; absent when the backlog is empty.
    pub oldest_pending_age_seconds: Option<f64>,
}

/// One durable consumer of a service.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStatus {
    pub topic: String,
    /// Events on the topic not yet delivered to it.
    pub lag: u64,
    /// Delivered and not yet acknowledged.
    pub ack_pending: u64,
    /// Of those, redeliveries.
    pub redelivered: u64,
}

impl ServiceStatus {
    pub fn from_proto(s: ops::GetServiceStatusResponse) -> Self {
        Self {
            service: s.service,
            ready: s.ready,
            readiness_reason: non_empty(s.readiness_reason),
            bus: non_empty(s.bus),
            outbox: s.outbox.map(|o| OutboxStatus {
                backlog: o.backlog,
                oldest_pending_age_seconds: o
                    .oldest_pending_age
                    .map(|d| d.seconds as f64 + f64::from(d.nanos) / 1e9),
            }),
            consumers: s
                .consumers
                .into_iter()
                .map(|c| ConsumerStatus {
                    topic: c.topic,
                    lag: c.lag,
                    ack_pending: c.ack_pending,
                    redelivered: c.redelivered,
                })
                .collect(),
            dead_letters: Some(s.dead_letters),
        }
    }

    /// A service that could not be asked.
    pub fn unreachable(service: &str, reason: String) -> Self {
        Self {
            service: service.to_owned(),
            ready: false,
            readiness_reason: Some(reason),
            bus: None,
            outbox: None,
            consumers: Vec::new(),
            dead_letters: None,
        }
    }
}

/// An event a service's consumer gave up on: identifiers and the error, never the payload.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Id in the dead-letter queue.
    #[schema(minimum = 1)]
    pub id: u64,
    /// The consuming service that failed, e.g. `order-svc`.
    pub service: String,
    pub topic: String,
    /// e.g. `ordermesh.events.v1.PaymentCaptured`.
    pub event_type: String,
    pub event_id: String,
    pub aggregate_id: String,
    pub correlation_id: Option<String>,
    /// Error of the last attempt.
    pub error: String,
    pub delivery_count: u64,
    pub occurred_at: Option<DateTime<Utc>>,
    pub dead_lettered_at: Option<DateTime<Utc>>,
}

impl DeadLetter {
    pub fn from_proto(d: ops::DeadLetter) -> Self {
        Self {
            id: d.id,
            service: d.service,
            topic: d.topic,
            event_type: d.event_type,
            event_id: d.event_id,
            aggregate_id: d.aggregate_id,
            correlation_id: non_empty(d.correlation_id),
            error: d.error,
            delivery_count: d.delivery_count,
            occurred_at: time(d.occur_time),
            dead_lettered_at: time(d.dead_lettered_time),
        }
    }
}

/// Dead letters of every service, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterPage {
    pub items: Vec<DeadLetter>,
    /// How many match, beyond this page too.
    pub total: i64,
    /// Services that did not answer: their dead letters are missing from the list.
    pub unavailable_services: Vec<String>,
}

/// Why a dead letter is discarded (recorded in the audit log; no personal data).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscardDeadLetter {
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = "\\S",
        example = "test order of the load test"
    )]
    pub reason: String,
}
