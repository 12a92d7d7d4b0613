//! Live notifications of a real order (issue 7) over gRPC `Subscribe`: the client's stream
//! receives its order's status events through CONFIRMED, in order; an order-manager's stream
//! receives the new-order notification; a resubscribe with the last id gets only what was missed.

use std::time::Duration;

use futures::StreamExt;
use ordermesh_e2e::{CountingGateway, Platform};
use ordermesh_platform::auth::Role;
use ordermesh_platform::testing::with_token;
use ordermesh_proto::notification::{Notification, SubscribeRequest, subscribe_response};
use ordermesh_proto::order::OrderStatus;

async fn next_notification(
    stream: &mut tonic::Streaming<ordermesh_proto::notification::SubscribeResponse>,
) -> Notification {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("a notification within 30 s")
            .expect("stream open")
            .expect("no error");
        if let Some(subscribe_response::Event::Notification(n)) = item.event {
            return n;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_status_notifications_stream_live_in_order_and_resume_after_the_last_id() {
    let p = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let product = p.product(1200, 5).await.unwrap();
    let (token, customer) = p.client("listener").await.unwrap();
    let manager = p.auth.employee("mgr-live", &[Role::OrderManager]);

    let mut client_stream = p
        .notifications()
        .subscribe(with_token(SubscribeRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    let mut manager_stream = p
        .notifications()
        .subscribe(with_token(SubscribeRequest::default(), &manager))
        .await
        .unwrap()
        .into_inner();

    let order = p
        .place(&token, &customer, &[(&product.id, 1)], "tok_approved", "")
        .await
        .unwrap()
        .order
        .unwrap();
    p.wait_for(&order.id, &[OrderStatus::Confirmed], Duration::from_secs(30))
        .await
        .unwrap();

    // The client's notifications about this order, up to CONFIRMED, in order.
    let mut statuses = Vec::new();
    let mut seen = Vec::new();
    while !statuses.iter().any(|s: &String| s == "CONFIRMED") {
        let n = next_notification(&mut client_stream).await;
        assert_eq!(n.data.get("order_id"), Some(&order.id), "{n:?}");
        seen.push(n.id.parse::<i64>().unwrap());
        if let Some(status) = n.data.get("status") {
            statuses.push(status.clone());
        }
    }
    let reserved = statuses
        .iter()
        .position(|s| s == "RESERVED")
        .expect("RESERVED notified");
    let confirmed = statuses.iter().position(|s| s == "CONFIRMED").unwrap();
    assert!(reserved < confirmed, "{statuses:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "ids increase: {seen:?}");

    // The order-manager group hears about the new order.
    let n = next_notification(&mut manager_stream).await;
    assert_eq!(n.data.get("order_id"), Some(&order.id));

    // Reconnect after the first one seen: exactly the missed ones, none twice.
    drop(client_stream);
    let mut resumed = p
        .notifications()
        .subscribe(with_token(
            SubscribeRequest {
                after_id: seen[0].to_string(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    for expected in &seen[1..] {
        let n = next_notification(&mut resumed).await;
        assert_eq!(n.id.parse::<i64>().unwrap(), *expected);
    }
}
