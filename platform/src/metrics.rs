//! The platform's metrics (DESIGN §7), recorded through the global OpenTelemetry meter: a no-op
//! until [`crate::telemetry::init`] installs an exporter (`OTEL_EXPORTER_OTLP_ENDPOINT`).
//!
//! - `rpc.server.duration` (s) per service, method and gRPC code: rate, errors and duration (RED);
//! - `outbox.published`, `outbox.publish_failures`: the relay's throughput and broker trouble;
//! - `events.consumed` per consumer, topic and outcome (processed, duplicate, retry,
//!   dead_letter); `events.consumer_lag` (s): from the event's occurrence to its handling;
//! - `events.dead_lettered` per consumer and topic.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

pub struct Metrics {
    pub rpc_duration: Histogram<f64>,
    pub outbox_published: Counter<u64>,
    pub outbox_publish_failures: Counter<u64>,
    pub events_consumed: Counter<u64>,
    pub consumer_lag: Histogram<f64>,
    pub dead_lettered: Counter<u64>,
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
                .build(),
            outbox_published: meter
                .u64_counter("outbox.published")
                .with_description("Outbox rows published and acknowledged by the broker")
                .build(),
            outbox_publish_failures: meter
                .u64_counter("outbox.publish_failures")
                .with_description("Relay passes that failed to publish (broker unreachable or refusing)")
                .build(),
            events_consumed: meter
                .u64_counter("events.consumed")
                .with_description("Deliveries handled by consumers, by outcome")
                .build(),
            consumer_lag: meter
                .f64_histogram("events.consumer_lag")
                .with_unit("s")
                .with_description("Time from an event's occurrence to its handling")
                .build(),
            dead_lettered: meter
                .u64_counter("events.dead_lettered")
                .with_description("Events moved to the dead-letter stream")
                .build(),
        }
    })
}

pub fn record_rpc(service: &'static str, method: &str, code: &str, seconds: f64) {
    metrics().rpc_duration.record(
        seconds,
        &[
            KeyValue::new("rpc.service", service),
            KeyValue::new("rpc.method", method.to_owned()),
            KeyValue::new("rpc.grpc.status_code", code.to_owned()),
        ],
    );
}

pub fn record_consumed(consumer: &str, topic: &str, outcome: &'static str, lag_seconds: f64) {
    let labels = [
        KeyValue::new("consumer", consumer.to_owned()),
        KeyValue::new("topic", topic.to_owned()),
    ];
    let mut with_outcome = labels.to_vec();
    with_outcome.push(KeyValue::new("outcome", outcome));
    metrics().events_consumed.add(1, &with_outcome);
    if outcome == "processed" {
        metrics().consumer_lag.record(lag_seconds.max(0.0), &labels);
    }
    if outcome == "dead_letter" {
        metrics().dead_lettered.add(1, &labels);
    }
}
