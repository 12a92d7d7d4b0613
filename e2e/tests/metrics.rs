//! The platform's `/metrics` (METRICS_ADDR) read by a parser no one here wrote
//! (`prometheus_client`, Python): after N orders through the BFF, every metric family the
//! dashboards and alerts use is there, with the counts those orders imply — requests, RPCs,
//! events published (= the outbox rows), events settled by each consumer (= what was published
//! on its topic), notifications (= the rows stored) — and no label carries personal data.
//! One test in its own binary: the meter provider and its endpoint belong to the process.

mod bff_common;

use std::collections::BTreeMap;
use std::time::Duration;

use bff::Surface;
use bff_common::{Api, order_body};
use ordermesh_e2e::{CountingGateway, Platform};
use ordermesh_proto::order::OrderStatus;
use serde_json::Value;

const ORDERS: usize = 3;
const SAGA: Duration = Duration::from_secs(30);
const SERVICES: [&str; 6] = ["product", "customer", "order", "payment", "audit", "notification"];

#[derive(Debug, Clone)]
struct Sample {
    family: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of the endpoint at `addr`, as prometheus_client parses them.
async fn scrape(addr: std::net::SocketAddr) -> Vec<Sample> {
    let response = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.unwrap();
    let python = std::env::var("ORDERMESH_PYTHON")
        .expect("ORDERMESH_PYTHON: the Python with prometheus-client that scripts/peers.sh installs");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/peers/prom_samples.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client rejected the exposition:\n{text}"
    );
    let parsed: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    parsed
        .into_iter()
        .map(|s| Sample {
            family: s["family"].as_str().unwrap().to_owned(),
            name: s["name"].as_str().unwrap().to_owned(),
            labels: serde_json::from_value(s["labels"].clone()).unwrap(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect()
}

/// Sum of the samples named `name` whose labels include all of `with`.
fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Each service's outbox rows per topic, and the notifications stored: the truth the counters
/// must match.
async fn stored(platform: &Platform) -> (BTreeMap<(String, String), f64>, f64) {
    let dir = platform.sqlite_dir().expect("embedded profile");
    let mut outbox = BTreeMap::new();
    let mut notifications = 0.0;
    for service in SERVICES {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}/{service}.db", dir.display()))
            .await
            .unwrap();
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT topic, COUNT(*) FROM event_outbox GROUP BY topic")
            .fetch_all(&pool)
            .await
            .unwrap();
        for (topic, count) in rows {
            outbox.insert((format!("{service}-svc"), topic), count as f64);
        }
        if service == "notification" {
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications")
                .fetch_one(&pool)
                .await
                .unwrap();
            notifications = count as f64;
        }
        pool.close().await;
    }
    (outbox, notifications)
}

/// What the counters say against what is stored: empty when they agree.
fn disagreements(samples: &[Sample], outbox: &BTreeMap<(String, String), f64>, notifications: f64) -> Vec<String> {
    let mut out = Vec::new();
    // Published: one per outbox row, per publishing service and topic; nothing left over.
    for ((service, topic), rows) in outbox {
        let published = sum(
            samples,
            "outbox_published_total",
            &[("service", service), ("topic", topic)],
        );
        if published != *rows {
            out.push(format!(
                "{service} published {published} on {topic}, its outbox has {rows}"
            ));
        }
    }
    let published_total = sum(samples, "outbox_published_total", &[]);
    let rows_total: f64 = outbox.values().sum();
    if published_total != rows_total {
        out.push(format!("{published_total} published in all, {rows_total} outbox rows"));
    }
    // Consumed: every consumer settles each event of its topic exactly once (retries aside).
    let mut consumers: Vec<(String, String)> = samples
        .iter()
        .filter(|s| s.name == "events_consumed_total")
        .map(|s| (s.labels["service"].clone(), s.labels["topic"].clone()))
        .collect();
    consumers.sort();
    consumers.dedup();
    for (service, topic) in &consumers {
        let on_topic: f64 = outbox.iter().filter(|((_, t), _)| t == topic).map(|(_, n)| n).sum();
        let settled: f64 = ["processed", "duplicate", "skipped", "dead_letter"]
            .iter()
            .map(|outcome| {
                sum(
                    samples,
                    "events_consumed_total",
                    &[("service", service), ("topic", topic), ("outcome", outcome)],
                )
            })
            .sum();
        if settled != on_topic {
            out.push(format!(
                "{service} settled {settled} of {topic}, {on_topic} were published"
            ));
        }
    }
    let created = sum(
        samples,
        "notifications_created_total",
        &[("service", "notification-svc")],
    );
    if created != notifications {
        out.push(format!("{created} notifications counted, {notifications} stored"));
    }
    if sum(samples, "outbox_backlog", &[]) != 0.0 {
        out.push("an outbox backlog is still sampled".into());
    }
    out
}

#[tokio::test]
async fn the_scrape_endpoint_counts_what_the_orders_did() {
    ordermesh_platform::metrics::install(&ordermesh_platform::metrics::MetricsConfig {
        service_name: "e2e-metrics".into(),
        otlp_endpoint: None,
        scrape_addr: Some("127.0.0.1:0".parse().unwrap()),
    })
    .unwrap()
    .expect("the first install in this process");
    let addr = ordermesh_platform::metrics::scrape_addr().unwrap();

    let mut platform = Platform::start_embedded(CountingGateway::sandbox()).await.unwrap();
    let api = Api::new(&platform.start_bff(Surface::Both).await.unwrap());
    let product = platform.product(1250, 100).await.unwrap();
    let (token, customer) = platform.client("metrics-client").await.unwrap();
    let mut orders = Vec::new();
    for _ in 0..ORDERS {
        let answer = api
            .post("/api/v1/orders", &token, &order_body(&product.id, 1, "tok_approved"))
            .await;
        answer.assert_status(202);
        let id = answer.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer:?}"))
            .to_owned();
        platform.wait_for(&id, &[OrderStatus::Confirmed], SAGA).await.unwrap();
        orders.push(id);
    }
    // A client asking for an order that is not theirs (404), and a request without a token.
    api.get(&format!("/api/v1/orders/{}", uuid::Uuid::now_v7()), &token)
        .await
        .assert_status(404);
    api.send(reqwest::Method::GET, "/api/v1/orders", None, None, &[])
        .await
        .assert_status(401);

    // The saga's tail (notifications, audit) settles after CONFIRMED, and gauges are sampled:
    // read until the counters agree with the stores, then assert on that reading.
    let mut samples = scrape(addr).await;
    for _ in 0..150 {
        let (outbox, notifications) = stored(&platform).await;
        if disagreements(&samples, &outbox, notifications).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        samples = scrape(addr).await;
    }
    let (outbox, notifications) = stored(&platform).await;
    assert_eq!(disagreements(&samples, &outbox, notifications), Vec::<String>::new());

    // Requests: exactly the orders placed, by route template, status, surface and principal.
    let placed = [
        ("service", "bff"),
        ("http_route", "/api/v1/orders"),
        ("http_request_method", "POST"),
        ("http_response_status_code", "202"),
        ("surface", "both"),
        ("principal", "client"),
    ];
    assert_eq!(
        sum(&samples, "http_server_request_duration_seconds_count", &placed),
        ORDERS as f64
    );
    let foreign = [
        ("http_route", "/api/v1/orders/{id}"),
        ("http_response_status_code", "404"),
        ("principal", "client"),
    ];
    assert_eq!(
        sum(&samples, "http_server_request_duration_seconds_count", &foreign),
        1.0
    );
    let anonymous = [
        ("http_route", "/api/v1/orders"),
        ("http_response_status_code", "401"),
        ("principal", "anonymous"),
    ];
    assert_eq!(
        sum(&samples, "http_server_request_duration_seconds_count", &anonymous),
        1.0
    );
    // RPCs: one PlaceOrder per order, served by order-svc and called by the BFF.
    let place = "/ordermesh.order.v1.OrderService/PlaceOrder";
    let served = [
        ("service", "order-svc"),
        ("rpc_method", place),
        ("rpc_grpc_status_code", "0"),
    ];
    assert_eq!(
        sum(&samples, "rpc_server_duration_seconds_count", &served),
        ORDERS as f64
    );
    let called = [
        ("service", "bff"),
        ("peer", "order-svc"),
        ("rpc_method", place),
        ("rpc_grpc_status_code", "0"),
    ];
    assert_eq!(
        sum(&samples, "rpc_client_duration_seconds_count", &called),
        ORDERS as f64
    );
    // Events: each order was placed once and confirmed once (order-events published by
    // order-svc is at least that), and notification-svc consumed them.
    assert!(
        sum(
            &samples,
            "outbox_published_total",
            &[("service", "order-svc"), ("topic", "order-events")]
        ) >= 2.0 * ORDERS as f64
    );
    assert!(
        sum(
            &samples,
            "events_consumed_total",
            &[("service", "notification-svc"), ("outcome", "processed")]
        ) > 0.0
    );
    assert!(
        notifications >= ORDERS as f64,
        "{notifications} notifications for {ORDERS} orders"
    );
    // Processed events have a lag each; nothing was redelivered or dead-lettered.
    let processed = sum(&samples, "events_consumed_total", &[("outcome", "processed")]);
    assert_eq!(sum(&samples, "events_consumer_lag_seconds_count", &[]), processed);
    assert_eq!(sum(&samples, "events_dead_lettered_total", &[]), 0.0);
    // Each order was confirmed once: one placed → confirmed latency each.
    assert_eq!(
        sum(
            &samples,
            "orders_time_to_confirm_seconds_count",
            &[("service", "order-svc")]
        ),
        ORDERS as f64
    );

    // Every family the dashboards and alerts read is exposed.
    let families: std::collections::BTreeSet<&str> = samples.iter().map(|s| s.family.as_str()).collect();
    for family in [
        "http_server_request_duration_seconds",
        "rpc_server_duration_seconds",
        "rpc_client_duration_seconds",
        "outbox_published",
        "outbox_backlog",
        "outbox_oldest_pending_age_seconds",
        "events_consumed",
        "events_consumer_lag_seconds",
        "db_pool_connections",
        "db_pool_max",
        "cache_requests",
        "notifications_created",
    ] {
        assert!(families.contains(family), "{family} missing from {families:?}");
    }
    for service in SERVICES {
        let service = format!("{service}-svc");
        assert!(
            sum(&samples, "db_pool_max", &[("service", &service)]) >= 1.0,
            "{service} pool"
        );
    }

    // No personal data in any label: the seeded name, e-mail, address, ids.
    let seeded = [
        "Test Client",
        "metrics-client",
        "example.test",
        "Hauptstrasse",
        "Berlin",
        "10115",
        customer.as_str(),
    ];
    for sample in &samples {
        for (key, value) in &sample.labels {
            for needle in seeded
                .iter()
                .chain(orders.iter().map(String::as_str).collect::<Vec<_>>().iter())
            {
                assert!(
                    !value.contains(needle),
                    "{}{{{key}={value:?}}} carries {needle:?}",
                    sample.name
                );
            }
        }
    }
}
