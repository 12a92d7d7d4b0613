//! The audit trail of a real order (issue 7): every service's events land in audit-svc's hash
//! chain under the order's one correlation id.

use std::time::Duration;

use ordermesh_e2e::{CountingGateway, Platform};
use ordermesh_platform::testing::with_token;
use ordermesh_proto::audit::{QueryAuditLogsRequest, VerifyChainRequest};
use ordermesh_proto::order::OrderStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_whole_trail_is_audited_under_one_correlation_id() {
    let p = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let product = p.product(2500, 5).await.unwrap();
    let (token, customer) = p.client("audited").await.unwrap();
    let placed = p
        .place(&token, &customer, &[(&product.id, 1)], "tok_approved", "")
        .await
        .unwrap();
    let order = placed.order.unwrap();
    p.wait_for(&order.id, &[OrderStatus::Confirmed], Duration::from_secs(30))
        .await
        .unwrap();

    let wanted = ["order.placed", "stock.reserved", "payment.captured", "order.confirmed"];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let actions = loop {
        let request = QueryAuditLogsRequest {
            correlation_id: placed.correlation_id.clone(),
            ..Default::default()
        };
        let entries = p
            .audit()
            .query_audit_logs(with_token(request, &p.admin))
            .await
            .unwrap()
            .into_inner()
            .entries;
        let actions: Vec<String> = entries.iter().rev().map(|e| e.action.clone()).collect();
        if wanted.iter().all(|w| actions.iter().any(|a| a == w)) {
            assert!(entries.iter().all(|e| e.correlation_id == placed.correlation_id));
            break actions;
        }
        assert!(tokio::time::Instant::now() < deadline, "trail so far: {actions:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Oldest first: placed before reserved before paid before confirmed.
    let position = |a: &str| actions.iter().position(|x| x == a).unwrap();
    assert!(position("order.placed") < position("stock.reserved"), "{actions:?}");
    assert!(position("stock.reserved") < position("payment.captured"), "{actions:?}");
    assert!(
        position("payment.captured") < position("order.confirmed"),
        "{actions:?}"
    );

    let verified = p
        .audit()
        .verify_chain(with_token(VerifyChainRequest::default(), &p.admin))
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{verified:?}");
}
