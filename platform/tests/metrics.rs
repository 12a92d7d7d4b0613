//! The platform's metrics reach an exporter: RED of gRPC calls and the outcome and lag of
//! consumed events. One test in its own binary, because it installs the global meter provider.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use ordermesh_platform::db::{Database, Migrations};
use ordermesh_platform::events::{
    Consumer, ConsumerConfig, EventBus, EventHandler, HandlerError, MemoryBus, OutgoingEvent, ReceivedEvent, Tx, outbox,
};
use ordermesh_platform::grpc::GrpcServer;
use ordermesh_platform::testing::TestDatabase;
use ordermesh_platform::{Env, ServiceConfig, Shutdown};
use ordermesh_proto::events::OrderPlaced;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

struct Accept;

#[async_trait]
impl EventHandler for Accept {
    async fn handle(&self, event: &ReceivedEvent, _tx: &mut Tx) -> Result<(), HandlerError> {
        event.decode::<OrderPlaced>()?;
        Ok(())
    }
}

fn names(metrics: &[ResourceMetrics]) -> Vec<String> {
    metrics
        .iter()
        .flat_map(|r| r.scope_metrics())
        .flat_map(|s| s.metrics())
        .map(|m| m.name().to_owned())
        .collect()
}

#[tokio::test]
async fn rpc_and_consumer_metrics_are_exported() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());

    // A gRPC call through the shared server.
    let config = ServiceConfig::from_env(&Env::default(), "metrics", 0).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    tokio::spawn(GrpcServer::new(&config).serve(listener, shutdown.clone()));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .unwrap();

    // An event through the outbox, the in-process bus and a consumer.
    let database = TestDatabase::sqlite().unwrap();
    let db = Database::connect(database.url(), "metrics").await.unwrap();
    db.migrate(&Migrations::embedded(
        outbox::POSTGRES_MIGRATIONS,
        outbox::SQLITE_MIGRATIONS,
    ))
    .await
    .unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new());
    let message = OrderPlaced {
        order_id: "o-1".into(),
        ..Default::default()
    };
    let event = OutgoingEvent::new("order-svc", "order-events", "OrderPlaced", "o-1", "corr", &message);
    bus.publish(&event).await.unwrap();
    let consumer = Consumer::spawn(
        bus,
        db.clone(),
        ConsumerConfig::new("metrics-svc", "order-events"),
        Arc::new(Accept),
        shutdown.clone(),
    )
    .await
    .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        provider.force_flush().unwrap();
        let exported = exporter.get_finished_metrics().unwrap();
        let found = names(&exported);
        if ["rpc.server.duration", "events.consumed", "events.consumer_lag"]
            .iter()
            .all(|n| found.iter().any(|f| f == n))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "exported so far: {found:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.trigger();
    let _ = consumer.await;
}
