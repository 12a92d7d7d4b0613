//! The consumer of `order-events`: a paid order's cancellation refunds its payment once, however
//! often the event is delivered. Events are published on real NATS JetStream as order-svc's
//! relay would publish them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{CountingGateway, Harness, charge, status};
use ordermesh_platform::events::{EventBus, OutgoingEvent};
use ordermesh_proto::common::{Actor, ActorKind};
use ordermesh_proto::events as ev;
use ordermesh_proto::order::OrderStatus;
use ordermesh_proto::payment as pb;
use uuid::Uuid;

fn cancelled(order_id: Uuid, payment_id: &str, was_paid: bool) -> OutgoingEvent {
    let message = ev::OrderCancelled {
        order_id: order_id.to_string(),
        customer_id: Uuid::now_v7().to_string(),
        reason: "customer changed their mind".into(),
        was_paid,
        payment_id: payment_id.into(),
        previous_status: OrderStatus::Confirmed as i32,
        actor: Some(Actor {
            kind: ActorKind::Employee as i32,
            id: "cs-7".into(),
            roles: vec!["customer-service".into()],
        }),
        occur_time: None,
    };
    OutgoingEvent::new(
        "order-svc",
        "order-events",
        "OrderCancelled",
        &order_id.to_string(),
        "corr-cancel",
        &message,
    )
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn order_cancelled_refunds_a_paid_order_once() {
    let h = Harness::start().await;
    let order = Uuid::now_v7();
    let paid = h
        .authorize(
            charge(order, "tok_approved", &format!("order-{order}-charge"), true),
            &h.order_svc(),
        )
        .await
        .unwrap();
    assert_eq!(status(&paid), pb::PaymentStatus::Captured);

    let event = cancelled(order, &paid.id, true);
    h.bus.publish(&event).await.unwrap();
    // The same event delivered again (another broker message id), and a second cancellation
    // event of the same order (another event id): neither refunds again.
    h.bus.publish_duplicate(&event).await.unwrap();
    h.bus.publish(&cancelled(order, "", true)).await.unwrap();
    // Ignored: an unpaid cancellation and another event type.
    let unpaid_order = Uuid::now_v7();
    h.bus.publish(&cancelled(unpaid_order, "", false)).await.unwrap();
    let shipped = ev::OrderShipped {
        order_id: order.to_string(),
        ..Default::default()
    };
    h.bus
        .publish(&OutgoingEvent::new(
            "order-svc",
            "order-events",
            "OrderShipped",
            &order.to_string(),
            "c",
            &shipped,
        ))
        .await
        .unwrap();

    wait_for("every event acknowledged", async || h.order_events_settled().await).await;
    // Only the refund wrote: the repeats and the events payment-svc ignores leave no row.
    assert_eq!(h.processed_order_events().await, 1);

    let payment = h.get(&paid.id).await;
    assert_eq!(status(&payment), pb::PaymentStatus::Refunded);
    assert_eq!(payment.refunded_amount.unwrap().amount_minor, 4200);
    assert_eq!(payment.refunds.len(), 1, "refund recorded once");
    let refund = &payment.refunds[0];
    assert_eq!(refund.requested_by.as_ref().unwrap().id, "cs-7");
    assert!(refund.reason.starts_with("order cancelled"), "{}", refund.reason);
    assert_eq!(
        CountingGateway::count(&h.gateway.refunds),
        1,
        "one refund at the gateway"
    );
    let outbox = h.outbox().await;
    assert_eq!(
        outbox,
        [
            ("ordermesh.events.v1.PaymentCaptured".to_owned(), outbox[0].1.clone()),
            (
                "ordermesh.events.v1.PaymentRefunded".to_owned(),
                "corr-cancel".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn a_gateway_outage_during_the_refund_is_retried() {
    let gateway = Arc::new(CountingGateway::sandbox());
    gateway.fail_refunds.store(1, std::sync::atomic::Ordering::SeqCst);
    let h = Harness::with_gateway(gateway).await;
    let order = Uuid::now_v7();
    let paid = h
        .authorize(
            charge(order, "tok_approved", &format!("order-{order}-charge"), true),
            &h.order_svc(),
        )
        .await
        .unwrap();
    h.bus.publish(&cancelled(order, &paid.id, true)).await.unwrap();
    wait_for("the refund", async || {
        status(&h.get(&paid.id).await) == pb::PaymentStatus::Refunded
    })
    .await;
    let payment = h.get(&paid.id).await;
    assert_eq!(payment.refunds.len(), 1);
    assert_eq!(
        payment.refunds[0].status,
        pb::RefundStatus::Succeeded as i32,
        "the failed attempt left no trace"
    );
    assert_eq!(CountingGateway::count(&h.gateway.refunds), 1);
    assert_eq!(h.processed_order_events().await, 1);
}

/// The embedded profile: SQLite and the in-process bus, the same code end to end.
#[tokio::test]
async fn embedded_profile_charges_refunds_and_consumes() {
    use ordermesh_platform::events::MemoryBus;
    use ordermesh_platform::testing::{self, RunningService, TestAuth, TestDatabase, with_token};
    use ordermesh_proto::payment::payment_service_client::PaymentServiceClient;

    let db = TestDatabase::sqlite().unwrap();
    let auth = TestAuth::start().await.unwrap();
    let mut config = testing::service_config(payment_svc::SERVICE, db.url(), auth.auth_config()).unwrap();
    let bus = Arc::new(MemoryBus::new());
    config.bus = Some(bus.clone());
    let gateway = Arc::new(CountingGateway::sandbox());
    let service_gateway: Arc<dyn payment_svc::gateway::PaymentGateway> = gateway.clone();
    let service = RunningService::start(config, move |c, l, s| {
        payment_svc::run_with_gateway(c, l, s, service_gateway)
    })
    .await
    .unwrap();
    let mut client = PaymentServiceClient::new(service.channel());
    let token = auth.service("order-svc");

    let order = Uuid::now_v7();
    let request = charge(order, "tok_approved", &format!("order-{order}-charge"), true);
    let paid = client
        .authorize_payment(with_token(request.clone(), &token))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(status(&paid), pb::PaymentStatus::Captured);
    let again = client
        .authorize_payment(with_token(request, &token))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(again.id, paid.id);
    assert_eq!(CountingGateway::count(&gateway.charges), 1);

    let partial = client
        .refund_payment(with_token(
            pb::RefundPaymentRequest {
                payment_id: paid.id.clone(),
                amount: Some(common::eur(200)),
                reason: "goodwill".into(),
                idempotency_key: "goodwill-1".into(),
            },
            &auth.employee("admin-1", &[ordermesh_platform::auth::Role::Admin]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status(partial.payment.as_ref().unwrap()),
        pb::PaymentStatus::PartiallyRefunded
    );

    let event = cancelled(order, &paid.id, true);
    bus.publish(&event).await.unwrap();
    bus.publish(&cancelled(order, "", true)).await.unwrap();
    let get = |id: String| {
        let mut client = client.clone();
        let token = token.clone();
        async move {
            client
                .get_payment(with_token(pb::GetPaymentRequest { payment_id: id }, &token))
                .await
                .unwrap()
                .into_inner()
                .payment
                .unwrap()
        }
    };
    wait_for("the refund", async || {
        status(&get(paid.id.clone()).await) == pb::PaymentStatus::Refunded
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let payment = get(paid.id.clone()).await;
    assert_eq!(
        payment.refunds.len(),
        2,
        "the goodwill refund and one cancellation refund"
    );
    assert_eq!(payment.refunds[1].amount.as_ref().unwrap().amount_minor, 4000);
    assert_eq!(CountingGateway::count(&gateway.refunds), 2);
}
