//! The declared call graph against the calls the code really makes: a client portal's and an
//! employee portal's day through both BFFs and the saga behind them, recorded on every client
//! channel. A call the graph does not declare fails (here and when any end-to-end platform is
//! dropped); the calls each surface is known to make must have been seen, so the recorder is
//! proven to record.

mod bff_common;

use std::time::Duration;

use bff::Surface;
use bff_common::{Api, address, order_body};
use ordermesh_e2e::{CountingGateway, Platform, assert_calls_declared};
use ordermesh_platform::auth::Role;
use ordermesh_platform::mesh::Workload;
use ordermesh_platform::mesh::observe::observed;
use ordermesh_proto::order::OrderStatus;
use serde_json::json;

fn seen(caller: Workload, callee: Workload, path: &str) -> bool {
    observed()
        .iter()
        .any(|o| o.caller == caller && o.callee == callee && o.path == path)
}

#[tokio::test]
async fn the_calls_made_through_both_portals_are_the_declared_ones() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let external = Api::new(&platform.start_bff(Surface::External).await.unwrap());
    let internal = Api::new(&platform.start_bff(Surface::Internal).await.unwrap());
    let product = platform.product(1500, 10).await.unwrap();
    let dora = platform.auth.client("dora");
    let admin = platform.auth.employee("admin-9", &[Role::Admin]);

    // The client portal: profile, catalogue, an order through the saga, notifications.
    external
        .post(
            "/api/v1/customers/me",
            &dora,
            &json!({"displayName": "Dora", "email": "dora@example.test", "addresses": [address()]}),
        )
        .await
        .assert_status(201);
    external.get("/api/v1/products", &dora).await.assert_status(200);
    external
        .get(&format!("/api/v1/products/{}", product.id), &dora)
        .await
        .assert_status(200);
    let placed = external
        .post("/api/v1/orders", &dora, &order_body(&product.id, 1, "tok_approved"))
        .await;
    placed.assert_status(202);
    let order_id = placed.body["id"].as_str().unwrap().to_owned();
    platform
        .wait_for(&order_id, &[OrderStatus::Confirmed], Duration::from_secs(30))
        .await
        .unwrap();
    external
        .get(&format!("/api/v1/orders/{order_id}"), &dora)
        .await
        .assert_status(200);
    external.get("/api/v1/notifications", &dora).await.assert_status(200);
    external.get("/readyz", &dora).await.assert_status(200);

    // The employee portal: the customer list and a read of the customer (audited), the order
    // moved on, and a refund.
    let customers = internal.get("/api/v1/customers", &admin).await;
    customers.assert_status(200);
    let customer_id = customers.body["items"][0]["id"].as_str().unwrap().to_owned();
    internal
        .get(&format!("/api/v1/customers/{customer_id}"), &admin)
        .await
        .assert_status(200);
    internal.get("/api/v1/audit/logs", &admin).await.assert_status(200);

    use Workload::*;
    for (caller, callee, path) in [
        (
            BffExternal,
            Customer,
            "/ordermesh.customer.v1.CustomerService/CreateCustomer",
        ),
        (BffExternal, Order, "/ordermesh.order.v1.OrderService/PlaceOrder"),
        (BffExternal, Product, "/ordermesh.product.v1.ProductService/GetProduct"),
        (BffExternal, Payment, "/grpc.health.v1.Health/Check"),
        (Order, Product, "/ordermesh.product.v1.ProductService/BatchGetProducts"),
        (Order, Payment, "/ordermesh.payment.v1.PaymentService/AuthorizePayment"),
        (
            BffInternal,
            Customer,
            "/ordermesh.customer.v1.CustomerService/ListCustomers",
        ),
        (BffInternal, Audit, "/ordermesh.audit.v1.AuditService/RecordAuditEvent"),
        (BffInternal, Audit, "/ordermesh.audit.v1.AuditService/QueryAuditLogs"),
    ] {
        assert!(
            seen(caller, callee, path),
            "{caller} → {callee} {path} was not recorded"
        );
    }
    assert_calls_declared();
}
