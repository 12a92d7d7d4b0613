//! Mutual TLS without a mesh, against a real listener: the platform's gRPC server as payment-svc
//! with a development CA. The handshake refuses callers without a certificate of the CA; the
//! call graph refuses workloads that may not make the call, and lets the others through.

use std::sync::Arc;

use ordermesh_platform::client::{ClientConfig, endpoint};
use ordermesh_platform::grpc::GrpcServer;
use ordermesh_platform::mesh::Workload;
use ordermesh_platform::mesh::dev_ca::{DevCa, Issued};
use ordermesh_platform::mesh::tls::WorkloadTls;
use ordermesh_platform::{Env, ServiceConfig, Shutdown};
use ordermesh_proto::payment::payment_service_client::PaymentServiceClient;
use ordermesh_proto::payment::{AuthorizePaymentRequest, RefundPaymentRequest};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_types::StatusExt;

struct Server {
    url: String,
    ca: DevCa,
    shutdown: Shutdown,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn start() -> Server {
    ordermesh_platform::install_crypto_provider();
    let ca = DevCa::generate("cluster.local", "ordermesh").unwrap();
    let mut config = ServiceConfig::from_env(&Env::default(), "payment", 0).unwrap();
    config.tls = Some(Arc::new(ca.workload_tls(Workload::Payment).unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let shutdown = Shutdown::new();
    tokio::spawn(GrpcServer::new(&config).serve(listener, shutdown.clone()));
    Server { url, ca, shutdown }
}

fn channel(url: &str, tls: Option<WorkloadTls>) -> tonic::transport::Channel {
    let config = ClientConfig {
        tls: tls.map(Arc::new),
        ..ClientConfig::new("payment-svc", url)
    };
    endpoint(&config).unwrap().connect_lazy()
}

async fn health(channel: tonic::transport::Channel) -> Result<ServingStatus, tonic::Status> {
    // The server reports SERVING once its (empty) readiness check has run.
    for _ in 0..50 {
        let answer = HealthClient::new(channel.clone())
            .check(HealthCheckRequest { service: String::new() })
            .await?
            .into_inner()
            .status();
        if answer == ServingStatus::Serving {
            return Ok(answer);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(ServingStatus::NotServing)
}

fn assert_refused_by_graph(status: &tonic::Status, reason: &str) {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo details");
    assert_eq!(info.reason, reason, "{status:?}");
}

#[tokio::test]
async fn a_caller_the_graph_allows_is_served() {
    let server = start().await;
    let bff = server.ca.workload_tls(Workload::BffInternal).unwrap();
    assert_eq!(
        health(channel(&server.url, Some(bff))).await.unwrap(),
        ServingStatus::Serving
    );

    // order-svc may authorise payments: the call passes the graph and reaches the router, which
    // serves no payment API in this test.
    let order = server.ca.workload_tls(Workload::Order).unwrap();
    let status = PaymentServiceClient::new(channel(&server.url, Some(order)))
        .authorize_payment(AuthorizePaymentRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
}

#[tokio::test]
async fn a_workload_not_allowed_to_make_the_call_is_refused_with_permission_denied() {
    let server = start().await;
    // The client portal's BFF may not refund (only the employee portal's may).
    let external = server.ca.workload_tls(Workload::BffExternal).unwrap();
    let status = PaymentServiceClient::new(channel(&server.url, Some(external)))
        .refund_payment(RefundPaymentRequest::default())
        .await
        .unwrap_err();
    assert_refused_by_graph(&status, "CALLER_NOT_ALLOWED");
    assert!(status.message().contains("bff-external may not call"), "{status:?}");

    // order-svc calls payment-svc, but never its health; operators may, and may not write.
    let order = server.ca.workload_tls(Workload::Order).unwrap();
    assert_refused_by_graph(
        &health(channel(&server.url, Some(order))).await.unwrap_err(),
        "CALLER_NOT_ALLOWED",
    );
    let ops = server.ca.workload_tls(Workload::Ops).unwrap();
    assert_eq!(
        health(channel(&server.url, Some(ops.clone()))).await.unwrap(),
        ServingStatus::Serving
    );
    let status = PaymentServiceClient::new(channel(&server.url, Some(ops)))
        .authorize_payment(AuthorizePaymentRequest::default())
        .await
        .unwrap_err();
    assert_refused_by_graph(&status, "CALLER_NOT_ALLOWED");
}

#[tokio::test]
async fn a_certificate_of_another_namespace_names_no_caller() {
    let server = start().await;
    // Signed by the right CA, but for a workload of another namespace.
    let elsewhere = DevCa::generate("cluster.local", "elsewhere").unwrap();
    let issued = elsewhere.issue(Workload::BffInternal).unwrap();
    let status = health(channel(&server.url, Some(presenting(issued, &server.ca)))).await;
    // The other CA did not sign it: refused at the handshake.
    assert!(status.is_err());

    let issued = server.ca.issue_as(Workload::BffInternal, "elsewhere").unwrap();
    let status = health(channel(&server.url, Some(presenting(issued, &server.ca))))
        .await
        .unwrap_err();
    assert_refused_by_graph(&status, "CALLER_UNKNOWN");
}

#[tokio::test]
async fn the_handshake_refuses_callers_without_a_trusted_client_certificate() {
    let server = start().await;
    let server_ca = server.ca.ca_pem().into_bytes();

    // No client certificate at all, over TLS that trusts the server.
    let config =
        tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(&server_ca));
    let anonymous = tonic::transport::Endpoint::from_shared(server.url.clone())
        .unwrap()
        .tls_config(config)
        .unwrap()
        .connect_lazy();
    let status = health(anonymous).await.unwrap_err();
    assert_ne!(
        status.code(),
        Code::PermissionDenied,
        "refused before any call: {status:?}"
    );

    // A certificate from a CA the server does not trust, even naming an allowed workload.
    let rogue = DevCa::generate("cluster.local", "ordermesh").unwrap();
    let tls = presenting(rogue.issue(Workload::BffInternal).unwrap(), &server.ca);
    let status = health(channel(&server.url, Some(tls))).await.unwrap_err();
    assert_ne!(
        status.code(),
        Code::PermissionDenied,
        "refused before any call: {status:?}"
    );

    // Plaintext.
    let plaintext = server.url.replace("https://", "http://");
    let status = health(channel(&plaintext, None)).await.unwrap_err();
    assert_ne!(
        status.code(),
        Code::PermissionDenied,
        "refused before any call: {status:?}"
    );
}

/// A client presenting `issued`, trusting `server_ca` for the server.
fn presenting(issued: Issued, server_ca: &DevCa) -> WorkloadTls {
    let ca = server_ca.ca_pem().into_bytes();
    WorkloadTls::from_pem(
        issued.cert_pem.into_bytes(),
        issued.key_pem.into_bytes(),
        ca.clone(),
        ca,
    )
    .unwrap()
}
