//! The authentication layer on its own: wrapped around a plain tower service, it puts the
//! principal in the request extensions or answers UNAUTHENTICATED itself.

use std::convert::Infallible;
use std::time::Duration;

use ordermesh_platform::auth::{DevIssuer, DevTokenRequest, IssuerKind, JwtValidator, Principal, Role};
use ordermesh_platform::grpc::AuthLayer;
use tower::{Layer, ServiceExt, service_fn};

/// Echoes who the layer said the caller is in an `x-principal` header.
async fn echo(request: http::Request<()>) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let who = match request.extensions().get::<Principal>() {
        Some(principal) => principal.actor(),
        None => "anonymous".to_owned(),
    };
    Ok(http::Response::builder()
        .header("x-principal", who)
        .body(tonic::body::Body::empty())
        .unwrap())
}

async fn issuer() -> (DevIssuer, std::sync::Arc<JwtValidator>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = DevIssuer::generate(format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let router = issuer.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let validator = std::sync::Arc::new(JwtValidator::new(issuer.auth_config("ordermesh")));
    (issuer, validator)
}

fn call(path: &str, token: Option<&str>) -> http::Request<()> {
    let mut builder = http::Request::builder().uri(format!("http://svc{path}"));
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(()).unwrap()
}

fn header(response: &http::Response<tonic::body::Body>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn valid_token_sets_principal_invalid_token_is_rejected_missing_token_passes() {
    let (issuer, validator) = issuer().await;
    let service = AuthLayer::new(Some(validator)).layer(service_fn(echo));
    let token = issuer
        .mint(&DevTokenRequest {
            kind: IssuerKind::Employee,
            subject: "emp-1".into(),
            roles: vec![Role::OrderManager],
            audience: "ordermesh".into(),
            ttl: Duration::from_secs(60),
        })
        .unwrap();

    let ok = service
        .clone()
        .oneshot(call("/ordermesh.order.v1.OrderService/GetOrder", Some(&token)))
        .await
        .unwrap();
    assert_eq!(header(&ok, "x-principal"), "employee:emp-1");

    let bad = service
        .clone()
        .oneshot(call("/ordermesh.order.v1.OrderService/GetOrder", Some("x.y.z")))
        .await
        .unwrap();
    assert_eq!(header(&bad, "grpc-status"), "16", "UNAUTHENTICATED");
    assert!(
        header(&bad, "grpc-message").contains("invalid%20bearer%20token"),
        "{}",
        header(&bad, "grpc-message")
    );

    let anonymous = service
        .clone()
        .oneshot(call("/ordermesh.order.v1.OrderService/GetOrder", None))
        .await
        .unwrap();
    assert_eq!(header(&anonymous, "x-principal"), "anonymous");

    // Health and reflection are public, whatever the token.
    let health = service
        .oneshot(call("/grpc.health.v1.Health/Check", Some("x.y.z")))
        .await
        .unwrap();
    assert_eq!(header(&health, "x-principal"), "anonymous");
}

#[tokio::test]
async fn a_service_without_issuers_rejects_any_token() {
    let service = AuthLayer::new(None).layer(service_fn(echo));
    let response = service
        .oneshot(call("/ordermesh.order.v1.OrderService/GetOrder", Some("a.b.c")))
        .await
        .unwrap();
    assert_eq!(header(&response, "grpc-status"), "16");
}
