//! The HTTP gateway adapter against a provider served by the test on a local port. The fake
//! provider performs an operation the first time it sees an idempotency key, even when it then
//! answers with an error, as real providers can; so only retries with the same key avoid
//! double charges.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use ordermesh_platform::client::{BreakerConfig, BreakerState};
use payment_svc::gateway::{
    Amount, ChargeRequest, GatewayError, GatewayOutcome, HttpGateway, HttpGatewayConfig, PaymentGateway,
};
use serde_json::{Value, json};

#[derive(Default)]
struct Provider {
    /// Status codes to answer in turn before answering normally.
    script: Vec<(u16, Option<&'static str>)>,
    requests: Vec<String>,
    performed: HashMap<String, Value>,
}

type Shared = Arc<Mutex<Provider>>;

async fn charge(State(provider): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let mut p = provider.lock().unwrap();
    p.requests.push(key.clone());
    let next = p.requests.len();
    let record = p
        .performed
        .entry(key)
        .or_insert_with(|| match body["payment_method"].as_str() {
            Some("tok_declined") => json!({"id": null, "status": "declined", "decline_reason": "card_declined"}),
            _ => json!({"id": format!("ch_{next}"), "status": "approved"}),
        })
        .clone();
    if !p.script.is_empty() {
        let (code, retry_after) = p.script.remove(0);
        let mut response = StatusCode::from_u16(code).unwrap().into_response();
        if let Some(after) = retry_after {
            response.headers_mut().insert("retry-after", after.parse().unwrap());
        }
        return response;
    }
    let code = if record["status"] == "declined" {
        StatusCode::PAYMENT_REQUIRED
    } else {
        StatusCode::OK
    };
    (code, Json(record)).into_response()
}

async fn serve_on(listener: tokio::net::TcpListener, script: Vec<(u16, Option<&'static str>)>) -> Shared {
    let provider: Shared = Arc::new(Mutex::new(Provider {
        script,
        ..Provider::default()
    }));
    let app = Router::new()
        .route("/v1/charges", post(charge))
        .with_state(provider.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    provider
}

async fn provider(script: Vec<(u16, Option<&'static str>)>) -> (String, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (url, serve_on(listener, script).await)
}

fn config(url: &str) -> HttpGatewayConfig {
    HttpGatewayConfig {
        base_backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(2),
        ..HttpGatewayConfig::new(url)
    }
}

fn request(token: &str, key: &str) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: key.into(),
        amount: Amount {
            minor: 4200,
            currency: "EUR".into(),
        },
        payment_method_token: token.into(),
        reference: "order-1".into(),
        capture: true,
    }
}

#[tokio::test]
async fn two_503_then_200_makes_exactly_one_charge() {
    let (url, provider) = provider(vec![(503, None), (503, Some("0"))]).await;
    let gateway = HttpGateway::new(config(&url)).unwrap();
    let outcome = gateway
        .charge(&request("tok_approved", "order-1:charge"))
        .await
        .unwrap();
    assert!(matches!(outcome, GatewayOutcome::Approved { .. }), "{outcome:?}");
    let p = provider.lock().unwrap();
    assert_eq!(
        p.requests,
        vec!["order-1:charge"; 3],
        "three attempts, one idempotency key"
    );
    assert_eq!(p.performed.len(), 1, "the provider charged once");
}

#[tokio::test]
async fn retry_after_is_honoured_on_429() {
    let (url, provider) = provider(vec![(429, Some("1"))]).await;
    let gateway = HttpGateway::new(config(&url)).unwrap();
    assert!(gateway.charge(&request("tok_approved", "k")).await.is_ok());
    assert_eq!(provider.lock().unwrap().requests.len(), 2);
}

#[tokio::test]
async fn decline_is_an_answer_and_400_is_final() {
    let (url, provider) = provider(vec![]).await;
    let gateway = HttpGateway::new(config(&url)).unwrap();
    assert_eq!(
        gateway.charge(&request("tok_declined", "d")).await.unwrap(),
        GatewayOutcome::Declined {
            reason: "card_declined".into()
        }
    );

    let (url, provider_400) = self::provider(vec![(400, None)]).await;
    let gateway = HttpGateway::new(config(&url)).unwrap();
    assert!(matches!(
        gateway.charge(&request("tok_approved", "x")).await,
        Err(GatewayError::Rejected(_))
    ));
    assert_eq!(provider_400.lock().unwrap().requests.len(), 1, "a 400 is not retried");
    assert_eq!(provider.lock().unwrap().requests.len(), 1);
}

#[tokio::test]
async fn gateway_down_opens_the_breaker_and_it_closes_when_the_gateway_returns() {
    // Reserve a port, then leave it closed: the gateway is down.
    let reserved = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let gateway = HttpGateway::new(HttpGatewayConfig {
        max_attempts: 1,
        breaker: BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_millis(200),
        },
        ..config(&format!("http://{addr}"))
    })
    .unwrap();

    for _ in 0..3 {
        assert!(matches!(
            gateway.charge(&request("tok_approved", "k")).await,
            Err(GatewayError::Unavailable(_))
        ));
    }
    assert_eq!(gateway.breaker().state(), BreakerState::Open);
    assert_eq!(
        gateway.charge(&request("tok_approved", "k")).await,
        Err(GatewayError::CircuitOpen)
    );
    assert!(GatewayError::CircuitOpen.is_transient(), "callers retry later");

    // The gateway comes back on the same address; after the open interval a probe goes through.
    let provider = serve_on(tokio::net::TcpListener::bind(addr).await.unwrap(), vec![]).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(matches!(
        gateway.charge(&request("tok_approved", "k")).await,
        Ok(GatewayOutcome::Approved { .. })
    ));
    assert_eq!(gateway.breaker().state(), BreakerState::Closed);
    assert_eq!(provider.lock().unwrap().performed.len(), 1);
}
