//! The shared gRPC server, started on port 0: health, reflection through a client no one here
//! wrote (Python grpcio), authentication, graceful shutdown.

use std::process::Command;
use std::time::Duration;

use ordermesh_platform::grpc::GrpcServer;
use ordermesh_platform::{Env, ServiceConfig, Shutdown};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

async fn start(readiness_delay: Duration) -> (String, Shutdown, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let config = ServiceConfig::from_env(&Env::default(), "test", 0).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shutdown = Shutdown::new();
    let server = GrpcServer::new(&config).readiness(move || async move {
        tokio::time::sleep(readiness_delay).await;
        Ok(())
    });
    let handle = tokio::spawn(server.serve(listener, shutdown.clone()));
    (addr, shutdown, handle)
}

async fn health(addr: &str) -> ServingStatus {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let response = client
        .check(HealthCheckRequest { service: String::new() })
        .await
        .unwrap();
    response.into_inner().status()
}

#[tokio::test]
async fn health_turns_serving_once_ready_and_shutdown_drains() {
    let (addr, shutdown, handle) = start(Duration::from_millis(300)).await;
    assert_eq!(health(&addr).await, ServingStatus::NotServing, "not ready yet");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(health(&addr).await, ServingStatus::Serving);

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    assert!(endpoint.connect().await.is_err(), "listener closed");
}

/// The interpreter with grpcio installed (the test setup makes a venv and sets ORDERMESH_PYTHON).
pub fn python() -> String {
    std::env::var("ORDERMESH_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

#[tokio::test]
async fn python_grpcio_reflection_lists_services_and_resolves_methods() {
    let (addr, shutdown, _handle) = start(Duration::ZERO).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/peers/reflection_check.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .args([script, &addr])
            .args(["--service", "grpc.health.v1.Health"])
            .args([
                "--method",
                "grpc.health.v1.Health.Check=grpc.health.v1.HealthCheckRequest",
            ])
            .args([
                "--method",
                "ordermesh.order.v1.OrderService.PlaceOrder=ordermesh.order.v1.PlaceOrderRequest",
            ])
            .output()
            .expect("run python (set ORDERMESH_PYTHON to a Python with grpcio; scripts/test does)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "reflection check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("\"version\": \"v1\"") && stdout.contains("\"version\": \"v1alpha\""),
        "{stdout}"
    );
    shutdown.trigger();
}
