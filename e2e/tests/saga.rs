//! The order saga end to end (issue 5): product-, customer-, order- and payment-svc in this
//! process on port 0, PostgreSQL, NATS JetStream.

use std::sync::Arc;
use std::time::Duration;

use ordermesh_e2e::{CountingGateway, FakeProvider, Platform, SETTLED, history};
use ordermesh_platform::auth::Role;
use ordermesh_platform::client::{BreakerConfig, BreakerState};
use ordermesh_platform::testing::with_token;
use ordermesh_proto::order::{CancelOrderRequest, OrderStatus, UpdateOrderStatusRequest};
use ordermesh_proto::payment::PaymentStatus;
use payment_svc::gateway::{HttpGateway, HttpGatewayConfig};

const SAGA: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_confirms_with_history_pending_reserved_confirmed() {
    let gateway = CountingGateway::sandbox();
    let p = Platform::start(gateway.clone()).await.unwrap();
    let product = p.product(1999, 10).await.unwrap();
    let (token, customer) = p.client("alice").await.unwrap();

    let placed = p
        .place(&token, &customer, &[(&product.id, 2)], "tok_approved", "")
        .await
        .unwrap();
    let order = placed.order.unwrap();
    assert_eq!(order.status, OrderStatus::Pending as i32, "PlaceOrder returns at once");
    assert!(!placed.correlation_id.is_empty());
    assert_eq!(order.total.as_ref().unwrap().amount_minor, 3998);

    let done = p.wait_for(&order.id, &SETTLED, SAGA).await.unwrap();
    assert_eq!(done.status, OrderStatus::Confirmed as i32, "{done:?}");
    assert_eq!(
        history(&done),
        [OrderStatus::Pending, OrderStatus::Reserved, OrderStatus::Confirmed]
    );
    let payments = p.payments_of(&order.id).await.unwrap();
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, PaymentStatus::Captured as i32);
    assert_eq!(done.payment_id, payments[0].id);
    let stock = p.stock(&product.id).await.unwrap();
    assert_eq!((stock.on_hand, stock.reserved, stock.available), (10, 2, 8));
    assert_eq!(gateway.distinct_approved_charges(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_enough_stock_rejects_with_reason_and_charges_nothing() {
    let gateway = CountingGateway::sandbox();
    let p = Platform::start(gateway.clone()).await.unwrap();
    let product = p.product(500, 1).await.unwrap();
    let (token, customer) = p.client("bob").await.unwrap();
    let order = p
        .place(&token, &customer, &[(&product.id, 3)], "tok_approved", "")
        .await
        .unwrap()
        .order
        .unwrap();

    let done = p.wait_for(&order.id, &SETTLED, SAGA).await.unwrap();
    assert_eq!(done.status, OrderStatus::Rejected as i32);
    assert!(!done.rejection_reason.is_empty(), "the reason is given");
    assert_eq!(history(&done), [OrderStatus::Pending, OrderStatus::Rejected]);
    assert!(p.payments_of(&order.id).await.unwrap().is_empty(), "no payment");
    assert_eq!(gateway.charge_calls(), 0);
    assert_eq!(p.stock(&product.id).await.unwrap().available, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_payment_rejects_and_restores_stock() {
    let gateway = CountingGateway::sandbox();
    let p = Platform::start(gateway.clone()).await.unwrap();
    let product = p.product(500, 5).await.unwrap();
    let (token, customer) = p.client("carol").await.unwrap();
    let order = p
        .place(&token, &customer, &[(&product.id, 2)], "tok_insufficient_funds", "")
        .await
        .unwrap()
        .order
        .unwrap();

    let done = p.wait_for(&order.id, &SETTLED, SAGA).await.unwrap();
    assert_eq!(done.status, OrderStatus::Rejected as i32);
    assert_eq!(done.rejection_reason, "insufficient_funds");
    assert_eq!(
        history(&done),
        [OrderStatus::Pending, OrderStatus::Reserved, OrderStatus::Rejected]
    );
    // The release is asynchronous (product-svc consumes OrderRejected).
    let deadline = tokio::time::Instant::now() + SAGA;
    while p.stock(&product.id).await.unwrap().available != 5 {
        assert!(tokio::time::Instant::now() < deadline, "stock not restored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gateway.distinct_approved_charges(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_confirmed_order_refunds_and_restores_stock_a_shipped_one_cannot_be_cancelled() {
    let gateway = CountingGateway::sandbox();
    let p = Platform::start(gateway.clone()).await.unwrap();
    let product = p.product(1000, 4).await.unwrap();
    let (token, customer) = p.client("dave").await.unwrap();

    let first = p
        .place(&token, &customer, &[(&product.id, 1)], "tok_approved", "")
        .await
        .unwrap()
        .order
        .unwrap();
    p.wait_for(&first.id, &[OrderStatus::Confirmed], SAGA).await.unwrap();
    let cancelled = p
        .orders()
        .cancel_order(with_token(
            CancelOrderRequest {
                order_id: first.id.clone(),
                reason: "changed my mind".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled as i32);
    let deadline = tokio::time::Instant::now() + SAGA;
    loop {
        let payment = p.payments_of(&first.id).await.unwrap().remove(0);
        let stock = p.stock(&product.id).await.unwrap();
        let refunded = payment.refunded_amount.map(|m| m.amount_minor).unwrap_or_default();
        if refunded == 1000 && stock.available == 4 {
            assert_eq!(payment.status, PaymentStatus::Refunded as i32);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refund {refunded}, stock {stock:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let second = p
        .place(&token, &customer, &[(&product.id, 1)], "tok_approved", "")
        .await
        .unwrap()
        .order
        .unwrap();
    p.wait_for(&second.id, &[OrderStatus::Confirmed], SAGA).await.unwrap();
    let manager = p.auth.employee("mgr-1", &[Role::OrderManager]);
    p.orders()
        .update_order_status(with_token(
            UpdateOrderStatusRequest {
                order_id: second.id.clone(),
                status: OrderStatus::Shipped as i32,
                carrier: "DHL".into(),
                tracking_number: "JJD000390007".into(),
                note: String::new(),
            },
            &manager,
        ))
        .await
        .unwrap();
    let error = p
        .orders()
        .cancel_order(with_token(
            CancelOrderRequest {
                order_id: second.id.clone(),
                reason: String::new(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition, "{error:?}");
    assert_eq!(p.order(&second.id).await.unwrap().status, OrderStatus::Shipped as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_twice_gives_one_order_and_one_charge() {
    let gateway = CountingGateway::sandbox();
    let p = Platform::start(gateway.clone()).await.unwrap();
    let product = p.product(700, 10).await.unwrap();
    let (token, customer) = p.client("erin").await.unwrap();
    let lines = [(product.id.as_str(), 1)];
    let (a, b) = tokio::join!(
        p.place(&token, &customer, &lines, "tok_approved", "checkout-42"),
        p.place(&token, &customer, &lines, "tok_approved", "checkout-42"),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.order.as_ref().unwrap().id, b.order.as_ref().unwrap().id);
    assert!(a.idempotent_replay || b.idempotent_replay);
    let again = p
        .place(&token, &customer, &[(&product.id, 1)], "tok_approved", "checkout-42")
        .await
        .unwrap();
    assert!(again.idempotent_replay);
    let id = again.order.unwrap().id;
    p.wait_for(&id, &[OrderStatus::Confirmed], SAGA).await.unwrap();
    assert_eq!(p.payments_of(&id).await.unwrap().len(), 1);
    assert_eq!(gateway.distinct_approved_charges(), 1);
    assert_eq!(p.stock(&product.id).await.unwrap().reserved, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_orders_for_fifty_units_confirm_exactly_fifty() {
    let gateway = CountingGateway::sandbox();
    let p = Platform::start(gateway.clone()).await.unwrap();
    let product = p.product(100, 50).await.unwrap();
    let (token, customer) = p.client("frank").await.unwrap();

    let lines = [(product.id.as_str(), 1)];
    let placed =
        futures::future::join_all((0..200).map(|_| p.place(&token, &customer, &lines, "tok_approved", ""))).await;
    let ids: Vec<String> = placed.into_iter().map(|r| r.unwrap().order.unwrap().id).collect();
    let mut confirmed = 0;
    let mut rejected = 0;
    for id in &ids {
        let order = p.wait_for(id, &SETTLED, Duration::from_secs(120)).await.unwrap();
        if order.status == OrderStatus::Confirmed as i32 {
            confirmed += 1;
        } else {
            rejected += 1;
        }
        let stock = p.stock(&product.id).await.unwrap();
        assert!(stock.available >= 0 && stock.reserved <= stock.on_hand, "{stock:?}");
    }
    assert_eq!((confirmed, rejected), (50, 150));
    let stock = p.stock(&product.id).await.unwrap();
    assert_eq!((stock.available, stock.reserved), (0, 50));
    assert_eq!(gateway.distinct_approved_charges(), 50);
    assert_eq!(gateway.approved_charge_answers(), 50, "no charge was asked for twice");
}

fn http_gateway(url: String, breaker: BreakerConfig) -> Arc<HttpGateway> {
    Arc::new(
        HttpGateway::new(HttpGatewayConfig {
            max_attempts: 3,
            base_backoff: Duration::from_millis(10),
            timeout: Duration::from_secs(2),
            breaker,
            ..HttpGatewayConfig::new(url)
        })
        .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_gateway_answering_503_twice_then_200_captures_once() {
    let provider = FakeProvider::serve(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        vec![503, 503],
    )
    .await;
    let gateway = http_gateway(provider.url(), BreakerConfig::default());
    let p = Platform::start(gateway).await.unwrap();
    let product = p.product(4200, 3).await.unwrap();
    let (token, customer) = p.client("gina").await.unwrap();
    let order = p
        .place(&token, &customer, &[(&product.id, 1)], "tok_approved", "")
        .await
        .unwrap()
        .order
        .unwrap();
    let done = p.wait_for(&order.id, &SETTLED, SAGA).await.unwrap();
    assert_eq!(done.status, OrderStatus::Confirmed as i32);
    assert_eq!(provider.charges(), 1, "exactly one capture at the gateway");
    assert_eq!(provider.requests(), 3, "two 503s, then the answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_gateway_down_the_breaker_opens_and_orders_wait_then_complete() {
    let reserved = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let gateway = http_gateway(
        format!("http://{addr}"),
        BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_millis(500),
        },
    );
    let p = Platform::start(gateway.clone()).await.unwrap();
    let product = p.product(900, 10).await.unwrap();
    let (token, customer) = p.client("hank").await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            p.place(&token, &customer, &[(&product.id, 1)], "tok_approved", "")
                .await
                .unwrap()
                .order
                .unwrap()
                .id,
        );
    }
    // The orders are reserved and wait for their payment while the breaker is open.
    for id in &ids {
        p.wait_for(id, &[OrderStatus::Reserved], SAGA).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + SAGA;
    while gateway.breaker().opened_count() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "breaker never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(gateway.breaker().state(), BreakerState::Closed);
    for id in &ids {
        assert_eq!(
            p.order(id).await.unwrap().status,
            OrderStatus::Reserved as i32,
            "still waiting"
        );
    }

    let provider = FakeProvider::serve(tokio::net::TcpListener::bind(addr).await.unwrap(), vec![]).await;
    for id in &ids {
        let done = p.wait_for(id, &SETTLED, Duration::from_secs(60)).await.unwrap();
        assert_eq!(done.status, OrderStatus::Confirmed as i32);
    }
    assert_eq!(provider.charges(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_service_stopped_mid_saga_and_restarted_completes_orders_without_double_charges() {
    let gateway = CountingGateway::sandbox();
    let mut p = Platform::start(gateway.clone()).await.unwrap();
    let product = p.product(300, 20).await.unwrap();
    let (token, customer) = p.client("ivy").await.unwrap();

    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            p.place(&token, &customer, &[(&product.id, 1)], "tok_approved", "")
                .await
                .unwrap()
                .order
                .unwrap()
                .id,
        );
    }
    p.stop("payment").await.unwrap();
    for _ in 0..5 {
        ids.push(
            p.place(&token, &customer, &[(&product.id, 1)], "tok_approved", "")
                .await
                .unwrap()
                .order
                .unwrap()
                .id,
        );
    }
    for id in &ids[3..] {
        p.wait_for(id, &[OrderStatus::Reserved, OrderStatus::Confirmed], SAGA)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.restart("payment").await.unwrap();
    for id in &ids {
        let done = p.wait_for(id, &SETTLED, Duration::from_secs(60)).await.unwrap();
        assert_eq!(done.status, OrderStatus::Confirmed as i32);
        assert_eq!(p.payments_of(id).await.unwrap().len(), 1);
    }
    assert_eq!(gateway.distinct_approved_charges(), 8);
    assert_eq!(gateway.approved_charge_answers(), 8, "nobody was charged twice");
}
