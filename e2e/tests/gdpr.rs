//! GDPR through the BFF with the real services behind it, on both profiles: a client with
//! orders, payments, consents and notifications exports itself (the bundle validated against its
//! JSON Schema by Python's `jsonschema`) and erases itself; afterwards no seeded personal string
//! is left anywhere the platform keeps data — every table (from the catalog), the raw SQLite
//! files, Redis, the streams — or in any log line written at debug level, while order and
//! payment totals still add up and the audit chain verifies. The erasure saga also completes
//! after a participant that was down comes back.

mod bff_common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bff::Surface;
use bff_common::{Answer, Api};
use ordermesh_e2e::{CountingGateway, NATS_URL, Platform, scan};
use ordermesh_platform::auth::Role;
use ordermesh_platform::testing::with_token;
use ordermesh_proto::audit::VerifyChainRequest;
use ordermesh_proto::customer::{CustomerStatus, EraseCustomerRequest, GetCustomerRequest};
use ordermesh_proto::order::OrderStatus;
use serde_json::{Value, json};

const SAGA: Duration = Duration::from_secs(30);

const NAME: &str = "Zelda Quixote-Marchetti";
const EMAIL: &str = "zelda.quixote@example.test";
const PHONE: &str = "+4915199887766";
const STREET: &str = "Grünwalder Straße 17";
const PERSONAL: [&str; 4] = [NAME, EMAIL, PHONE, STREET];

/// Every log line of this test binary, at debug level.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(move || LogSink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        logs
    })
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn address() -> Value {
    json!({"recipientName": NAME, "line1": STREET, "city": "München", "postalCode": "81547", "countryCode": "DE"})
}

fn order(product_id: &str, payment_token: &str) -> Value {
    json!({
        "items": [{"productId": product_id, "quantity": 1}],
        "shippingAddress": address(),
        "paymentMethodToken": payment_token,
    })
}

async fn poll<F, Fut>(what: &str, mut check: F) -> Answer
where
    F: FnMut() -> Fut,
    Fut: Future<Output = (bool, Answer)>,
{
    let deadline = tokio::time::Instant::now() + SAGA;
    loop {
        let (done, answer) = check().await;
        if done {
            return answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: still {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Validates `bundle` against `docs/gdpr/export-bundle.schema.json` with Python's `jsonschema`
/// (scripts/peers.sh installs it; `ORDERMESH_PYTHON` names that interpreter).
fn validate_bundle(bundle: &Value) {
    let python = std::env::var("ORDERMESH_PYTHON").expect(
        "ORDERMESH_PYTHON: the Python with jsonschema that scripts/peers.sh installs (the README's test command sets it)",
    );
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, serde_json::to_vec_pretty(bundle).unwrap()).unwrap();
    let output = std::process::Command::new(python)
        .arg(format!("{root}/tests/peers/validate_bundle.py"))
        .arg(format!("{root}/docs/gdpr/export-bundle.schema.json"))
        .arg(&path)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the bundle does not match its schema:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn texts_of(value: &Value) -> String {
    value.to_string()
}

/// The client's export through the BFF, once ready.
async fn export(api: &Api, token: &str, customer_id: &str) -> Value {
    let started = api
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/customers/{customer_id}/gdpr/export"),
            Some(token),
            None,
            &[],
        )
        .await;
    started.assert_status(202);
    let location = started.header("location").expect("Location").to_owned();
    assert_eq!(started.body["status"], "pending");
    assert!(location.ends_with(started.body["exportId"].as_str().unwrap()));
    let ready = poll("export", || async {
        let answer = api.get(&location, token).await;
        (answer.body["status"] == "ready", answer)
    })
    .await;
    assert_eq!(ready.header("cache-control"), Some("no-store"));
    ready.body["bundle"].clone()
}

async fn gdpr_round_trip(mut platform: Platform) {
    let logs = captured_logs();
    let config = platform.bff_config(Surface::Both);
    let redis_prefix = config.cache_prefix.clone();
    let api = Api::new(&platform.start_bff_with(config).await.unwrap());
    let staff = platform.auth.employee("cs-1", &[Role::CustomerService]);
    let manager = platform.auth.employee("om-1", &[Role::OrderManager]);
    let product = platform.product(1500, 10).await.unwrap();

    // A client signs up with its personal data, orders three times, consents, is messaged.
    let zelda = platform.auth.client("gdpr-zelda");
    let profile = json!({"displayName": NAME, "email": EMAIL, "phone": PHONE, "addresses": [address()]});
    let created = api.post("/api/v1/customers/me", &zelda, &profile).await;
    created.assert_status(201);
    let customer_id = created.body["id"].as_str().unwrap().to_owned();
    let mut orders = Vec::new();
    for (i, token) in ["tok_approved", "tok_approved", "tok_declined"].into_iter().enumerate() {
        // With a key, so the BFF keeps its answer for replay (without the address).
        let key = format!("gdpr-order-{i}");
        let body = order(&product.id, token);
        let placed = api
            .send(
                reqwest::Method::POST,
                "/api/v1/orders",
                Some(&zelda),
                Some(&body),
                &[("idempotency-key", &key)],
            )
            .await;
        placed.assert_status(202);
        orders.push(placed.body["id"].as_str().unwrap().to_owned());
    }
    let (shipped, in_flight, declined) = (&orders[0], &orders[1], &orders[2]);
    for (id, status) in [
        (shipped, OrderStatus::Confirmed),
        (in_flight, OrderStatus::Confirmed),
        (declined, OrderStatus::Rejected),
    ] {
        platform.wait_for(id, &[status], SAGA).await.unwrap();
    }
    api.put(
        &format!("/api/v1/orders/{shipped}/status"),
        &manager,
        &json!({"status": "shipped", "carrier": "DHL", "trackingNumber": "JD0001"}),
    )
    .await
    .assert_status(200);
    let consent = json!({"purpose": "marketing_email", "granted": true, "policyVersion": "2026-01"});
    api.post(&format!("/api/v1/customers/{customer_id}/consents"), &zelda, &consent)
        .await
        .assert_status(201);
    api.put(
        "/api/v1/notifications/preferences",
        &zelda,
        &json!({"channels": ["email"], "mutedTypes": ["system"]}),
    )
    .await
    .assert_status(200);
    let message = json!({"recipient": {"customerId": customer_id}, "type": "message",
        "title": "About your order", "body": format!("Dear {NAME}, your parcel is on its way.")});
    api.post("/api/v1/notifications", &staff, &message)
        .await
        .assert_status(201);
    let paid_before = totals(&platform, &orders).await;

    // Right of access: the bundle holds every part, and only the data subject (or staff) sees it.
    let bundle = export(&api, &zelda, &customer_id).await;
    validate_bundle(&bundle);
    let sections = &bundle["sections"];
    assert_eq!(sections["customer"]["profile"]["email"], EMAIL);
    assert_eq!(sections["customer"]["consents"].as_array().unwrap().len(), 1);
    assert_eq!(sections["order"]["orders"].as_array().unwrap().len(), 3);
    assert!(
        texts_of(&sections["order"]).contains(STREET),
        "orders carry their addresses"
    );
    assert!(sections["payment"]["payments"].as_array().unwrap().len() >= 2);
    let notes = texts_of(&sections["notification"]);
    assert!(notes.contains(NAME), "the message sent to the client is in the export");
    assert_eq!(sections["notification"]["preferences"]["channels"], json!(["EMAIL"]));
    let trail = sections["audit"]["entries"].as_array().unwrap();
    assert!(trail.iter().any(|e| e["action"] == "consent.recorded"), "{trail:?}");
    let bob = platform.auth.client("gdpr-bob");
    api.post(
        "/api/v1/customers/me",
        &bob,
        &json!({"displayName": "Bob", "email": "bob@example.test"}),
    )
    .await
    .assert_status(201);
    api.send(
        reqwest::Method::POST,
        &format!("/api/v1/customers/{customer_id}/gdpr/export"),
        Some(&bob),
        None,
        &[],
    )
    .await
    .assert_problem(404, None);
    let staff_export = export(&api, &staff, &customer_id).await;
    assert_eq!(staff_export["customerId"], customer_id.as_str());

    // Right to be forgotten, asked by the client itself.
    let erased = api.delete(&format!("/api/v1/customers/{customer_id}"), &zelda).await;
    erased.assert_status(202);
    let erasure_id = erased.body["erasureRequestId"].as_str().unwrap().to_owned();
    let done = poll("erasure", || async {
        let answer = api.get(&format!("/api/v1/customers/{customer_id}"), &staff).await;
        (answer.body["status"] == "erased", answer)
    })
    .await;
    assert_eq!(done.body["email"], "");
    // The order in flight was cancelled and refunded; the shipped one kept, anonymised.
    let cancelled = platform
        .wait_for(in_flight, &[OrderStatus::Cancelled], SAGA)
        .await
        .unwrap();
    assert!(cancelled.shipping_address.is_none());
    let deadline = tokio::time::Instant::now() + SAGA;
    loop {
        let payments = platform.payments_of(in_flight).await.unwrap();
        if payments
            .iter()
            .any(|p| p.refunded_amount.as_ref().is_some_and(|m| m.amount_minor > 0))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cancelled order was not refunded: {payments:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        platform.order(shipped).await.unwrap().status,
        OrderStatus::Shipped as i32
    );
    assert_eq!(
        totals(&platform, &orders).await,
        paid_before,
        "amounts are kept for accounting"
    );

    // A repeat: the client has no customer any more; staff get the same erasure.
    api.delete(&format!("/api/v1/customers/{customer_id}"), &zelda)
        .await
        .assert_problem(404, None);
    let again = api.delete(&format!("/api/v1/customers/{customer_id}"), &staff).await;
    again.assert_status(202);
    assert_eq!(again.body["erasureRequestId"], erasure_id.as_str());
    assert_eq!(again.body["status"], "erased");
    assert_eq!(again.body["pendingServices"], json!([]));
    api.get("/api/v1/customers/me", &zelda)
        .await
        .assert_problem(404, Some("customer-profile-missing"));
    // Nothing is sent to an erased customer; bad ids are refused.
    api.post("/api/v1/notifications", &staff, &message)
        .await
        .assert_problem(409, None);
    let unknown = uuid::Uuid::now_v7();
    api.delete(&format!("/api/v1/customers/{unknown}"), &staff)
        .await
        .assert_problem(404, None);
    api.delete("/api/v1/customers/not-a-uuid", &staff)
        .await
        .assert_problem(400, None);

    // The GDPR trail records every step, without the erased data.
    let steps = api
        .get(&format!("/api/v1/audit/gdpr/{customer_id}?pageSize=500"), &staff)
        .await;
    steps.assert_status(200);
    let actions: Vec<&str> = steps.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default())
        .collect();
    let count = |action: &str| actions.iter().filter(|a| **a == action).count();
    assert_eq!(count("customer.data_exported"), 2, "{actions:?}");
    assert_eq!(count("erasure.requested"), 1, "{actions:?}");
    assert_eq!(count("erasure.completed"), 3, "one per participant: {actions:?}");
    assert_eq!(count("customer.erased"), 1, "{actions:?}");
    let after = export(&api, &staff, &customer_id).await;
    validate_bundle(&after);
    for needle in PERSONAL {
        assert!(
            !after.to_string().contains(needle),
            "{needle} in the export of an erased customer"
        );
    }

    // Nothing personal is left anywhere.
    let mut findings = Vec::new();
    match platform.sqlite_dir() {
        Some(dir) => {
            // The log checkpoint after the erasure runs once it commits.
            tokio::time::sleep(Duration::from_millis(500)).await;
            findings.extend(scan::files(dir, &PERSONAL).unwrap());
        }
        None => {
            findings.extend(scan::postgres(platform.database_url(), &PERSONAL).await.unwrap());
            findings.extend(scan::streams(NATS_URL, &platform.events, &PERSONAL).await.unwrap());
        }
    }
    findings.extend(
        scan::redis(&ordermesh_platform::testing::redis_url(), &redis_prefix, &PERSONAL)
            .await
            .unwrap(),
    );
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logged.contains("DEBUG"), "debug logs were captured");
    findings.extend(
        PERSONAL
            .iter()
            .filter(|n| logged.contains(*n))
            .map(|n| format!("{n:?} in a log line")),
    );
    assert!(
        findings.is_empty(),
        "personal data left after the erasure: {findings:#?}"
    );

    let chain = platform
        .audit()
        .verify_chain(with_token(VerifyChainRequest::default(), &platform.admin))
        .await
        .unwrap()
        .into_inner();
    assert!(chain.ok && chain.entries_checked > 0, "{chain:?}");

    // A new sign-up with the same identity and e-mail is a new customer.
    let again = api.post("/api/v1/customers/me", &zelda, &profile).await;
    again.assert_status(201);
    assert_ne!(again.body["id"], customer_id.as_str());
}

/// Each order's total and what was captured for it: what accounting keeps.
async fn totals(platform: &Platform, orders: &[String]) -> Vec<(i64, i64)> {
    let mut totals = Vec::new();
    for id in orders {
        let order = platform.order(id).await.unwrap();
        let captured = platform
            .payments_of(id)
            .await
            .unwrap()
            .iter()
            .map(|p| p.captured_amount.as_ref().map_or(0, |m| m.amount_minor))
            .sum();
        totals.push((order.total.map_or(0, |m| m.amount_minor), captured));
    }
    totals
}

#[tokio::test]
async fn a_client_exports_and_erases_itself_on_postgres_and_nats() {
    gdpr_round_trip(Platform::start(CountingGateway::sandbox()).await.unwrap()).await;
}

#[tokio::test]
async fn a_client_exports_and_erases_itself_on_the_embedded_profile() {
    gdpr_round_trip(Platform::start_embedded(CountingGateway::sandbox()).await.unwrap()).await;
}

#[tokio::test]
async fn the_erasure_waits_for_a_service_that_is_down_and_completes_when_it_returns() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let (token, customer_id) = platform.client("gdpr-down").await.unwrap();
    platform.stop("notification").await.unwrap();
    let erase = EraseCustomerRequest {
        customer_id: customer_id.clone(),
        reason: "data subject request".into(),
    };
    let requested = platform
        .customers()
        .erase_customer(with_token(erase, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(requested.customer.unwrap().status, CustomerStatus::Erasing as i32);
    assert_eq!(requested.pending_services, ["order", "payment", "notification"]);

    let status = async |platform: &Platform| {
        let get = GetCustomerRequest {
            customer_id: customer_id.clone(),
        };
        platform
            .customers()
            .get_customer(with_token(get, &platform.admin))
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap()
            .status
    };
    // The others confirm; without notification-svc the customer stays ERASING.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        status(&platform).await,
        CustomerStatus::Erasing as i32,
        "erased without notification-svc"
    );

    platform.restart("notification").await.unwrap();
    let deadline = tokio::time::Instant::now() + SAGA;
    while status(&platform).await != CustomerStatus::Erased as i32 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ERASED after notification-svc returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_export_waits_for_a_service_that_is_down_and_is_never_handed_out_incomplete() {
    use ordermesh_proto::customer::{ExportCustomerDataRequest, ExportState, GetCustomerDataExportRequest};
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let (token, customer_id) = platform.client("gdpr-export-down").await.unwrap();
    platform.stop("payment").await.unwrap();
    let started = platform
        .customers()
        .export_customer_data(with_token(
            ExportCustomerDataRequest {
                customer_id: customer_id.clone(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .export
        .unwrap();
    let state = async |platform: &Platform| {
        let get = GetCustomerDataExportRequest {
            customer_id: customer_id.clone(),
            export_id: started.export_id.clone(),
        };
        platform
            .customers()
            .get_customer_data_export(with_token(get, &token))
            .await
            .unwrap()
            .into_inner()
            .export
            .unwrap()
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pending = state(&platform).await;
    assert_eq!(pending.state, ExportState::Pending as i32, "ready without payment-svc");
    assert!(pending.json_document.is_empty());

    platform.restart("payment").await.unwrap();
    let deadline = tokio::time::Instant::now() + SAGA;
    let ready = loop {
        let export = state(&platform).await;
        if export.state == ExportState::Ready as i32 {
            break export;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not READY after payment-svc returned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let bundle: Value = serde_json::from_slice(&ready.json_document).unwrap();
    assert_eq!(bundle["sections"]["payment"]["payments"], json!([]));
    validate_bundle(&bundle);
}
