//! Every BFF route against the real services (PostgreSQL, NATS, the order saga) behind it.

mod bff_common;

use std::time::Duration;

use bff::Surface;
use bff_common::{Api, address, order_body};
use ordermesh_e2e::{CountingGateway, Platform};
use ordermesh_platform::auth::Role;
use ordermesh_proto::order::OrderStatus;
use reqwest::Method;
use serde_json::json;

const SAGA: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_first_sign_in_has_no_profile_until_it_creates_one() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let api = Api::new(&platform.start_bff(Surface::Both).await.unwrap());
    let carol = platform.auth.client("carol");

    api.get("/api/v1/customers/me", &carol)
        .await
        .assert_problem(404, Some("customer-profile-missing"));
    // Routes that need the customer say the same.
    api.get("/api/v1/orders", &carol)
        .await
        .assert_problem(404, Some("customer-profile-missing"));

    let created = api
        .post(
            "/api/v1/customers/me",
            &carol,
            &json!({"displayName": "Carol", "email": "carol@example.test", "addresses": [address()],
                    "preferences": {"languageCode": "de", "preferredContactChannel": "email"}}),
        )
        .await;
    created.assert_status(201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/customers/{id}").as_str())
    );
    assert_eq!(created.body["status"], "active");
    assert_eq!(created.body["preferences"]["preferredContactChannel"], "email");

    let me = api.get("/api/v1/customers/me", &carol).await;
    me.assert_status(200);
    assert_eq!(me.body["id"], id.as_str());
    assert_eq!(me.body["addresses"][0]["countryCode"], "DE");

    api.post(
        "/api/v1/customers/me",
        &carol,
        &json!({"displayName": "Carol", "email": "carol2@example.test"}),
    )
    .await
    .assert_problem(409, Some("already-exists"));
    // An employee has no own profile.
    api.get("/api/v1/customers/me", &platform.admin)
        .await
        .assert_problem(403, Some("forbidden"));
}

#[tokio::test]
async fn a_client_uses_every_client_route() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let api = Api::new(&platform.start_bff(Surface::External).await.unwrap());
    let product = platform.product(1500, 10).await.unwrap();
    let (alice, customer) = platform.client("alice").await.unwrap();

    // Catalogue.
    let list = api.get("/api/v1/products?pageSize=50", &alice).await;
    list.assert_status(200);
    assert!(
        list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == product.id.as_str())
    );
    let one = api.get(&format!("/api/v1/products/{}", product.id), &alice).await;
    one.assert_status(200);
    assert_eq!(one.body["price"], json!({"amount": 1500, "currency": "EUR"}));
    assert_eq!(one.body["sku"], product.sku.as_str());
    let found = api.get("/api/v1/products/search?q=Espresso", &alice).await;
    found.assert_status(200);
    assert!(
        found.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == product.id.as_str())
    );
    // A text without a word matches nothing; no text at all is refused, as documented.
    let wordless = api.get("/api/v1/products/search?q=%20-%20", &alice).await;
    wordless.assert_status(200);
    assert_eq!(wordless.body["items"], json!([]));
    let empty = api.get("/api/v1/products/search?q=", &alice).await;
    empty.assert_status(400);
    assert_eq!(empty.body["errors"][0]["field"], "q");

    // Profile.
    let me = api.get("/api/v1/customers/me", &alice).await;
    me.assert_status(200);
    assert_eq!(me.body["id"], customer.as_str());
    let by_id = api.get(&format!("/api/v1/customers/{customer}"), &alice).await;
    by_id.assert_status(200);
    let updated = api
        .put(
            &format!("/api/v1/customers/{customer}"),
            &alice,
            &json!({"displayName": "Alice A.", "phone": "+4915112345678"}),
        )
        .await;
    updated.assert_status(200);
    assert_eq!(updated.body["displayName"], "Alice A.");
    assert!(updated.body["version"].as_i64().unwrap() > by_id.body["version"].as_i64().unwrap());
    // An object's place takes an object only (serde would read a struct from an array), and the
    // refused body changes nothing.
    api.put(
        &format!("/api/v1/customers/{customer}"),
        &alice,
        &json!({"displayName": "Mallory", "preferences": []}),
    )
    .await
    .assert_problem(400, Some("invalid-body"));
    let unchanged = api.get(&format!("/api/v1/customers/{customer}"), &alice).await;
    assert_eq!(unchanged.body["displayName"], "Alice A.");
    assert_eq!(unchanged.body["version"], updated.body["version"]);

    // Place an order: 202 + Location + X-Correlation-Id, the saga confirms it.
    let placed = api
        .send(
            Method::POST,
            "/api/v1/orders",
            Some(&alice),
            Some(&order_body(&product.id, 2, "tok_approved")),
            &[("x-correlation-id", "journey-1")],
        )
        .await;
    placed.assert_status(202);
    let order_id = placed.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        placed.header("location"),
        Some(format!("/api/v1/orders/{order_id}").as_str())
    );
    assert_eq!(placed.header("x-correlation-id"), Some("journey-1"));
    assert_eq!(placed.body["status"], "pending");
    assert_eq!(placed.body["total"], json!({"amount": 3000, "currency": "EUR"}));
    assert_eq!(placed.body["customerId"], customer.as_str());
    platform
        .wait_for(&order_id, &[OrderStatus::Confirmed], SAGA)
        .await
        .unwrap();

    let order = api.get(&format!("/api/v1/orders/{order_id}"), &alice).await;
    order.assert_status(200);
    assert_eq!(order.body["status"], "confirmed");
    assert_eq!(order.body["correlationId"], "journey-1");
    assert!(order.body["history"].as_array().unwrap().len() >= 3);
    let orders = api.get("/api/v1/orders?status=confirmed", &alice).await;
    orders.assert_status(200);
    assert_eq!(orders.body["items"][0]["id"], order_id.as_str());
    // A date range: the order is in the hour around now, not in yesterday.
    let hour = |offset: i64| {
        (chrono::Utc::now() + chrono::Duration::minutes(offset)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let around = api
        .get(&format!("/api/v1/orders?from={}&to={}", hour(-30), hour(30)), &alice)
        .await;
    around.assert_status(200);
    assert_eq!(around.body["items"][0]["id"], order_id.as_str());
    let yesterday = api
        .get(
            &format!("/api/v1/orders?from={}&to={}", hour(-1500), hour(-1440)),
            &alice,
        )
        .await;
    assert_eq!(yesterday.body["items"], json!([]), "{yesterday:?}");
    // A range that holds no instant has no orders (the document cannot relate two parameters).
    let inverted = api
        .get(&format!("/api/v1/orders?from={}&to={}", hour(30), hour(-30)), &alice)
        .await;
    inverted.assert_status(200);
    assert_eq!(inverted.body["items"], json!([]), "{inverted:?}");
    api.get("/api/v1/orders?from=yesterday", &alice)
        .await
        .assert_problem(400, None);
    let history = api.get(&format!("/api/v1/customers/{customer}/orders"), &alice).await;
    history.assert_status(200);
    assert_eq!(history.body["items"][0]["id"], order_id.as_str());

    // Payments: the client's own, read by the BFF for it.
    let payments = api.get(&format!("/api/v1/payments?orderId={order_id}"), &alice).await;
    payments.assert_status(200);
    let payment = &payments.body["items"][0];
    assert_eq!(payment["status"], "captured");
    assert_eq!(payment["customerId"], customer.as_str());
    let payment_id = payment["id"].as_str().unwrap();
    let one = api.get(&format!("/api/v1/payments/{payment_id}"), &alice).await;
    one.assert_status(200);
    assert_eq!(one.body["amount"], json!({"amount": 3000, "currency": "EUR"}));

    // Cancel: the paid order is refunded.
    let cancelled = api
        .delete(&format!("/api/v1/orders/{order_id}?reason=changed%20my%20mind"), &alice)
        .await;
    cancelled.assert_status(200);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(cancelled.body["cancellationReason"], "changed my mind");

    // Notifications about the order reach the client, and can be marked read.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let list = api.get("/api/v1/notifications", &alice).await;
        list.assert_status(200);
        let items = list.body["items"].as_array().cloned().unwrap_or_default();
        if items.iter().any(|n| n.to_string().contains(order_id.as_str())) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no notification: {:?}",
            list.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // One notification read by id, then all; a repeat changes nothing.
    let list = api.get("/api/v1/notifications?unreadOnly=true", &alice).await;
    let first = list.body["items"][0]["id"].as_str().unwrap().to_owned();
    let one = api
        .put(&format!("/api/v1/notifications/{first}/read"), &alice, &json!({}))
        .await;
    one.assert_status(200);
    assert_eq!(one.body["updatedCount"], 1, "{one:?}");
    let again = api
        .put(&format!("/api/v1/notifications/{first}/read"), &alice, &json!({}))
        .await;
    assert_eq!(again.body["updatedCount"], 0, "{again:?}");
    api.put("/api/v1/notifications/not-an-id/read", &alice, &json!({}))
        .await
        .assert_problem(400, Some("validation-error"));
    api.post("/api/v1/notifications/read", &alice, &json!({"all": true}))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn employees_use_every_employee_route() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let api = Api::new(&platform.start_bff(Surface::Internal).await.unwrap());
    let admin = platform.admin.clone();
    let manager = platform.auth.employee("om-1", &[Role::OrderManager]);
    let service = platform.auth.employee("cs-1", &[Role::CustomerService]);
    let existing = platform.product(1000, 20).await.unwrap();
    let (alice, customer) = platform.client("alice").await.unwrap();

    // Catalogue management (admin).
    let sku = format!("SKU-{}", uuid::Uuid::now_v7().simple()).to_uppercase();
    let created = api
        .post(
            "/api/v1/products",
            &admin,
            &json!({"sku": sku, "name": "Milk frother", "categoryId": existing.category_id,
                    "price": {"amount": 2500, "currency": "EUR"}, "attributes": {"colour": "black"}}),
        )
        .await;
    created.assert_status(201);
    let product_id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/products/{product_id}").as_str())
    );
    assert_eq!(created.body["attributes"]["colour"], "black");
    let updated = api
        .put(
            &format!("/api/v1/products/{product_id}"),
            &admin,
            &json!({"price": {"amount": 2700, "currency": "EUR"}, "description": "Foams milk"}),
        )
        .await;
    updated.assert_status(200);
    assert_eq!(updated.body["price"]["amount"], 2700);
    assert_eq!(updated.body["description"], "Foams milk");

    // Customers (customer service, order managers read).
    let search = api.get("/api/v1/customers?q=alice", &service).await;
    search.assert_status(200);
    assert!(
        search.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == customer.as_str())
    );
    api.get(&format!("/api/v1/customers/{customer}"), &manager)
        .await
        .assert_status(200);
    // That employee read of customer data is in the audit log.
    let audited = platform
        .audit()
        .query_audit_logs(ordermesh_platform::testing::with_token(
            ordermesh_proto::audit::QueryAuditLogsRequest {
                action: "customer.read".into(),
                entity_id: customer.clone(),
                actor_id: "om-1".into(),
                ..Default::default()
            },
            &platform.admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(!audited.is_empty(), "the read was not audited");
    assert!(
        audited
            .iter()
            .all(|e| e.actor.as_ref().unwrap().id == "om-1" && e.entity_id == customer)
    );
    let renamed = api
        .put(
            &format!("/api/v1/customers/{customer}"),
            &service,
            &json!({"displayName": "Alice (vip)"}),
        )
        .await;
    renamed.assert_status(200);
    assert_eq!(renamed.body["displayName"], "Alice (vip)");

    // Orders: ship and deliver one, refund another.
    let first = platform
        .place(&alice, &customer, &[(&existing.id, 1)], "tok_approved", "")
        .await
        .unwrap()
        .order
        .unwrap()
        .id;
    let second = platform
        .place(&alice, &customer, &[(&existing.id, 2)], "tok_approved", "")
        .await
        .unwrap()
        .order
        .unwrap()
        .id;
    for id in [&first, &second] {
        platform.wait_for(id, &[OrderStatus::Confirmed], SAGA).await.unwrap();
    }
    let all = api
        .get(&format!("/api/v1/orders?customerId={customer}"), &service)
        .await;
    all.assert_status(200);
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);
    api.get(&format!("/api/v1/customers/{customer}/orders"), &manager)
        .await
        .assert_status(200);
    api.get(&format!("/api/v1/orders/{first}"), &service)
        .await
        .assert_status(200);
    let shipped = api
        .put(
            &format!("/api/v1/orders/{first}/status"),
            &manager,
            &json!({"status": "shipped", "carrier": "DHL", "trackingNumber": "JJD0001"}),
        )
        .await;
    shipped.assert_status(200);
    assert_eq!(shipped.body["status"], "shipped");
    assert_eq!(shipped.body["shipment"]["carrier"], "DHL");
    let delivered = api
        .put(
            &format!("/api/v1/orders/{first}/status"),
            &manager,
            &json!({"status": "delivered"}),
        )
        .await;
    delivered.assert_status(200);
    assert_eq!(delivered.body["status"], "delivered");
    // An illegal transition is a 409 problem.
    api.put(
        &format!("/api/v1/orders/{first}/status"),
        &manager,
        &json!({"status": "shipped",
        "carrier": "DHL", "trackingNumber": "JJD0002"}),
    )
    .await
    .assert_problem(409, Some("order-status-conflict"));

    let payments = api.get(&format!("/api/v1/payments?orderId={second}"), &service).await;
    payments.assert_status(200);
    let payment_id = payments.body["items"][0]["id"].as_str().unwrap().to_owned();
    api.get(&format!("/api/v1/payments/{payment_id}"), &manager)
        .await
        .assert_status(200);
    let refund = api
        .post(
            &format!("/api/v1/payments/{payment_id}/refunds"),
            &service,
            &json!({"amount": 500, "reason": "goodwill"}),
        )
        .await;
    refund.assert_status(201);
    assert_eq!(refund.body["refund"]["amount"]["amount"], 500);
    assert_eq!(refund.body["payment"]["refundedAmount"]["amount"], 500);

    // Authorise a payment by hand (order managers) for the second order: a new key makes a
    // new authorisation, or payment-svc refuses it for an already paid order (409).
    let manual = api
        .post(
            "/api/v1/payments",
            &manager,
            &json!({"orderId": second, "customerId": customer, "amount": {"amount": 2000, "currency": "EUR"},
                    "paymentMethodToken": "tok_approved"}),
        )
        .await;
    assert!(matches!(manual.status.as_u16(), 201 | 409), "{manual:?}");
    if manual.status == 201 {
        assert_eq!(manual.body["orderId"], second.as_str());
    }

    // Cancel as an employee.
    let third = platform
        .place(&alice, &customer, &[(&existing.id, 1)], "tok_approved", "")
        .await
        .unwrap()
        .order
        .unwrap()
        .id;
    let cancelled = api.delete(&format!("/api/v1/orders/{third}"), &service).await;
    cancelled.assert_status(200);
    assert_eq!(cancelled.body["status"], "cancelled");

    // An employee sends a customer a message; the audit log is readable by an admin.
    let sent = api
        .post(
            "/api/v1/notifications",
            &service,
            &json!({"recipient": {"customerId": customer}, "type": "message", "title": "Hello", "body": "Hi"}),
        )
        .await;
    assert!(sent.status.is_success(), "{:?} {:?}", sent.status, sent.body);
    api.get("/api/v1/notifications", &service).await.assert_status(200);
    let audit = api.get("/api/v1/audit/logs", &admin).await;
    audit.assert_status(200);

    // An admin records an event, finds it in a time range, and a repeat returns the same entry.
    let event = json!({"action": "catalogue.reviewed", "entityType": "product", "entityId": "p-42",
        "eventId": "review-p-42", "details": {"outcome": "ok", "items": 3}});
    let recorded = api.post("/api/v1/audit/logs", &admin, &event).await;
    recorded.assert_status(201);
    assert_eq!(recorded.body["action"], "catalogue.reviewed");
    assert_eq!(recorded.body["actor"]["id"], "admin-1", "{recorded:?}");
    assert_eq!(recorded.body["details"]["items"], 3);
    let repeat = api.post("/api/v1/audit/logs", &admin, &event).await;
    assert_eq!(repeat.body["id"], recorded.body["id"]);
    let minute = |offset: i64| {
        (chrono::Utc::now() + chrono::Duration::minutes(offset)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let found = api
        .get(
            &format!("/api/v1/audit/logs?entityId=p-42&from={}&to={}", minute(-5), minute(5)),
            &admin,
        )
        .await;
    assert_eq!(found.body["items"].as_array().unwrap().len(), 1, "{found:?}");
    let before = api
        .get(&format!("/api/v1/audit/logs?entityId=p-42&to={}", minute(-5)), &admin)
        .await;
    assert_eq!(before.body["items"], json!([]), "{before:?}");
    for bad in [
        json!({"action": "Bad Action", "entityType": "product", "entityId": "p-1"}),
        json!({"action": "x.y", "entityType": "product", "entityId": "p-1", "details": {"email": "a@b.c"}}),
        json!({"action": "x.y", "entityType": "product", "entityId": "p-1", "actor": {"id": "someone"}}),
    ] {
        api.post("/api/v1/audit/logs", &admin, &bad)
            .await
            .assert_problem(400, None);
    }
    let order_manager = platform.auth.employee("om-audit", &[Role::OrderManager]);
    api.post("/api/v1/audit/logs", &order_manager, &event)
        .await
        .assert_problem(403, Some("forbidden"));
}

#[tokio::test]
async fn health_readiness_openapi_and_http_errors() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let mut config = platform.bff_config(Surface::Both);
    config.body_limit_bytes = 1024;
    config.cors_external_origins = vec!["https://shop.example".into()];
    let api = Api::new(&platform.start_bff_with(config).await.unwrap());
    let (alice, _) = platform.client("alice").await.unwrap();
    let product = platform.product(900, 5).await.unwrap();

    let health = api.send(Method::GET, "/healthz", None, None, &[]).await;
    health.assert_status(200);
    let ready = api.send(Method::GET, "/readyz", None, None, &[]).await;
    ready.assert_status(200);
    for name in ["product", "customer", "order", "payment", "audit", "notification"] {
        assert_eq!(ready.body["services"][name], "serving", "{ready:?}");
    }

    let doc = api.send(Method::GET, "/api/v1/openapi.json", None, None, &[]).await;
    doc.assert_status(200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(doc.body["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let paths = doc.body["paths"].as_object().unwrap();
    for rule in bff::policy::MATRIX {
        let operation = &paths[rule.path][rule.method.to_lowercase()];
        assert!(operation.is_object(), "{} {} undocumented", rule.method, rule.path);
        assert!(operation["responses"]["401"]["content"]["application/problem+json"].is_object());
    }

    // Unknown route, unknown JSON field, malformed JSON, wrong media type, too large a body.
    api.get("/api/v1/nothing-here", &alice)
        .await
        .assert_problem(404, Some("not-found"));
    let no_auth = api.send(Method::GET, "/api/v1/products", None, None, &[]).await;
    no_auth.assert_problem(401, Some("unauthorized"));
    assert!(no_auth.header("www-authenticate").unwrap().starts_with("Bearer"));
    let mut extra = order_body(&product.id, 1, "tok_approved");
    extra["coupon"] = json!("FREE");
    api.post("/api/v1/orders", &alice, &extra)
        .await
        .assert_problem(400, Some("invalid-body"));
    let raw = api
        .http
        .post(format!("{}/api/v1/orders", api.base))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert_eq!(raw.headers()["content-type"], "application/problem+json");
    let text = api
        .http
        .post(format!("{}/api/v1/orders", api.base))
        .bearer_auth(&alice)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);
    let mut big = order_body(&product.id, 1, "tok_approved");
    big["shippingAddress"]["line2"] = json!("x".repeat(4096));
    let too_large = api.post("/api/v1/orders", &alice, &big).await;
    too_large.assert_problem(413, Some("payload-too-large"));
    assert!(too_large.body["correlationId"].is_string());
    // A service's field violations come back as `errors`.
    let invalid = api
        .post("/api/v1/orders", &alice, &order_body(&product.id, 0, "tok_approved"))
        .await;
    invalid.assert_problem(400, Some("validation-error"));
    assert!(!invalid.body["errors"].as_array().unwrap().is_empty(), "{invalid:?}");
    assert!(invalid.body["errors"][0]["field"].is_string());
    // An address the customer profile would refuse is refused on an order too, and nothing is
    // placed.
    let orders_before = api.get("/api/v1/orders", &alice).await.body["items"].clone();
    let mut no_city = order_body(&product.id, 1, "tok_approved");
    no_city["shippingAddress"]["city"] = json!("");
    no_city["shippingAddress"]["countryCode"] = json!("de");
    let bad_address = api.post("/api/v1/orders", &alice, &no_city).await;
    bad_address.assert_problem(400, Some("validation-error"));
    let fields: Vec<&str> = bad_address.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        ["shippingAddress.city", "shippingAddress.countryCode"],
        "{bad_address:?}"
    );
    assert_eq!(api.get("/api/v1/orders", &alice).await.body["items"], orders_before);

    // CORS for the configured origin only.
    let preflight = api
        .send(
            Method::OPTIONS,
            "/api/v1/products",
            None,
            None,
            &[
                ("origin", "https://shop.example"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let foreign = api
        .send(
            Method::OPTIONS,
            "/api/v1/products",
            None,
            None,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
    assert_eq!(foreign.header("access-control-allow-origin"), None);

    // A request over the BFF's time limit is a 504 problem.
    let mut slow = platform.bff_config(Surface::Both);
    slow.request_timeout = Duration::from_millis(1);
    let slow = Api::new(&platform.start_bff_with(slow).await.unwrap());
    slow.get("/api/v1/products", &alice)
        .await
        .assert_problem(504, Some("timeout"));

    // A service that is down is a 503 problem.
    platform.stop("product").await.unwrap();
    api.get(&format!("/api/v1/products/{}", product.id), &alice)
        .await
        .assert_problem(503, Some("service-unavailable"));
}

/// The catalogue's categories and the stock, for those who keep them: clients browse categories
/// and see whether a product is available, never how many; order managers read and adjust the
/// counts (idempotently, with a reason) and are told once each time a product runs low — by an
/// adjustment or by the reservation of an order.
#[tokio::test]
async fn stock_and_categories_for_those_who_keep_them() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let api = Api::new(&platform.start_bff(Surface::Internal).await.unwrap());
    let manager = platform.auth.employee("om-stock", &[Role::OrderManager]);
    let service = platform.auth.employee("cs-stock", &[Role::CustomerService]);
    let (alice, customer) = platform.client("stock-alice").await.unwrap();
    let product = platform.product(1000, 20).await.unwrap();

    // Categories.
    let listed = api.get("/api/v1/products/categories?pageSize=200", &alice).await;
    listed.assert_status(200);
    assert!(
        listed.body["items"].to_string().contains(&product.category_id),
        "{listed:?}"
    );
    let name = format!("Garden {}", uuid::Uuid::now_v7().simple());
    let category = api
        .post(
            "/api/v1/products/categories",
            &manager,
            &json!({"name": name, "description": "Outdoor"}),
        )
        .await;
    category.assert_status(201);
    assert_eq!(category.body["name"], name.as_str());
    api.post("/api/v1/products/categories", &manager, &json!({"name": name}))
        .await
        .assert_problem(409, None);
    api.post(
        "/api/v1/products/categories",
        &manager,
        &json!({"name": "x", "colour": "red"}),
    )
    .await
    .assert_problem(400, None);
    api.post("/api/v1/products/categories", &alice, &json!({"name": "Mine"}))
        .await
        .assert_problem(403, Some("forbidden"));

    // Clients: availability, never a count; the stock routes are not theirs.
    let seen = api.get(&format!("/api/v1/products/{}", product.id), &alice).await;
    assert_eq!(seen.body["availability"], "inStock", "{seen:?}");
    assert!(!seen.body.to_string().contains("onHand"));
    let page = api.get("/api/v1/products?pageSize=200", &alice).await;
    let listed = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == product.id.as_str())
        .cloned();
    assert_eq!(listed.unwrap()["availability"], "inStock");
    for token in [&alice, &service] {
        api.get(&format!("/api/v1/products/{}/stock", product.id), token)
            .await
            .assert_problem(403, Some("forbidden"));
    }

    // Order managers: the counts, one or several at once.
    let stock_path = format!("/api/v1/products/{}/stock", product.id);
    let level = api.get(&stock_path, &manager).await;
    level.assert_status(200);
    assert_eq!(
        (level.body["onHand"].as_i64(), level.body["available"].as_i64()),
        (Some(20), Some(20))
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    let both = api
        .get(
            &format!("/api/v1/products/stock?productIds={},{unknown}", product.id),
            &manager,
        )
        .await;
    both.assert_status(200);
    assert_eq!(both.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(both.body["missingIds"], json!([unknown]));

    // Adjustments: idempotent per key, refused when invalid, and "Low stock" once per crossing.
    let adjust = |delta: i64, key: &str| {
        let body = json!({"delta": delta, "reason": "inventory count"});
        let path = format!("{stock_path}/adjustments");
        let (api, manager, key) = (&api, &manager, key.to_owned());
        async move {
            api.send(
                reqwest::Method::POST,
                &path,
                Some(manager),
                Some(&body),
                &[("idempotency-key", &key)],
            )
            .await
        }
    };
    let down = adjust(-16, "count-1").await;
    down.assert_status(200);
    assert_eq!(
        (down.body["available"].as_i64(), down.body["availability"].as_str()),
        (Some(4), Some("low"))
    );
    let repeat = adjust(-16, "count-1").await;
    assert_eq!(repeat.body["available"], 4, "a repeat adjusts nothing: {repeat:?}");
    adjust(0, "count-zero")
        .await
        .assert_problem(400, Some("validation-error"));
    adjust(-100, "count-too-many").await.assert_problem(409, None);
    api.post(
        &format!("{stock_path}/adjustments"),
        &manager,
        &json!({"delta": 1, "reason": " "}),
    )
    .await
    .assert_problem(400, None);
    assert_eq!(api.get(&stock_path, &manager).await.body["available"], 4);
    let low_notes = |expected: usize| {
        let (api, manager, sku) = (&api, &manager, product.sku.clone());
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let list = api.get("/api/v1/notifications?pageSize=200", manager).await;
                let count = list.body["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|n| n["title"] == "Low stock" && n["data"]["sku"] == sku.as_str())
                    .count();
                if count >= expected {
                    return count;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{count} low-stock notes: {list:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(low_notes(1).await, 1);
    adjust(10, "restock-1").await.assert_status(200);
    adjust(-2, "count-2").await.assert_status(200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(low_notes(1).await, 1, "12 available is not low: nothing new");
    adjust(-8, "count-3").await.assert_status(200);
    assert_eq!(low_notes(2).await, 2, "4 available again: a second crossing");

    // A reservation that makes a product low tells them too.
    let small = platform.product(1000, 7).await.unwrap();
    let placed = platform
        .place(&alice, &customer, &[(&small.id, 2)], "tok_approved", "")
        .await
        .unwrap();
    platform
        .wait_for(
            &placed.order.unwrap().id,
            &[OrderStatus::Confirmed],
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = api.get("/api/v1/notifications?pageSize=200", &manager).await;
        if list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["data"]["sku"] == small.sku.as_str())
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no low-stock note for the reservation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = api.get(&format!("/api/v1/products/{}", small.id), &alice).await;
    assert_eq!(seen.body["availability"], "low", "{seen:?}");
}

#[tokio::test]
async fn employees_list_customers_by_segment() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let api = Api::new(&platform.start_bff(Surface::Internal).await.unwrap());
    let service = platform.auth.employee("cs-segments", &[Role::CustomerService]);
    let product = platform.product(1500, 50).await.unwrap();
    let (repeat_token, repeat) = platform.client("segments-repeat").await.unwrap();
    let (_, newcomer) = platform.client("segments-new").await.unwrap();
    for key in ["seg-1", "seg-2"] {
        let placed = platform
            .place(&repeat_token, &repeat, &[(&product.id, 1)], "tok_approved", key)
            .await
            .unwrap();
        platform
            .wait_for(&placed.order.unwrap().id, &[OrderStatus::Confirmed], SAGA)
            .await
            .unwrap();
    }

    // customer-svc learns of the confirmations from order-events: wait until both count.
    let deadline = tokio::time::Instant::now() + SAGA;
    let repeaters = loop {
        let page = api
            .get("/api/v1/customers?segments=repeat&pageSize=200", &service)
            .await;
        page.assert_status(200);
        let ids: Vec<String> = page.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        if ids.contains(&repeat) || tokio::time::Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(repeaters.contains(&repeat), "{repeaters:?}");
    assert!(!repeaters.contains(&newcomer), "{repeaters:?}");

    // Segments are on the customer for employees; every given segment must hold.
    let shown = api.get(&format!("/api/v1/customers/{repeat}"), &service).await;
    assert_eq!(shown.body["segments"], json!(["repeat"]), "{shown:?}");
    let fresh = api.get(&format!("/api/v1/customers/{newcomer}"), &service).await;
    assert_eq!(fresh.body["segments"], json!(["new"]), "{fresh:?}");
    let both = api
        .get("/api/v1/customers?segments=new,repeat&pageSize=200", &service)
        .await;
    let ids: Vec<&str> = both.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(
        !ids.contains(&repeat.as_str()) && !ids.contains(&newcomer.as_str()),
        "{both:?}"
    );

    for bad in ["segments=", "segments=loyal", "segments=repeat,,new"] {
        api.get(&format!("/api/v1/customers?{bad}"), &service)
            .await
            .assert_problem(400, None);
    }
}

#[tokio::test]
async fn an_order_of_products_priced_in_two_currencies_is_a_conflict() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let api = Api::new(&platform.start_bff(Surface::Both).await.unwrap());
    let euros = platform.product(1500, 10).await.unwrap();
    let dollars = platform.product(900, 10).await.unwrap();
    let (alice, _) = platform.client("alice").await.unwrap();
    api.put(
        &format!("/api/v1/products/{}", dollars.id),
        &platform.admin,
        &json!({"price": {"amount": 900, "currency": "USD"}}),
    )
    .await
    .assert_status(200);

    let mut body = order_body(&euros.id, 1, "tok_approved");
    body["items"]
        .as_array_mut()
        .unwrap()
        .push(json!({"productId": dollars.id, "quantity": 1}));
    // The body is valid; the catalogue's prices cannot make one order of it.
    let refused = api.post("/api/v1/orders", &alice, &body).await;
    refused.assert_problem(409, Some("mixed-currencies"));
    assert_eq!(refused.body["detail"], "items[1] is priced in USD, the order in EUR");
    let orders = api.get("/api/v1/orders", &alice).await;
    assert_eq!(orders.body["items"], json!([]), "nothing was placed");
}
