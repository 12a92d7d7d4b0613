//! The client resilience layers, each around a `service_fn` standing in for a server.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use ordermesh_platform::client::{
    BoxError, BreakerConfig, BreakerState, CircuitBreaker, CircuitBreakerLayer, RetryUnavailableLayer,
};
use tonic::body::Body;
use tower::{ServiceBuilder, ServiceExt, service_fn};

fn grpc_response(code: i32) -> http::Response<Body> {
    http::Response::builder()
        .header("grpc-status", code.to_string())
        .body(Body::empty())
        .unwrap()
}

fn request(payload: &'static [u8]) -> http::Request<Body> {
    http::Request::builder()
        .uri("http://dep/pkg.Svc/Call")
        .body(Body::new(http_body_util::Full::new(bytes::Bytes::from_static(payload))))
        .unwrap()
}

type TestService = tower::util::BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;
type Bodies = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// A server answering with `codes` in turn (the last one forever), recording each request body.
fn server(codes: Vec<i32>) -> (TestService, Arc<AtomicU32>, Bodies) {
    let calls = Arc::new(AtomicU32::new(0));
    let bodies: Bodies = Arc::default();
    let (c, b) = (calls.clone(), bodies.clone());
    let service = service_fn(move |request: http::Request<Body>| {
        let n = c.fetch_add(1, Ordering::SeqCst) as usize;
        let code = codes[n.min(codes.len() - 1)];
        let bodies = b.clone();
        async move {
            let bytes = request.into_body().collect().await.unwrap().to_bytes();
            bodies.lock().unwrap().push(bytes.to_vec());
            Ok::<_, Infallible>(grpc_response(code))
        }
    });
    (TestService::new(service), calls, bodies)
}

fn status(response: &http::Response<Body>) -> &str {
    response.headers().get("grpc-status").unwrap().to_str().unwrap()
}

#[tokio::test]
async fn unavailable_is_retried_with_the_same_body_until_success() {
    let (inner, calls, bodies) = server(vec![14, 14, 0]);
    let service = ServiceBuilder::new()
        .layer(RetryUnavailableLayer::new(3, Duration::from_millis(1)))
        .service(inner);
    let response = service.oneshot(request(b"payload")).await.unwrap();
    assert_eq!(status(&response), "0");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(bodies.lock().unwrap().iter().all(|b| b == b"payload"));
}

#[tokio::test]
async fn other_errors_are_not_retried_and_retries_are_bounded() {
    let (inner, calls, _) = server(vec![9]);
    let service = ServiceBuilder::new()
        .layer(RetryUnavailableLayer::new(3, Duration::from_millis(1)))
        .service(inner);
    assert_eq!(status(&service.oneshot(request(b"x")).await.unwrap()), "9");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "FAILED_PRECONDITION is final");

    let (inner, calls, _) = server(vec![14]);
    let service = ServiceBuilder::new()
        .layer(RetryUnavailableLayer::new(2, Duration::from_millis(1)))
        .service(inner);
    assert_eq!(status(&service.oneshot(request(b"x")).await.unwrap()), "14");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "one call and two retries");
}

#[tokio::test]
async fn breaker_opens_on_unavailable_and_fails_fast_then_recovers() {
    let (inner, calls, _) = server(vec![14, 14, 0]);
    let breaker = CircuitBreaker::new(
        "dep",
        BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_millis(50),
        },
    );
    let service = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(inner);
    for _ in 0..2 {
        assert_eq!(status(&service.clone().oneshot(request(b"x")).await.unwrap()), "14");
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    let error: BoxError = service.clone().oneshot(request(b"x")).await.unwrap_err();
    let status_err = error.downcast::<tonic::Status>().expect("a gRPC status");
    assert_eq!(status_err.code(), tonic::Code::Unavailable);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "no call reached the server while open");

    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        status(&service.oneshot(request(b"x")).await.unwrap()),
        "0",
        "half-open probe succeeds"
    );
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test]
async fn client_errors_do_not_open_the_breaker() {
    let (inner, _, _) = server(vec![3]);
    let breaker = CircuitBreaker::new(
        "dep",
        BreakerConfig {
            failure_threshold: 1,
            open_for: Duration::from_secs(60),
        },
    );
    let service = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(inner);
    for _ in 0..3 {
        service.clone().oneshot(request(b"x")).await.unwrap();
    }
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "INVALID_ARGUMENT is the caller's fault"
    );
}
