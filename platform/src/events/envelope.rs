//! The event envelope: what an outbox row holds, which headers travel with a message, and what a
//! handler receives. Header names follow `proto/ordermesh/events/v1/envelope.proto`.

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

/// The topics of DESIGN §3; on JetStream each is one stream.
pub const TOPICS: [&str; 7] = ordermesh_proto::event_types::topics::ALL;

/// Protobuf package of the event messages; `event-type` headers carry `PACKAGE.<Name>`.
pub const EVENT_PACKAGE: &str = ordermesh_proto::event_types::EVENT_PACKAGE;

pub mod headers {
    //! Message header names.
    pub const MSG_ID: &str = "Nats-Msg-Id";
    pub const EVENT_ID: &str = "event-id";
    pub const EVENT_TYPE: &str = "event-type";
    pub const EVENT_SOURCE: &str = "event-source";
    pub const EVENT_TIME: &str = "event-time";
    pub const CORRELATION_ID: &str = "correlation-id";
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
    pub const CONTENT_TYPE: &str = "content-type";
    /// Key of per-aggregate ordering (e.g. the order id). Not personal data.
    pub const AGGREGATE_ID: &str = "aggregate-id";
    pub const PROTOBUF: &str = "application/x-protobuf";
    // Dead-letter headers.
    pub const DLQ_ERROR: &str = "dlq-error";
    pub const DLQ_SERVICE: &str = "dlq-service";
    pub const DLQ_TOPIC: &str = "dlq-topic";
    pub const DLQ_DELIVERIES: &str = "dlq-delivery-count";
    pub const DLQ_SUBJECT: &str = "dlq-original-subject";
    pub const DLQ_STREAM: &str = "dlq-original-stream";
    pub const DLQ_STREAM_SEQ: &str = "dlq-original-stream-seq";
    /// Set on a replayed copy: the dead-letter id it came from.
    pub const REPLAY_OF: &str = "replay-of";
}

/// Naming of streams and subjects, and how to reach the broker securely. Production uses the
/// default names; tests set unique prefixes so they can run in parallel against one server and
/// delete what they created.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// First subject token: subjects are `<subject_prefix>.<topic>.<EventType>`.
    pub subject_prefix: String,
    /// Prepended to stream names (`<stream_prefix><topic>`, `<stream_prefix>ordermesh-dlq`).
    pub stream_prefix: String,
    /// Broker-side de-duplication window of `Nats-Msg-Id`.
    pub duplicate_window: std::time::Duration,
    /// Limits retention: messages older than this are removed.
    pub max_age: std::time::Duration,
    /// Timeout of JetStream API calls and publish acks (a timeout means "outcome unknown").
    pub request_timeout: std::time::Duration,
    /// Whether the outbox relay runs (`EVENTS_PUBLISH`, default on). Off is for measuring the
    /// write path without publishing (the benchmarks' baseline): events then stay in the
    /// outbox, nothing downstream happens, and a later start with it on publishes them.
    pub publish: bool,
    /// Copies of each stream in a JetStream cluster (`NATS_STREAM_REPLICAS`, 1 to 5): with 3,
    /// the events survive the loss of a NATS server.
    pub replicas: usize,
    /// TLS and credentials of the NATS connection (`NATS_CA_FILE`, …).
    pub security: crate::backing::NatsSecurity,
    /// Every consumer's retry policy unless its service tunes it (`EVENTS_MAX_DELIVER`,
    /// `EVENTS_RETRY_BACKOFF_MS`): deliveries before a failing event is dead-lettered, and the
    /// waits between them (the last one repeats).
    pub max_deliver: u64,
    pub retry_backoff: Vec<std::time::Duration>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            subject_prefix: "ordermesh".into(),
            stream_prefix: String::new(),
            duplicate_window: std::time::Duration::from_secs(120),
            max_age: std::time::Duration::from_secs(7 * 24 * 3600),
            request_timeout: std::time::Duration::from_secs(5),
            publish: true,
            replicas: 1,
            security: crate::backing::NatsSecurity::default(),
            max_deliver: 5,
            retry_backoff: [1, 5, 15, 60].map(std::time::Duration::from_secs).to_vec(),
        }
    }
}

impl EventsConfig {
    /// Unique prefixes for one test (`t<uuid>`), so parallel tests never share a stream.
    pub fn isolated() -> Self {
        let id = Uuid::now_v7().simple().to_string();
        Self {
            subject_prefix: format!("t{id}"),
            stream_prefix: format!("t{id}-"),
            ..Self::default()
        }
    }
    pub fn stream_name(&self, topic: &str) -> String {
        format!("{}{topic}", self.stream_prefix)
    }
    pub fn topic_subjects(&self, topic: &str) -> String {
        format!("{}.{topic}.>", self.subject_prefix)
    }
    pub fn subject(&self, topic: &str, event_type: &str) -> String {
        format!("{}.{topic}.{}", self.subject_prefix, short_type(event_type))
    }
    /// How long the dead-letter stream keeps events (longer than the topics: dead letters wait
    /// for an operator).
    pub fn dlq_max_age(&self) -> std::time::Duration {
        self.max_age * 4
    }
    pub fn dlq_stream(&self) -> String {
        format!("{}ordermesh-dlq", self.stream_prefix)
    }
    pub fn dlq_subject(&self, service: &str, topic: &str) -> String {
        format!("{}.dlq.{service}.{topic}", self.subject_prefix)
    }
    pub fn dlq_subjects(&self) -> String {
        format!("{}.dlq.>", self.subject_prefix)
    }
    /// Durable consumer name of `service` on `topic` (no dots allowed).
    pub fn durable_name(service: &str, topic: &str) -> String {
        format!("{service}--{topic}").replace(['.', '*', '>', ' '], "_")
    }
}

/// `ordermesh.events.v1.OrderPlaced` → `OrderPlaced`.
pub fn short_type(event_type: &str) -> &str {
    event_type.rsplit('.').next().unwrap_or(event_type)
}

/// An event to publish: one outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingEvent {
    /// UUIDv7; also the broker de-duplication id and the consumers' inbox key.
    pub id: Uuid,
    pub topic: String,
    /// Fully qualified protobuf name, e.g. `ordermesh.events.v1.OrderPlaced`.
    pub event_type: String,
    /// Events with the same aggregate id are consumed in order.
    pub aggregate_id: String,
    /// Prost-encoded event message.
    pub payload: Vec<u8>,
    pub correlation_id: String,
    /// W3C trace context of the span that enqueued the event.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// Publishing service, e.g. `order-svc`.
    pub source: String,
    pub occur_time: DateTime<Utc>,
}

impl OutgoingEvent {
    /// A new event with a fresh UUIDv7, the current time, and the trace context of the current
    /// span. `event_type` is the message name (`OrderPlaced`) or its full name.
    pub fn new(
        source: &str,
        topic: &str,
        event_type: &str,
        aggregate_id: &str,
        correlation_id: &str,
        message: &impl prost::Message,
    ) -> Self {
        Self::from_bytes(
            source,
            topic,
            event_type,
            aggregate_id,
            correlation_id,
            message.encode_to_vec(),
        )
    }

    /// Like [`OutgoingEvent::new`] with an already encoded payload.
    pub fn from_bytes(
        source: &str,
        topic: &str,
        event_type: &str,
        aggregate_id: &str,
        correlation_id: &str,
        payload: Vec<u8>,
    ) -> Self {
        let event_type = if event_type.contains('.') {
            event_type.to_owned()
        } else {
            format!("{EVENT_PACKAGE}.{event_type}")
        };
        let context = crate::telemetry::current_context_headers();
        let find = |key: &str| context.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        Self {
            id: Uuid::now_v7(),
            topic: topic.to_owned(),
            event_type,
            aggregate_id: aggregate_id.to_owned(),
            payload,
            correlation_id: correlation_id.to_owned(),
            traceparent: find(headers::TRACEPARENT),
            tracestate: find(headers::TRACESTATE),
            source: source.to_owned(),
            // Microseconds: what both databases store.
            occur_time: Utc::now().trunc_subsecs(6),
        }
    }

    /// The envelope headers (including `Nats-Msg-Id`).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut list = vec![
            (headers::MSG_ID, self.id.to_string()),
            (headers::EVENT_ID, self.id.to_string()),
            (headers::EVENT_TYPE, self.event_type.clone()),
            (headers::EVENT_SOURCE, self.source.clone()),
            (
                headers::EVENT_TIME,
                self.occur_time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ),
            (headers::CORRELATION_ID, self.correlation_id.clone()),
            (headers::AGGREGATE_ID, self.aggregate_id.clone()),
            (headers::CONTENT_TYPE, headers::PROTOBUF.to_owned()),
        ];
        if let Some(value) = &self.traceparent {
            list.push((headers::TRACEPARENT, value.clone()));
        }
        if let Some(value) = &self.tracestate {
            list.push((headers::TRACESTATE, value.clone()));
        }
        list
    }

    /// The event as a consumer would receive it on its first delivery.
    pub fn to_received(&self, subject: String) -> ReceivedEvent {
        ReceivedEvent {
            id: self.id,
            topic: self.topic.clone(),
            event_type: self.event_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            source: self.source.clone(),
            occur_time: self.occur_time,
            correlation_id: self.correlation_id.clone(),
            traceparent: self.traceparent.clone(),
            tracestate: self.tracestate.clone(),
            payload: Bytes::from(self.payload.clone()),
            subject,
            delivery_count: 1,
            system: "in-process",
        }
    }
}

/// An event as a handler sees it.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    pub id: Uuid,
    pub topic: String,
    pub event_type: String,
    pub aggregate_id: String,
    pub source: String,
    pub occur_time: DateTime<Utc>,
    pub correlation_id: String,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub payload: Bytes,
    /// Subject it was published on.
    pub subject: String,
    /// 1 on the first delivery.
    pub delivery_count: u64,
    /// The bus it came over (OpenTelemetry's `messaging.system`): `nats` or `in-process`.
    pub system: &'static str,
}

impl ReceivedEvent {
    /// Decodes the payload as `M`.
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, prost::DecodeError> {
        M::decode(self.payload.clone())
    }

    /// `OrderPlaced` for `ordermesh.events.v1.OrderPlaced`.
    pub fn short_type(&self) -> &str {
        short_type(&self.event_type)
    }

    /// Rebuilds the event from message headers (`get` looks a header up by name).
    pub fn from_headers(
        topic: &str,
        subject: &str,
        payload: Bytes,
        delivery_count: u64,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let id = get(headers::EVENT_ID)
            .ok_or("missing event-id header")?
            .parse::<Uuid>()
            .map_err(|e| format!("bad event-id header: {e}"))?;
        let occur_time = get(headers::EVENT_TIME)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(Utc::now);
        Ok(Self {
            id,
            topic: topic.to_owned(),
            event_type: get(headers::EVENT_TYPE).unwrap_or_default(),
            aggregate_id: get(headers::AGGREGATE_ID).unwrap_or_default(),
            source: get(headers::EVENT_SOURCE).unwrap_or_default(),
            occur_time,
            correlation_id: get(headers::CORRELATION_ID).unwrap_or_default(),
            traceparent: get(headers::TRACEPARENT),
            tracestate: get(headers::TRACESTATE),
            payload,
            subject: subject.to_owned(),
            delivery_count,
            system: "nats",
        })
    }

    /// Back to an outgoing event with the same id (for dead-letter replay).
    pub fn to_outgoing(&self) -> OutgoingEvent {
        OutgoingEvent {
            id: self.id,
            topic: self.topic.clone(),
            event_type: self.event_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            payload: self.payload.to_vec(),
            correlation_id: self.correlation_id.clone(),
            traceparent: self.traceparent.clone(),
            tracestate: self.tracestate.clone(),
            source: self.source.clone(),
            occur_time: self.occur_time,
        }
    }
}
