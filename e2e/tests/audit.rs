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

/// customer-svc publishes through its outbox (issue 15): a profile's creation, a change and a
/// consent reach the audit log as facts about the customer, never with the data itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customers_profile_changes_and_consents_are_audited_without_their_data() {
    use ordermesh_proto::customer::{Customer, RecordConsentRequest, UpdateCustomerRequest};
    let p = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let (token, customer) = p.client("profile-owner").await.unwrap();
    p.customers()
        .update_customer(with_token(
            UpdateCustomerRequest {
                customer: Some(Customer {
                    id: customer.clone(),
                    display_name: "Renamed Person".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap();
    p.customers()
        .record_consent(with_token(
            RecordConsentRequest {
                customer_id: customer.clone(),
                purpose: "marketing_email".into(),
                granted: true,
                policy_version: "2026-01".into(),
                source: "web".into(),
            },
            &token,
        ))
        .await
        .unwrap();

    let wanted = ["customer.created", "customer.updated", "consent.recorded"];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let entries = loop {
        let request = QueryAuditLogsRequest {
            page_size: 200,
            ..Default::default()
        };
        let entries: Vec<_> = p
            .audit()
            .query_audit_logs(with_token(request, &p.admin))
            .await
            .unwrap()
            .into_inner()
            .entries
            .into_iter()
            .filter(|e| e.data_subject_id == customer)
            .collect();
        if wanted.iter().all(|w| entries.iter().any(|e| e.action == *w)) {
            break entries;
        }
        let actions: Vec<_> = entries.iter().map(|e| e.action.clone()).collect();
        assert!(tokio::time::Instant::now() < deadline, "trail so far: {actions:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let updated = entries.iter().find(|e| e.action == "customer.updated").unwrap();
    let details = format!("{:?}", updated.details);
    assert!(details.contains("display_name"), "{details}");
    let everything = format!("{entries:?}");
    for personal in ["Renamed Person", "profile-owner@example.test", "Test Client"] {
        assert!(
            !everything.contains(personal),
            "the audit log holds {personal:?}: {everything}"
        );
    }
}
