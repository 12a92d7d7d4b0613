//! No transaction is held across a network call. On the embedded profile a transaction is the
//! SQLite file's one write lock: a saga step that held it while payment-svc (and its gateway)
//! answered stalled every other writer of order.db — PlaceOrder waited for the lock until the
//! busy timeout and failed. Here the gateway holds every charge until the test lets it go, and
//! orders are placed meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ordermesh_e2e::{Platform, SETTLED};
use ordermesh_proto::order::OrderStatus;
use payment_svc::gateway::{
    ChargeRequest, FollowUpRequest, GatewayError, GatewayOutcome, PaymentGateway, SandboxGateway,
};
use tokio::sync::Semaphore;

const SAGA: Duration = Duration::from_secs(30);

/// The sandbox, with charges held until [`HeldGateway::release`].
struct HeldGateway {
    sandbox: SandboxGateway,
    gate: Semaphore,
    waiting: AtomicUsize,
}

impl HeldGateway {
    fn release(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

#[async_trait::async_trait]
impl PaymentGateway for HeldGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<GatewayOutcome, GatewayError> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.expect("gate open").forget();
        self.sandbox.charge(request).await
    }

    async fn capture(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        self.sandbox.capture(request).await
    }

    async fn void(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        self.sandbox.void(request).await
    }

    async fn refund(&self, request: &FollowUpRequest) -> Result<GatewayOutcome, GatewayError> {
        self.sandbox.refund(request).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_placed_while_a_charge_waits_for_the_gateway() {
    let gateway = Arc::new(HeldGateway {
        sandbox: SandboxGateway::new(),
        gate: Semaphore::new(0),
        waiting: AtomicUsize::new(0),
    });
    let p = Platform::start_embedded(gateway.clone()).await.unwrap();
    let product = p.product(1000, 50).await.unwrap();
    let (token, customer) = p.client("held-1").await.unwrap();

    let first = p
        .place(&token, &customer, &[(&product.id, 1)], "tok_approved", "")
        .await
        .unwrap()
        .order
        .unwrap();
    // The saga reaches the charge, which the gateway now holds.
    let deadline = tokio::time::Instant::now() + SAGA;
    while gateway.waiting.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the charge never reached the gateway"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // order.db must take new orders meanwhile (a held lock made these wait for the busy
    // timeout and fail with UNAVAILABLE).
    let mut placed = Vec::new();
    for _ in 0..3 {
        let order = p
            .place(&token, &customer, &[(&product.id, 1)], "tok_approved", "")
            .await
            .expect("placed while a charge is pending")
            .order
            .unwrap();
        placed.push(order.id);
    }
    assert_eq!(
        p.order(&first.id).await.unwrap().status,
        OrderStatus::Reserved as i32,
        "the first order still waits for its charge"
    );

    gateway.release();
    for id in std::iter::once(&first.id).chain(&placed) {
        let order = p.wait_for(id, &SETTLED, SAGA).await.unwrap();
        assert_eq!(order.status, OrderStatus::Confirmed as i32);
    }
}
