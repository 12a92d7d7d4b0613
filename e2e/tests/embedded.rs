//! The saga on the embedded profile (`ordermesh up`'s default): SQLite files and the in-process
//! bus, with the same service code as on PostgreSQL and NATS.

use std::time::Duration;

use ordermesh_e2e::{CountingGateway, Platform, SETTLED, history};
use ordermesh_platform::testing::with_token;
use ordermesh_proto::order::{CancelOrderRequest, OrderStatus};

const SAGA: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_profile_confirms_rejects_and_refunds() {
    let gateway = CountingGateway::sandbox();
    let p = Platform::start_embedded(gateway.clone()).await.unwrap();
    let product = p.product(1500, 3).await.unwrap();
    let (token, customer) = p.client("embedded-1").await.unwrap();

    let ok = p
        .place(&token, &customer, &[(&product.id, 2)], "tok_approved", "")
        .await
        .unwrap()
        .order
        .unwrap();
    let declined = p
        .place(&token, &customer, &[(&product.id, 1)], "tok_declined", "")
        .await
        .unwrap()
        .order
        .unwrap();
    let too_many = p
        .place(&token, &customer, &[(&product.id, 5)], "tok_approved", "")
        .await
        .unwrap()
        .order
        .unwrap();

    let ok = p.wait_for(&ok.id, &SETTLED, SAGA).await.unwrap();
    assert_eq!(
        history(&ok),
        [OrderStatus::Pending, OrderStatus::Reserved, OrderStatus::Confirmed]
    );
    let declined = p.wait_for(&declined.id, &SETTLED, SAGA).await.unwrap();
    assert_eq!(declined.status, OrderStatus::Rejected as i32);
    assert_eq!(declined.rejection_reason, "card_declined");
    let too_many = p.wait_for(&too_many.id, &SETTLED, SAGA).await.unwrap();
    assert_eq!(history(&too_many), [OrderStatus::Pending, OrderStatus::Rejected]);

    p.orders()
        .cancel_order(with_token(
            CancelOrderRequest {
                order_id: ok.id.clone(),
                reason: String::new(),
            },
            &token,
        ))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + SAGA;
    loop {
        let stock = p.stock(&product.id).await.unwrap();
        let payment = p.payments_of(&ok.id).await.unwrap().remove(0);
        let refunded = payment.refunded_amount.map(|m| m.amount_minor).unwrap_or_default();
        if stock.available == 3 && refunded == 3000 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stock {stock:?}, refunded {refunded}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gateway.distinct_approved_charges(), 1);
}
