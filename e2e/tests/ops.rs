//! The ops API as an operator uses it, with the real grpcurl (a reflection client no one here
//! wrote), on both profiles: a fault in notification-svc's database (a trigger refusing every
//! new notification) makes its consumers dead-letter an order's events; the operator sees them
//! in `ListDeadLetters` with the error, fixes the cause, replays them, and the customer ends up
//! with exactly the notifications of an order that never met the fault — each once. Each replay
//! is in the audit log. A bad request's field violations print as fields (grpcurl resolves
//! `google.rpc.BadRequest` through reflection), and a client may not use the API at all. The
//! employee portal's admin API (`/api/v1/admin/*`) shows the same state through the BFF, and
//! answers only from the allowed networks when `BFF_ADMIN_ALLOWED_CIDRS` is set.

mod bff_common;

use std::process::Command;
use std::time::Duration;

use bff::Surface;
use bff_common::Api;
use ordermesh_e2e::{CountingGateway, Fault, Platform};
use ordermesh_platform::testing::with_token;
use ordermesh_proto::audit::QueryAuditLogsRequest;
use ordermesh_proto::notification::ListNotificationsRequest;
use ordermesh_proto::order::OrderStatus;
use serde_json::Value;

const SAGA: Duration = Duration::from_secs(30);
const OPS: &str = "ordermesh.ops.v1.OpsService";

/// grpcurl (`ORDERMESH_GRPCURL`, installed by scripts/peers.sh) against `address` with `token`:
/// (succeeded, stdout, stderr).
fn grpcurl(address: &str, token: &str, method: &str, body: &str) -> (bool, String, String) {
    let binary = std::env::var("ORDERMESH_GRPCURL").unwrap_or_else(|_| "grpcurl".to_owned());
    let output = Command::new(&binary)
        .args(["-max-time", "10", "-plaintext", "-H"])
        .arg(format!("authorization: Bearer {token}"))
        .args(["-d", body, address])
        .arg(format!("{OPS}/{method}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {binary} (scripts/test sets ORDERMESH_GRPCURL): {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// grpcurl's JSON answer of a call that must succeed.
fn call(address: &str, token: &str, method: &str, body: &str) -> Value {
    let (ok, stdout, stderr) = grpcurl(address, token, method, body);
    assert!(ok, "{method} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{method} answered {stdout:?}: {e}"))
}

fn dead_letters(answer: &Value) -> Vec<Value> {
    answer["deadLetters"].as_array().cloned().unwrap_or_default()
}

/// The types of `customer`'s notifications once they stop changing, sorted.
async fn settled_notifications(platform: &Platform, customer: &str) -> Vec<i32> {
    let mut last = Vec::new();
    let mut stable_since = tokio::time::Instant::now();
    let deadline = tokio::time::Instant::now() + SAGA;
    loop {
        let request = ListNotificationsRequest {
            customer_id: customer.to_owned(),
            page_size: 200,
            ..Default::default()
        };
        let mut types: Vec<i32> = platform
            .notifications()
            .list_notifications(with_token(request, &platform.admin))
            .await
            .unwrap()
            .into_inner()
            .notifications
            .iter()
            .map(|n| n.notification_type)
            .collect();
        types.sort();
        if types != last {
            last = types;
            stable_since = tokio::time::Instant::now();
        } else if !last.is_empty() && stable_since.elapsed() > Duration::from_secs(2) {
            return last;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "notifications never settled: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn place_confirmed(platform: &Platform, subject: &str, product: &str) -> String {
    let (token, customer) = platform.client(subject).await.unwrap();
    let placed = platform
        .place(&token, &customer, &[(product, 1)], "tok_approved", "")
        .await
        .unwrap();
    let order = placed.order.unwrap();
    platform
        .wait_for(&order.id, &[OrderStatus::Confirmed], SAGA)
        .await
        .unwrap();
    customer
}

async fn replayed_dead_letters_take_effect_once(embedded: bool) {
    let mut platform = Platform::start_tuned(CountingGateway::sandbox(), embedded, |events| {
        events.max_deliver = 2;
        events.retry_backoff = vec![Duration::from_millis(50)];
    })
    .await
    .unwrap();
    let address = platform.url("notification").trim_start_matches("http://").to_owned();
    let admin = platform.admin.clone();
    let product = platform.product(1500, 20).await.unwrap();
    let bff = Api::new(&platform.start_bff(Surface::Internal).await.unwrap());
    let system = bff.get("/api/v1/admin/system", &admin).await;
    system.assert_status(200);
    assert_eq!(system.body["services"].as_array().unwrap().len(), 6, "{system:?}");
    assert_eq!(system.body["healthy"], true, "{system:?}");

    // What one order's notifications are when nothing goes wrong.
    let control = place_confirmed(&platform, "ops-control", &product.id).await;
    let expected = settled_notifications(&platform, &control).await;

    let status = call(&address, &admin, "GetServiceStatus", "{}");
    assert_eq!(status["service"], "notification-svc", "{status}");
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["bus"], if embedded { "in-process" } else { "nats-jetstream" });
    let topics: Vec<&str> = status["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["topic"].as_str())
        .collect();
    assert!(topics.contains(&"order-events"), "{status}");
    assert!(dead_letters(&call(&address, &admin, "ListDeadLetters", "{}")).is_empty());

    // The fault: every notification of the next order's events is refused, retried, then
    // dead-lettered.
    let fault = Fault::open(&platform).await;
    fault.inject().await;
    let customer = place_confirmed(&platform, "ops-faulted", &product.id).await;
    let deadline = tokio::time::Instant::now() + SAGA;
    let (mut seen, mut stable_since) = (0, tokio::time::Instant::now());
    let letters = loop {
        let letters = dead_letters(&call(&address, &admin, "ListDeadLetters", "{}"));
        if letters.len() != seen {
            (seen, stable_since) = (letters.len(), tokio::time::Instant::now());
        } else if seen > 0 && stable_since.elapsed() > Duration::from_secs(2) {
            break letters;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead letters so far: {letters:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let status = call(&address, &admin, "GetServiceStatus", "{}");
    assert_eq!(status["deadLetters"], letters.len().to_string(), "{status}");
    for letter in &letters {
        assert_eq!(letter["service"], "notification-svc", "{letter}");
        assert!(letter["error"].as_str().unwrap().contains("injected fault"), "{letter}");
        assert_eq!(letter["deliveryCount"], "2", "{letter}");
        assert!(letter.get("payload").is_none(), "no payload is shown: {letter}");
    }
    let request = ListNotificationsRequest {
        customer_id: customer.clone(),
        ..Default::default()
    };
    let none = platform
        .notifications()
        .list_notifications(with_token(request, &admin))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert!(none.is_empty(), "nothing was stored while the fault lasted: {none:?}");

    // The admin API sees the same, in one call for the dashboard.
    let system = bff.get("/api/v1/admin/system", &admin).await;
    system.assert_status(200);
    assert_eq!(system.body["healthy"], false);
    assert_eq!(system.body["deadLetters"], letters.len());
    let notification = system.body["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "notification-svc")
        .unwrap();
    assert_eq!(notification["deadLetters"], letters.len(), "{notification}");
    assert_eq!(notification["ready"], true);
    let listed = bff.get("/api/v1/admin/dead-letters?service=notification", &admin).await;
    listed.assert_status(200);
    let ids = |items: &Value| -> Vec<String> {
        let mut ids: Vec<String> = items
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].to_string().trim_matches('"').to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&listed.body["items"]), ids(&Value::Array(letters.clone())));
    assert_eq!(listed.body["total"], letters.len());
    bff.get("/api/v1/admin/dead-letters?pageSize=0", &admin)
        .await
        .assert_problem(400, Some("validation-error"));
    bff.get("/api/v1/admin/dead-letters?colour=red", &admin)
        .await
        .assert_problem(400, None);
    bff.post(
        "/api/v1/admin/dead-letters/999999/replay",
        &admin,
        &serde_json::json!({}),
    )
    .await
    .assert_problem(404, Some("not-found"));
    let some_id = letters[0]["id"].as_str().unwrap();
    for bad in [
        serde_json::json!({"reason": ""}),
        serde_json::json!({"reason": "x", "force": true}),
    ] {
        bff.post(&format!("/api/v1/admin/dead-letters/{some_id}/discard"), &admin, &bad)
            .await
            .assert_problem(400, None);
    }
    let order_manager = platform
        .auth
        .employee("ops-om", &[ordermesh_platform::auth::Role::OrderManager]);
    bff.get("/api/v1/admin/dead-letters", &order_manager)
        .await
        .assert_problem(403, Some("forbidden"));

    // Bad requests: field violations as grpcurl prints them, and nothing changes.
    let (ok, _, stderr) = grpcurl(&address, &admin, "DiscardDeadLetter", r#"{"id": "1", "reason": " "}"#);
    assert!(!ok);
    assert!(stderr.contains("InvalidArgument"), "{stderr}");
    assert!(
        stderr.contains("google.rpc.BadRequest") && stderr.contains("fieldViolations") && stderr.contains("reason"),
        "grpcurl prints the violations: {stderr}"
    );
    assert!(!stderr.contains("is not recognized"), "{stderr}");
    let (ok, _, stderr) = grpcurl(&address, &admin, "ReplayDeadLetter", r#"{"id": "999999"}"#);
    assert!(!ok && stderr.contains("NotFound"), "{stderr}");
    let (client, _) = platform.client("ops-nosy-client").await.unwrap();
    let (ok, _, stderr) = grpcurl(&address, &client, "ListDeadLetters", "{}");
    assert!(!ok && stderr.contains("PermissionDenied"), "{stderr}");
    assert_eq!(
        dead_letters(&call(&address, &admin, "ListDeadLetters", "{}")).len(),
        letters.len()
    );

    // The cause fixed: one replayed by id with grpcurl, one through the admin API, the rest all
    // at once.
    fault.fix().await;
    let first = letters[0]["id"].as_str().unwrap().to_owned();
    let replayed = call(&address, &admin, "ReplayDeadLetter", &format!(r#"{{"id": "{first}"}}"#));
    assert_eq!(replayed["deadLetter"]["id"], first.as_str());
    let mut replayed_by_hand = 1;
    if let Some(second) = letters.get(1) {
        let second = second["id"].as_str().unwrap();
        let answer = bff
            .post(
                &format!("/api/v1/admin/dead-letters/{second}/replay"),
                &admin,
                &serde_json::json!({}),
            )
            .await;
        answer.assert_status(200);
        assert_eq!(answer.body["id"].to_string(), second, "{answer:?}");
        replayed_by_hand += 1;
    }
    let rest = call(&address, &admin, "ReplayAllDeadLetters", "{}");
    assert_eq!(dead_letters(&rest).len(), letters.len() - replayed_by_hand, "{rest}");
    assert!(dead_letters(&call(&address, &admin, "ListDeadLetters", "{}")).is_empty());

    // Exactly the notifications of an order that never met the fault, each once.
    assert_eq!(settled_notifications(&platform, &customer).await, expected);

    // Each replay is in the audit log, by the admin who did it.
    let deadline = tokio::time::Instant::now() + SAGA;
    loop {
        let request = QueryAuditLogsRequest {
            action: "dead_letter.replayed".into(),
            page_size: 100,
            ..Default::default()
        };
        let entries = platform
            .audit()
            .query_audit_logs(with_token(request, &admin))
            .await
            .unwrap()
            .into_inner()
            .entries;
        if entries.len() >= letters.len() {
            assert_eq!(entries.len(), letters.len());
            for entry in &entries {
                assert_eq!(entry.entity_type, "dead_letter");
                assert_eq!(entry.actor.as_ref().unwrap().id, "admin-1");
            }
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "audited so far: {}",
            entries.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `BFF_ADMIN_ALLOWED_CIDRS`: the admin API only from the allowed networks, by the peer address
/// or, when configured, by the trusted proxy header's right-most address; other routes as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_only_from_allowed_networks() {
    let mut platform = Platform::start_embedded(CountingGateway::sandbox()).await.unwrap();
    let admin = platform.admin.clone();
    let mut config = platform.bff_config(Surface::Internal);
    config.admin_allowed_networks = vec!["10.0.0.0/8".parse().unwrap()];
    let direct = Api::new(&platform.start_bff_with(config.clone()).await.unwrap());
    direct
        .get("/api/v1/admin/system", &admin)
        .await
        .assert_problem(403, Some("forbidden"));
    direct.get("/api/v1/products", &admin).await.assert_status(200);

    config.trusted_proxy_header = Some("x-forwarded-for".parse().unwrap());
    let proxied = Api::new(&platform.start_bff_with(config).await.unwrap());
    let from = |address: &'static str| [("x-forwarded-for", address)];
    let allowed = proxied
        .send(
            reqwest::Method::GET,
            "/api/v1/admin/system",
            Some(&admin),
            None,
            &from("192.0.2.1, 10.1.2.3"),
        )
        .await;
    allowed.assert_status(200);
    // The gateway appends the client it saw: an address the client wrote itself comes first.
    proxied
        .send(
            reqwest::Method::GET,
            "/api/v1/admin/system",
            Some(&admin),
            None,
            &from("10.1.2.3, 192.0.2.1"),
        )
        .await
        .assert_problem(403, Some("forbidden"));
    proxied
        .send(reqwest::Method::GET, "/api/v1/admin/system", Some(&admin), None, &[])
        .await
        .assert_problem(403, Some("forbidden"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replayed_dead_letters_take_effect_once_on_the_production_profile() {
    replayed_dead_letters_take_effect_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replayed_dead_letters_take_effect_once_on_the_embedded_profile() {
    replayed_dead_letters_take_effect_once(true).await;
}
