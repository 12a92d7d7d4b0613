//! Where the metrics go: OTLP (`OTEL_EXPORTER_OTLP_ENDPOINT`) and a Prometheus scrape endpoint
//! (`METRICS_ADDR`, `GET /metrics`, text exposition format 0.0.4), each optional, both fed by
//! one meter provider installed once per process.
//!
//! Why `opentelemetry-prometheus`: it is the OpenTelemetry project's own Prometheus reader for
//! the SDK we use (0.33, un-deprecated since 0.32), so the OTLP and the scrape views come from
//! the same instruments and the same aggregation, and its name translation (units as suffixes,
//! `_total` on counters) is the one Prometheus documents for OTLP data. A renderer of our own
//! over a `ManualReader` would have to re-implement that translation and the text format's
//! escaping; the crate's `prometheus` dependency (0.14, no protobuf) is only its encoder.
//!
//! One endpoint per process: in the embedded profile (`ordermesh up`) the six services and the
//! BFF share it and are told apart by the `service` label every series carries.

use std::net::SocketAddr;
use std::sync::OnceLock;

use anyhow::Context as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, TextEncoder};

#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// The process's name (`service.name` of the OTLP resource): a service, `bff` or `up`.
    pub service_name: String,
    /// OTLP/gRPC endpoint metrics are pushed to, when set.
    pub otlp_endpoint: Option<String>,
    /// Address of the Prometheus scrape endpoint, when set (`METRICS_ADDR`; port 0 picks one,
    /// see [`scrape_addr`]).
    pub scrape_addr: Option<SocketAddr>,
}

struct Installed {
    registry: prometheus::Registry,
    scrape_addr: Option<SocketAddr>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Installs the global meter provider when `config` asks for OTLP or a scrape endpoint, and
/// starts serving the endpoint (on the current Tokio runtime). Returns the provider, for the
/// caller to shut down (flush) at exit; `None` when nothing is configured or when an earlier
/// call in this process already installed one (several services started in one process share
/// the first: a second endpoint on the same address could not bind anyway).
pub fn install(config: &MetricsConfig) -> anyhow::Result<Option<SdkMeterProvider>> {
    if config.otlp_endpoint.is_none() && config.scrape_addr.is_none() {
        return Ok(None);
    }
    if INSTALLED.get().is_some() {
        return Ok(None);
    }
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    let mut builder = SdkMeterProvider::builder().with_resource(resource);
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()?;
        builder = builder.with_periodic_exporter(exporter);
    }
    let registry = prometheus::Registry::new();
    let mut scrape_addr = None;
    if let Some(addr) = config.scrape_addr {
        let reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            // The process's resource says `up` in the embedded profile; the `service` label
            // on every series is what tells services apart, and scrapers add their own target
            // labels. The scope (`ordermesh`) is the same on every series.
            .without_target_info()
            .scope_info_enabled(false)
            .build()?;
        builder = builder.with_reader(reader);
        // Bound here, not in the task, so a taken port fails start-up with a clear message.
        let listener =
            std::net::TcpListener::bind(addr).with_context(|| format!("METRICS_ADDR {addr}: cannot bind"))?;
        listener.set_nonblocking(true)?;
        scrape_addr = Some(listener.local_addr()?);
        let listener = tokio::net::TcpListener::from_std(listener)
            .context("METRICS_ADDR: the scrape endpoint needs a Tokio runtime")?;
        tokio::spawn(serve(listener));
    }
    let provider = builder.build();
    let installed = Installed { registry, scrape_addr };
    if INSTALLED.set(installed).is_err() {
        // Another thread won the race; its provider is the process's.
        return Ok(None);
    }
    opentelemetry::global::set_meter_provider(provider.clone());
    if let Some(addr) = scrape_addr {
        tracing::info!(%addr, "metrics: Prometheus scrape endpoint at /metrics");
    }
    Ok(Some(provider))
}

/// The address the process's scrape endpoint listens on, once installed.
pub fn scrape_addr() -> Option<SocketAddr> {
    INSTALLED.get().and_then(|installed| installed.scrape_addr)
}

/// The process's metrics in the Prometheus text format (empty before [`install`]).
pub fn render() -> String {
    let Some(installed) = INSTALLED.get() else {
        return String::new();
    };
    let mut out = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&installed.registry.gather(), &mut out) {
        tracing::warn!(%error, "metrics: could not encode");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Serves `GET /metrics` until the process ends: the endpoint belongs to the process, not to one
/// of the services it may host.
async fn serve(listener: tokio::net::TcpListener) {
    use axum::http::header;
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                render(),
            )
        }),
    );
    if let Err(error) = axum::serve(listener, router).await {
        tracing::error!(%error, "metrics: scrape endpoint stopped");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nothing_configured_installs_nothing() {
        assert!(super::install(&super::MetricsConfig::default()).unwrap().is_none());
        assert!(super::scrape_addr().is_none());
    }
}
