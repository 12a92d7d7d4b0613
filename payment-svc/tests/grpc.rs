//! gRPC integration tests of the payment service: in-process on 127.0.0.1:0, a fresh PostgreSQL
//! database per test, real JWTs from a dev issuer, real NATS JetStream (isolated prefixes), the
//! sandbox gateway behind a counting wrapper, and an HTTP provider served by the test.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use common::{CountingGateway, Harness, charge, eur, status};
use ordermesh_platform::auth::Role;
use ordermesh_platform::testing::{violated_fields, with_token};
use ordermesh_proto::payment as pb;
use payment_svc::gateway::{HttpGateway, HttpGatewayConfig};
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

fn count(counter: &std::sync::atomic::AtomicUsize) -> usize {
    CountingGateway::count(counter)
}

#[tokio::test]
async fn authorize_then_capture_and_one_step_charge() {
    let h = Harness::start().await;
    let token = h.order_svc();

    let held = h
        .authorize(charge(Uuid::now_v7(), "tok_approved", "k-auth", false), &token)
        .await
        .unwrap();
    assert_eq!(status(&held), pb::PaymentStatus::Authorized);
    assert_eq!(held.captured_amount.as_ref().unwrap().amount_minor, 0);
    assert!(!held.gateway_reference.is_empty());

    let captured = h
        .client()
        .capture_payment(with_token(
            pb::CapturePaymentRequest {
                payment_id: held.id.clone(),
                amount: None,
                idempotency_key: "k-capture".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(status(&captured), pb::PaymentStatus::Captured);
    assert_eq!(captured.captured_amount.as_ref().unwrap().amount_minor, 4200);
    let kinds: Vec<i32> = captured.transactions.iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds,
        [
            pb::TransactionKind::Authorize as i32,
            pb::TransactionKind::Capture as i32
        ]
    );

    // Capturing again (another key) is a state error; the same key repeats the answer.
    let again = h
        .client()
        .capture_payment(with_token(
            pb::CapturePaymentRequest {
                payment_id: held.id.clone(),
                amount: None,
                idempotency_key: "k-capture-2".into(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");

    let charged = h
        .authorize(charge(Uuid::now_v7(), "tok_approved", "k-charge", true), &token)
        .await
        .unwrap();
    assert_eq!(status(&charged), pb::PaymentStatus::Captured);
    assert_eq!(charged.captured_amount.unwrap().amount_minor, 4200);
    assert_eq!(count(&h.gateway.charges), 2);
    assert_eq!(count(&h.gateway.captures), 1);
    assert_eq!(
        h.outbox_types().await,
        ["PaymentAuthorized", "PaymentCaptured", "PaymentCaptured"]
    );
}

#[tokio::test]
async fn declined_is_an_answer_not_an_error() {
    let h = Harness::start().await;
    let order = Uuid::now_v7();
    let declined = h
        .authorize(charge(order, "tok_insufficient_funds", "d-1", true), &h.order_svc())
        .await
        .unwrap();
    assert_eq!(status(&declined), pb::PaymentStatus::Declined);
    assert_eq!(declined.decline_reason, "insufficient_funds");
    assert_eq!(declined.captured_amount.unwrap().amount_minor, 0);
    assert_eq!(declined.transactions.len(), 1);
    assert_eq!(declined.transactions[0].status, pb::TransactionStatus::Declined as i32);
    assert_eq!(h.outbox_types().await, ["PaymentDeclined"]);

    // A declined payment does not hold the order: another attempt with a new key may charge it.
    let retry = h
        .authorize(charge(order, "tok_approved", "d-2", true), &h.order_svc())
        .await
        .unwrap();
    assert_eq!(status(&retry), pb::PaymentStatus::Captured);
}

#[tokio::test]
async fn the_same_idempotency_key_charges_once() {
    let h = Harness::start().await;
    let order = Uuid::now_v7();
    let key = format!("order-{order}-charge");
    let request = charge(order, "tok_approved", &key, true);
    let first = h.authorize(request.clone(), &h.order_svc()).await.unwrap();
    let second = h.authorize(request.clone(), &h.order_svc()).await.unwrap();
    assert_eq!(first.id, second.id);
    assert_eq!(first, second, "a repeat returns the first result");
    assert_eq!(count(&h.gateway.charges), 1, "one charge at the gateway");

    // Concurrent repeats: still one payment.
    let token = h.order_svc();
    let results = futures::future::join_all((0..8).map(|_| h.authorize(request.clone(), &token))).await;
    assert!(results.iter().all(|r| r.as_ref().unwrap().id == first.id));
    assert_eq!(count(&h.gateway.charges), 1);

    // Racing requests for one order under different keys: one payment, one charge.
    let race = Uuid::now_v7();
    let results = futures::future::join_all(
        (0..8).map(|i| h.authorize(charge(race, "tok_approved", &format!("race-{i}"), true), &token)),
    )
    .await;
    let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.code() == Code::AlreadyExists)
    );
    assert_eq!(count(&h.gateway.charges), 2);

    // The same key with another request is refused clearly.
    let mut other = request.clone();
    other.amount = Some(eur(1));
    let err = h.authorize(other, &h.order_svc()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.get_error_details().error_info().unwrap().reason,
        "IDEMPOTENCY_KEY_REUSED"
    );

    // Another key for the same order never charges it twice.
    let err = h
        .authorize(charge(order, "tok_approved", "someone-else", true), &h.order_svc())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert_eq!(count(&h.gateway.charges), 2);
    assert_eq!(h.outbox_types().await, ["PaymentCaptured", "PaymentCaptured"]);
}

#[tokio::test]
async fn gateway_outage_is_unavailable_and_a_retry_with_the_key_completes() {
    let gateway = Arc::new(CountingGateway::sandbox());
    gateway.fail_first.store(2, std::sync::atomic::Ordering::SeqCst);
    let h = Harness::with_gateway(gateway).await;
    let order = Uuid::now_v7();
    let request = charge(order, "tok_approved", "outage", true);
    for _ in 0..2 {
        let err = h.authorize(request.clone(), &h.order_svc()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    }
    // Nothing declined was recorded; the intent is there, without an outcome.
    let listed = h
        .client()
        .list_payments(with_token(
            pb::ListPaymentsRequest {
                order_id: order.to_string(),
                ..Default::default()
            },
            &h.admin(),
        ))
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(listed.len(), 1);
    assert_eq!(status(&listed[0]), pb::PaymentStatus::Unspecified);
    assert!(h.outbox_types().await.is_empty());

    let done = h.authorize(request, &h.order_svc()).await.unwrap();
    assert_eq!(done.id, listed[0].id);
    assert_eq!(status(&done), pb::PaymentStatus::Captured);
    assert_eq!(count(&h.gateway.charges), 1);

    // The gateway charged but its answer was lost: the retry sends the same key, and the
    // gateway answers with the first (and only) charge.
    h.gateway.lose_answers.store(1, std::sync::atomic::Ordering::SeqCst);
    let lost = charge(Uuid::now_v7(), "tok_approved", "lost-answer", true);
    let err = h.authorize(lost.clone(), &h.order_svc()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let recovered = h.authorize(lost, &h.order_svc()).await.unwrap();
    assert_eq!(status(&recovered), pb::PaymentStatus::Captured);
    assert_eq!(
        h.gateway.charge_keys.lock().unwrap()[1..],
        ["lost-answer", "lost-answer"],
        "both attempts carried the caller's key"
    );

    // The sandbox's own transient error token.
    let err = h
        .authorize(charge(Uuid::now_v7(), "tok_gateway_error", "ge", true), &h.order_svc())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(h.outbox_types().await, ["PaymentCaptured", "PaymentCaptured"]);
}

#[tokio::test]
async fn refunds_partial_then_full_never_above_captured_and_idempotent() {
    let h = Harness::start().await;
    let admin = h.admin();
    let p = h
        .authorize(charge(Uuid::now_v7(), "tok_approved", "r-charge", true), &h.order_svc())
        .await
        .unwrap();

    let first = h.refund(&p.id, Some(1000), "r-1", &admin).await.unwrap();
    let payment = first.payment.unwrap();
    assert_eq!(status(&payment), pb::PaymentStatus::PartiallyRefunded);
    assert_eq!(payment.refunded_amount.unwrap().amount_minor, 1000);
    let refund = first.refund.unwrap();
    assert_eq!(refund.status, pb::RefundStatus::Succeeded as i32);
    assert_eq!(refund.requested_by.unwrap().id, "admin-1");

    // The repeat returns the same refund and changes nothing.
    let repeat = h.refund(&p.id, Some(1000), "r-1", &admin).await.unwrap();
    assert_eq!(repeat.refund.unwrap().id, refund.id);
    assert_eq!(repeat.payment.unwrap().refunded_amount.unwrap().amount_minor, 1000);
    assert_eq!(count(&h.gateway.refunds), 1);

    // Above what remains refundable.
    let err = h.refund(&p.id, Some(3201), "r-2", &admin).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("3200"), "{}", err.message());
    // Another currency.
    let err = h
        .client()
        .refund_payment(with_token(
            pb::RefundPaymentRequest {
                payment_id: p.id.clone(),
                amount: Some(ordermesh_proto::common::Money {
                    amount_minor: 10,
                    currency_code: "USD".into(),
                }),
                reason: "x".into(),
                idempotency_key: "r-usd".into(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["amount.currency_code"]);

    // The rest (no amount), by customer service.
    let cs = h.auth.employee("cs-1", &[Role::CustomerService]);
    let full = h.refund(&p.id, None, "r-3", &cs).await.unwrap();
    let payment = full.payment.unwrap();
    assert_eq!(status(&payment), pb::PaymentStatus::Refunded);
    assert_eq!(payment.refunded_amount.unwrap().amount_minor, 4200);
    assert_eq!(full.refund.unwrap().amount.unwrap().amount_minor, 3200);
    assert_eq!(payment.refunds.len(), 2);

    let err = h.refund(&p.id, Some(1), "r-4", &admin).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(count(&h.gateway.refunds), 2);
    assert_eq!(
        h.outbox_types().await,
        ["PaymentCaptured", "PaymentRefunded", "PaymentRefunded"]
    );

    // Concurrent refunds under different keys never exceed what was captured.
    let p = h
        .authorize(charge(Uuid::now_v7(), "tok_approved", "r-race", true), &h.order_svc())
        .await
        .unwrap();
    let keys: Vec<String> = (0..6).map(|i| format!("r-race-{i}")).collect();
    let results = futures::future::join_all(keys.iter().map(|key| h.refund(&p.id, Some(1000), key, &admin))).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 4, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.code() == Code::FailedPrecondition)
    );
    assert_eq!(h.get(&p.id).await.refunded_amount.unwrap().amount_minor, 4000);

    // Refunding an authorised, uncaptured payment is a state error.
    let held = h
        .authorize(charge(Uuid::now_v7(), "tok_approved", "r-held", false), &h.order_svc())
        .await
        .unwrap();
    let err = h.refund(&held.id, None, "r-5", &admin).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn void_releases_an_authorisation() {
    let h = Harness::start().await;
    let token = h.order_svc();
    let held = h
        .authorize(charge(Uuid::now_v7(), "tok_approved", "v-auth", false), &token)
        .await
        .unwrap();
    let void = |key: &str| {
        let req = pb::VoidPaymentRequest {
            payment_id: held.id.clone(),
            reason: "stock rejected".into(),
            idempotency_key: key.into(),
        };
        let mut client = h.client();
        let token = token.clone();
        async move { client.void_payment(with_token(req, &token)).await }
    };
    let voided = void("v-1").await.unwrap().into_inner().payment.unwrap();
    assert_eq!(status(&voided), pb::PaymentStatus::Voided);
    let again = void("v-1").await.unwrap().into_inner().payment.unwrap();
    assert_eq!(again, voided);
    // Voiding a VOIDED payment (another key) returns it unchanged; capturing it is refused.
    assert_eq!(void("v-2").await.unwrap().into_inner().payment.unwrap(), voided);
    assert_eq!(count(&h.gateway.voids), 1);
    let err = h
        .client()
        .capture_payment(with_token(
            pb::CapturePaymentRequest {
                payment_id: held.id.clone(),
                amount: None,
                idempotency_key: "v-capture".into(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(h.outbox_types().await, ["PaymentAuthorized", "PaymentVoided"]);
}

#[tokio::test]
async fn authentication_and_roles() {
    let h = Harness::start().await;
    let req = charge(Uuid::now_v7(), "tok_approved", "a-1", true);
    let err = h.client().authorize_payment(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = h
        .client()
        .get_payment(pb::GetPaymentRequest {
            payment_id: Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // Clients: PERMISSION_DENIED on writes and reads (the BFF serves their payments).
    let client = h.auth.client("client-1");
    assert_eq!(
        h.authorize(req.clone(), &client).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let err = h
        .client()
        .list_payments(with_token(pb::ListPaymentsRequest::default(), &client))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Employees by role.
    let cs = h.auth.employee("cs-1", &[Role::CustomerService]);
    assert_eq!(
        h.authorize(req.clone(), &cs).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let nobody = h.auth.employee("e-0", &[]);
    let p = h.authorize(req, &h.order_svc()).await.unwrap();
    let get = |token: String| {
        let mut client = h.client();
        let id = p.id.clone();
        async move {
            client
                .get_payment(with_token(pb::GetPaymentRequest { payment_id: id }, &token))
                .await
        }
    };
    assert_eq!(get(nobody.clone()).await.unwrap_err().code(), Code::PermissionDenied);
    assert!(get(cs.clone()).await.is_ok());
    assert!(get(h.auth.employee("om-1", &[Role::OrderManager])).await.is_ok());
    assert_eq!(
        h.refund(&p.id, Some(1), "a-r", &nobody).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        h.refund(&p.id, Some(1), "a-r", &client).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // order-manager may charge (saga repair by hand).
    let om = h.auth.employee("om-1", &[Role::OrderManager]);
    assert!(
        h.authorize(charge(Uuid::now_v7(), "tok_approved", "a-om", false), &om)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn validation_reports_every_field() {
    let h = Harness::start().await;
    let token = h.order_svc();
    let err = h
        .authorize(pb::AuthorizePaymentRequest::default(), &token)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        [
            "order_id",
            "customer_id",
            "amount",
            "payment_method_token",
            "idempotency_key"
        ]
    );
    let err = h
        .authorize(
            pb::AuthorizePaymentRequest {
                order_id: "not-a-uuid".into(),
                customer_id: Uuid::now_v7().to_string(),
                amount: Some(ordermesh_proto::common::Money {
                    amount_minor: 0,
                    currency_code: "eur".into(),
                }),
                payment_method_token: "t".repeat(257),
                idempotency_key: "k".repeat(129),
                capture: true,
            },
            &token,
        )
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        [
            "order_id",
            "amount.currency_code",
            "payment_method_token",
            "idempotency_key"
        ]
    );
    let err = h
        .authorize(
            pb::AuthorizePaymentRequest {
                amount: Some(eur(0)),
                ..charge(Uuid::now_v7(), "tok_approved", "v", true)
            },
            &token,
        )
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["amount.amount_minor"]);

    let err = h
        .client()
        .refund_payment(with_token(
            pb::RefundPaymentRequest {
                payment_id: "x".into(),
                amount: Some(eur(-5)),
                reason: String::new(),
                idempotency_key: String::new(),
            },
            &h.admin(),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["payment_id", "amount.amount_minor", "reason", "idempotency_key"]
    );
    let err = h
        .client()
        .list_payments(with_token(
            pb::ListPaymentsRequest {
                customer_id: "nope".into(),
                status: 99,
                page_size: -1,
                ..Default::default()
            },
            &h.admin(),
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["customer_id", "status"]);
}

#[tokio::test]
async fn unknown_payments_are_not_found() {
    let h = Harness::start().await;
    let id = Uuid::now_v7().to_string();
    let err = h
        .client()
        .get_payment(with_token(pb::GetPaymentRequest { payment_id: id.clone() }, &h.admin()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        h.refund(&id, None, "nf", &h.admin()).await.unwrap_err().code(),
        Code::NotFound
    );
    let err = h
        .client()
        .capture_payment(with_token(
            pb::CapturePaymentRequest {
                payment_id: id,
                amount: None,
                idempotency_key: "nf-c".into(),
            },
            &h.order_svc(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn list_payments_filters_and_pages() {
    let h = Harness::start().await;
    let token = h.order_svc();
    let customer = Uuid::now_v7().to_string();
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut req = charge(Uuid::now_v7(), "tok_approved", &format!("l-{i}"), true);
        req.customer_id = customer.clone();
        ids.push(h.authorize(req, &token).await.unwrap().id);
    }
    h.authorize(charge(Uuid::now_v7(), "tok_declined", "l-other", true), &token)
        .await
        .unwrap();
    ids.reverse();

    let admin = h.admin();
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = h
            .client()
            .list_payments(with_token(
                pb::ListPaymentsRequest {
                    customer_id: customer.clone(),
                    page_size: 2,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.payments.len() <= 2);
        seen.extend(page.payments.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, ids, "newest first, every payment once");

    let declined = h
        .client()
        .list_payments(with_token(
            pb::ListPaymentsRequest {
                status: pb::PaymentStatus::Declined as i32,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(declined.len(), 1);
    assert_eq!(declined[0].decline_reason, "card_declined");

    // A token is bound to its filters.
    let first = h
        .client()
        .list_payments(with_token(
            pb::ListPaymentsRequest {
                customer_id: customer.clone(),
                page_size: 1,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let err = h
        .client()
        .list_payments(with_token(
            pb::ListPaymentsRequest {
                page_size: 1,
                page_token: first.next_page_token,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["page_token"]);
}

// --- The HTTP gateway end to end ---------------------------------------------------------------

/// A provider that performs an operation the first time it sees a key (even when it then
/// answers with an error) and answers 503 to the first `fail` requests.
#[derive(Default)]
struct Provider {
    fail: usize,
    requests: Vec<String>,
    performed: HashMap<String, Value>,
}

type Shared = Arc<Mutex<Provider>>;

async fn provider_charge(State(provider): State<Shared>, headers: HeaderMap, Json(_body): Json<Value>) -> Response {
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let mut p = provider.lock().unwrap();
    p.requests.push(key.clone());
    let n = p.performed.len() + 1;
    let record = p
        .performed
        .entry(key)
        .or_insert_with(|| json!({"id": format!("ch_{n}"), "status": "approved"}))
        .clone();
    if p.fail > 0 {
        p.fail -= 1;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    (StatusCode::OK, Json(record)).into_response()
}

#[tokio::test]
async fn http_gateway_503_twice_then_200_captures_once() {
    let provider: Shared = Arc::new(Mutex::new(Provider {
        fail: 2,
        ..Provider::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/v1/charges", post(provider_charge))
        .with_state(provider.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let http = HttpGateway::new(HttpGatewayConfig {
        base_backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(2),
        ..HttpGatewayConfig::new(url)
    })
    .unwrap();
    let h = Harness::with_gateway(Arc::new(CountingGateway::new(Arc::new(http)))).await;
    let order = Uuid::now_v7();
    let key = format!("order-{order}-charge");
    let payment = h
        .authorize(charge(order, "tok_approved", &key, true), &h.order_svc())
        .await
        .unwrap();
    assert_eq!(status(&payment), pb::PaymentStatus::Captured);
    assert_eq!(payment.gateway_reference, "ch_1");
    {
        let p = provider.lock().unwrap();
        assert_eq!(p.requests, vec![key.clone(); 3], "three attempts, one idempotency key");
        assert_eq!(p.performed.len(), 1, "exactly one capture at the provider");
    }
    assert_eq!(h.outbox_types().await, ["PaymentCaptured"]);
}
