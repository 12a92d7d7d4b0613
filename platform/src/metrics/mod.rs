//! The platform's metrics (DESIGN §7), recorded through the global OpenTelemetry meter: a no-op
//! until [`export::install`] (called by [`crate::telemetry::init`]) installs a meter provider,
//! which it does when `OTEL_EXPORTER_OTLP_ENDPOINT` or `METRICS_ADDR` is set.
//!
//! Every series carries a `service` label (`order-svc`, …, `bff`): in the embedded profile the
//! six services and the BFF share one process, one meter provider and one scrape endpoint, so
//! the process's resource (`service.name`) cannot tell them apart. Labels are closed sets —
//! service, method, status, topic, outcome, route templates — never ids or personal data.
//!
//! Names below are OpenTelemetry's; on the Prometheus endpoint dots become underscores, the unit
//! is appended (`_seconds`) and counters end in `_total` (see `deploy/observability/`):
//!
//! - `rpc.server.duration` (s) per service, method and gRPC code: RED of the RPCs served;
//! - `rpc.client.duration` (s) per calling service, peer, method and code: the same seen by the
//!   caller, retries included (what the caller's users wait for);
//! - `outbox.published` per publishing service, topic and event type; `outbox.publish_failures`;
//! - `outbox.backlog` (rows not yet published) and `outbox.oldest_pending_age` (s), sampled;
//! - `events.consumed` per consumer (`service`), topic and outcome (processed, duplicate,
//!   skipped, retry, dead_letter); `events.consumer_lag` (s): from the event's occurrence to its
//!   handling; `events.redelivered`: deliveries after the first; `events.dead_lettered`;
//! - `db.pool.connections` per service and state (used, idle) and `db.pool.max`, sampled;
//! - `cache.requests` per service and result (hit, miss): the hit ratio;
//! - `notifications.created` per kind: notifications stored (and announced) by notification-svc;
//! - `orders.time_to_confirm` (s): from an order's placement to its confirmation, recorded by
//!   order-svc once the confirmation committed (the saga's latency).
//!
//! The BFF adds its own (HTTP RED per route, open SSE streams) in `bff::metrics`.

pub mod export;
pub mod sampler;

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram};

pub use export::{MetricsConfig, install, scrape_addr};

/// Histogram boundaries (s) for request and call durations: fine below the 200 ms objective
/// (DESIGN's API p95), coarse above. The SDK's default buckets (0…10 000) suit milliseconds,
/// not seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Boundaries (s) for the time events wait between occurrence and handling: up to minutes, as a
/// consumer catching up after an outage sees.
pub const LAG_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

pub struct Metrics {
    pub rpc_duration: Histogram<f64>,
    pub rpc_client_duration: Histogram<f64>,
    pub outbox_published: Counter<u64>,
    pub outbox_publish_failures: Counter<u64>,
    pub outbox_backlog: Gauge<u64>,
    pub outbox_oldest_pending_age: Gauge<f64>,
    pub events_consumed: Counter<u64>,
    pub consumer_lag: Histogram<f64>,
    pub redelivered: Counter<u64>,
    pub dead_lettered: Counter<u64>,
    pub pool_connections: Gauge<u64>,
    pub pool_max: Gauge<u64>,
    pub cache_requests: Counter<u64>,
    pub notifications_created: Counter<u64>,
    pub orders_time_to_confirm: Histogram<f64>,
}

/// The instruments, made on first use from the global meter provider (so the provider must be
/// installed before the first request or event, as `telemetry::init` at start-up does).
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = opentelemetry::global::meter("ordermesh");
        Metrics {
            rpc_duration: meter
                .f64_histogram("rpc.server.duration")
                .with_unit("s")
                .with_description("Duration of gRPC calls handled, by method and status code")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            rpc_client_duration: meter
                .f64_histogram("rpc.client.duration")
                .with_unit("s")
                .with_description(
                    "Duration of gRPC calls made to peers, retries included, by peer, method and status code",
                )
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            outbox_published: meter
                .u64_counter("outbox.published")
                .with_description("Outbox rows published and acknowledged by the broker")
                .build(),
            outbox_publish_failures: meter
                .u64_counter("outbox.publish_failures")
                .with_description("Relay passes that failed to publish (broker unreachable or refusing)")
                .build(),
            outbox_backlog: meter
                .u64_gauge("outbox.backlog")
                .with_description("Outbox rows committed and not yet published")
                .build(),
            outbox_oldest_pending_age: meter
                .f64_gauge("outbox.oldest_pending_age")
                .with_unit("s")
                .with_description("Age of the oldest outbox row not yet published (0 when none)")
                .build(),
            events_consumed: meter
                .u64_counter("events.consumed")
                .with_description("Deliveries handled by consumers, by outcome")
                .build(),
            consumer_lag: meter
                .f64_histogram("events.consumer_lag")
                .with_unit("s")
                .with_description("Time from an event's occurrence to its handling")
                .with_boundaries(LAG_BUCKETS.to_vec())
                .build(),
            redelivered: meter
                .u64_counter("events.redelivered")
                .with_description("Deliveries of an event after its first")
                .build(),
            dead_lettered: meter
                .u64_counter("events.dead_lettered")
                .with_description("Events moved to the dead-letter stream")
                .build(),
            pool_connections: meter
                .u64_gauge("db.pool.connections")
                .with_description("Database connections of the service's pool, by state (used, idle)")
                .build(),
            pool_max: meter
                .u64_gauge("db.pool.max")
                .with_description("Most connections the service's pool opens")
                .build(),
            cache_requests: meter
                .u64_counter("cache.requests")
                .with_description("Cache look-ups, by result (hit, miss)")
                .build(),
            notifications_created: meter
                .u64_counter("notifications.created")
                .with_description("Notifications stored and announced, by kind")
                .build(),
            orders_time_to_confirm: meter
                .f64_histogram("orders.time_to_confirm")
                .with_unit("s")
                .with_description("From an order's placement to its confirmation (the saga's latency)")
                .with_boundaries(LAG_BUCKETS.to_vec())
                .build(),
        }
    })
}

/// The `service` label of a service known by its short name (`order` → `order-svc`); other
/// names (`bff`) are kept.
pub fn service_label(short: &str) -> &'static str {
    match crate::mesh::Workload::of_service(short) {
        Some(workload) => workload.name(),
        None => match short {
            "bff" => "bff",
            _ => "other",
        },
    }
}

pub fn record_rpc(service: &'static str, method: &str, code: &str, seconds: f64) {
    metrics().rpc_duration.record(
        seconds,
        &[
            KeyValue::new("service", service_label(service)),
            KeyValue::new("rpc.method", method.to_owned()),
            KeyValue::new("rpc.grpc.status_code", code.to_owned()),
        ],
    );
}

/// One call of `caller` to `peer` (both workload names), as the caller saw it.
pub fn record_client_rpc(caller: &'static str, peer: &'static str, method: &str, code: &str, seconds: f64) {
    metrics().rpc_client_duration.record(
        seconds,
        &[
            KeyValue::new("service", caller),
            KeyValue::new("peer", peer),
            KeyValue::new("rpc.method", method.to_owned()),
            KeyValue::new("rpc.grpc.status_code", code.to_owned()),
        ],
    );
}

/// `count` events of `event_type` (a protobuf message name: a closed set) from `source` (a
/// service name) on `topic` acknowledged by the broker. The type makes the saga's dashboard:
/// orders placed, confirmed, rejected, cancelled.
pub fn record_published(source: &str, topic: &str, event_type: &str, count: u64) {
    metrics().outbox_published.add(
        count,
        &[
            KeyValue::new("service", source.to_owned()),
            KeyValue::new("topic", topic.to_owned()),
            // `OrderConfirmed`, not `ordermesh.events.v1.OrderConfirmed`.
            KeyValue::new(
                "event_type",
                event_type.rsplit('.').next().unwrap_or(event_type).to_owned(),
            ),
        ],
    );
}

pub fn record_publish_failure(service: &str) {
    metrics()
        .outbox_publish_failures
        .add(1, &[KeyValue::new("service", service.to_owned())]);
}

/// One delivery to `consumer` (its service's name) settled with `outcome`; `delivery` counts
/// from 1.
pub fn record_consumed(consumer: &str, topic: &str, outcome: &'static str, lag_seconds: f64, delivery: u64) {
    let labels = [
        KeyValue::new("service", consumer.to_owned()),
        KeyValue::new("topic", topic.to_owned()),
    ];
    let mut with_outcome = labels.to_vec();
    with_outcome.push(KeyValue::new("outcome", outcome));
    metrics().events_consumed.add(1, &with_outcome);
    if delivery > 1 {
        metrics().redelivered.add(1, &labels);
    }
    if outcome == "processed" {
        metrics().consumer_lag.record(lag_seconds.max(0.0), &labels);
    }
    if outcome == "dead_letter" {
        metrics().dead_lettered.add(1, &labels);
    }
}

/// A cache look-up of `service`'s cache.
pub fn record_cache(service: &'static str, hit: bool) {
    metrics().cache_requests.add(
        1,
        &[
            KeyValue::new("service", service),
            KeyValue::new("result", if hit { "hit" } else { "miss" }),
        ],
    );
}

/// An order confirmed `seconds` after it was placed (order-svc, after the commit).
pub fn record_confirmed(seconds: f64) {
    metrics()
        .orders_time_to_confirm
        .record(seconds, &[KeyValue::new("service", "order-svc")]);
}

/// A notification of `kind` stored by notification-svc (after its transaction committed).
pub fn record_notification(kind: &'static str) {
    metrics().notifications_created.add(
        1,
        &[
            KeyValue::new("service", "notification-svc"),
            KeyValue::new("kind", kind),
        ],
    );
}
