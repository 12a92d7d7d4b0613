//! Logging and tracing set-up, and W3C trace-context propagation through gRPC metadata (and,
//! via [`HeaderInjector`]/[`HeaderExtractor`], any string map such as message headers).

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, for development.
    Pretty,
    /// One JSON object per line, for production log pipelines.
    Json,
}

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub service_name: String,
    pub log_format: LogFormat,
    /// When set, spans are exported over OTLP/gRPC to this endpoint.
    pub otlp_endpoint: Option<String>,
    /// The log filter (`RUST_LOG`, tracing's directive syntax); `info` when absent.
    pub log_filter: Option<String>,
    /// `METRICS_ADDR`: where the Prometheus scrape endpoint listens (see [`crate::metrics::export`]).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Flushes and shuts down the trace exporter when dropped, so spans of the last requests before a
/// graceful shutdown are not lost.
#[must_use = "dropping the guard flushes and stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    meters: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
}

impl TelemetryGuard {
    /// Exports the spans ended so far now, rather than with the next batch.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(error) = provider.force_flush()
        {
            eprintln!("failed to flush traces: {error}");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("failed to flush traces: {error}");
        }
        if let Some(meters) = self.meters.take()
            && let Err(error) = meters.shutdown()
        {
            eprintln!("failed to flush metrics: {error}");
        }
    }
}

/// Installs the global subscriber (`RUST_LOG`, default `info`) and, when configured, the OTLP
/// exporter and the metrics (OTLP and/or the `METRICS_ADDR` scrape endpoint). Safe to call more
/// than once in a process: later calls keep the first subscriber and meter provider.
pub fn init(config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let directives = config.log_filter.clone().unwrap_or_else(|| "info".to_owned());
    let filter = || EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt_layer = match config.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_target(false).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };

    let provider = match &config.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(config.service_name.clone())
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build(),
            )
        }
        None => None,
    };
    let otel_layer = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer(config.service_name.clone())));
    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    let meters = crate::metrics::install(&crate::metrics::MetricsConfig {
        service_name: config.service_name.clone(),
        otlp_endpoint: config.otlp_endpoint.clone(),
        scrape_addr: config.metrics_addr,
    })?;

    // A second init (several services in one process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter())
        .with(fmt_layer)
        .with(otel_layer)
        .try_init();
    Ok(TelemetryGuard { provider, meters })
}

/// Writes trace context into any string map (gRPC metadata, HTTP or message headers).
pub struct HeaderInjector<'a, F: FnMut(&str, String)>(pub &'a mut F);

impl<F: FnMut(&str, String)> Injector for HeaderInjector<'_, F> {
    fn set(&mut self, key: &str, value: String) {
        (self.0)(key, value)
    }
}

/// Reads trace context from `(header, value)` pairs.
pub struct PairsExtractor(pub Vec<(String, String)>);

impl Extractor for PairsExtractor {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// The trace context of the current span as `(header, value)` pairs (`traceparent`, `tracestate`).
pub fn current_context_headers() -> Vec<(String, String)> {
    let context = tracing::Span::current().context();
    let mut headers = Vec::new();
    let mut push = |key: &str, value: String| headers.push((key.to_owned(), value));
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(&mut push))
    });
    headers
}

/// The current span's W3C `traceparent`, when traces are exported.
pub fn current_traceparent() -> Option<String> {
    current_context_headers()
        .into_iter()
        .find_map(|(key, value)| (key == "traceparent").then_some(value))
}

/// Makes `span` a child of the remote context carried in `get`'s headers, if any.
pub fn set_remote_parent(span: &tracing::Span, get: impl Fn(&str) -> Option<String>) {
    let pairs: Vec<(String, String)> = ["traceparent", "tracestate"]
        .iter()
        .filter_map(|key| get(key).map(|value| ((*key).to_owned(), value)))
        .collect();
    if pairs.is_empty() {
        return;
    }
    let extractor = PairsExtractor(pairs);
    let context = opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&extractor));
    let _ = span.set_parent(context);
}

/// Copies the current trace context into outgoing gRPC metadata.
pub fn inject_into_metadata(metadata: &mut tonic::metadata::MetadataMap) {
    for (key, value) in current_context_headers() {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            metadata.insert(key, value);
        }
    }
}

/// The trace id of the current span as 32 hex digits, when tracing export is on.
pub fn current_trace_id() -> Option<String> {
    trace_id_of(&tracing::Span::current())
}

/// The trace id of `span` as 32 hex digits, when tracing export is on.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let context = span.context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}
