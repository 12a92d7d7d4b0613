//! One trace from the portal's click to the notification on its stream (issue 18), checked by an
//! OTLP receiver no one here wrote (`tests/peers/otlp_receiver.py`: OpenTelemetry's own
//! `opentelemetry-proto` messages behind a grpcio server). A client places an order through the
//! BFF with a `traceparent` of its own; every span of the saga must be in that ONE trace,
//! parented as the work flowed — on the NATS bus and on the in-process bus — and no span may
//! carry the client's personal data.
//!
//! The whole platform runs in this test's process, so this binary installs the OTLP exporter
//! once, before anything else, and has only this one test.

mod bff_common;

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bff::Surface;
use bff_common::{Api, SseStream, order_body};
use ordermesh_e2e::{CountingGateway, Platform};
use ordermesh_platform::telemetry::{self, LogFormat, TelemetryConfig, TelemetryGuard};
use rand::Rng as _;
use serde_json::{Value, json};

const NAME: &str = "Theodora Tracewell";
const EMAIL: &str = "theodora.tracewell@example.test";
const PHONE: &str = "+4915112345678";
const STREET: &str = "Hauptstrasse 1";

const SERVER: i64 = 2;
const PRODUCER: i64 = 4;
const CONSUMER: i64 = 5;

/// The receiver, as a child process writing what it receives to `out`.
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Receiver {
    fn start() -> Self {
        let python = std::env::var("ORDERMESH_PYTHON")
            .expect("ORDERMESH_PYTHON: run `eval \"$(scripts/peers.sh)\"` first (the README's test command does)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = std::env::temp_dir().join(format!("ordermesh-spans-{}.jsonl", uuid::Uuid::now_v7()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/otlp_receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the OTLP receiver starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "listening", "the receiver did not start");
        Self { child, port, out }
    }

    fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

/// The spans of one trace, by span id.
struct Trace {
    spans: HashMap<String, Value>,
}

impl Trace {
    fn of(all: &[Value], trace_id: &str) -> Self {
        let spans = all
            .iter()
            .filter(|s| s["trace_id"] == trace_id)
            .map(|s| (s["span_id"].as_str().unwrap().to_owned(), s.clone()))
            .collect();
        Self { spans }
    }

    /// The spans named `name` of `kind` whose attribute `key` is `value` (when given).
    fn find(&self, name: &str, kind: i64, attribute: Option<(&str, &str)>) -> Vec<&Value> {
        self.spans
            .values()
            .filter(|s| s["name"] == name && s["kind"] == kind)
            .filter(|s| attribute.is_none_or(|(key, value)| s["attributes"][key] == value))
            .collect()
    }

    fn parent_of<'a>(&'a self, span: &Value) -> Option<&'a Value> {
        self.spans.get(span["parent_span_id"].as_str()?)
    }

    /// The ids of `span`'s parent, its parent's parent, … within the trace.
    fn ancestors(&self, span: &Value) -> Vec<Value> {
        let mut ids = Vec::new();
        let mut current = self.parent_of(span);
        while let Some(parent) = current {
            ids.push(parent["span_id"].clone());
            current = self.parent_of(parent);
        }
        ids
    }

    fn describe(&self) -> String {
        let mut lines: Vec<String> = self
            .spans
            .values()
            .map(|s| {
                let parent = self.parent_of(s).map_or("-".to_owned(), |p| p["name"].to_string());
                format!("{} (kind {}) <- {parent}", s["name"], s["kind"])
            })
            .collect();
        lines.sort();
        lines.join("\n")
    }
}

/// Places one order with `traceparent` and reads its notifications to CONFIRMED on the stream.
async fn place_and_follow(platform: &mut Platform, traceparent: &str) -> String {
    let api = Api::new(&platform.start_bff(Surface::Both).await.unwrap());
    let product = platform.product(1500, 10).await.unwrap();
    let token = platform
        .auth
        .client(&format!("trace-{}", uuid::Uuid::now_v7().simple()));
    let profile = json!({"displayName": NAME, "email": EMAIL, "phone": PHONE,
        "addresses": [bff_common::address()]});
    api.post("/api/v1/customers/me", &token, &profile)
        .await
        .assert_status(201);
    let mut stream = SseStream::notifications(&api, Some(&token), "", &[]).await;
    let placed = api
        .send(
            reqwest::Method::POST,
            "/api/v1/orders",
            Some(&token),
            Some(&order_body(&product.id, 1, "tok_approved")),
            &[("traceparent", traceparent)],
        )
        .await;
    placed.assert_status(202);
    let order_id = placed.body["id"].as_str().unwrap().to_owned();
    loop {
        let event = stream.next_data().await;
        let body = event.json();
        if body["data"]["order_id"] == order_id.as_str() && body["data"]["status"] == "CONFIRMED" {
            return order_id;
        }
    }
}

/// Waits until the receiver holds the trace with a span of the stream's delivery of CONFIRMED
/// (the last thing that happens), flushing the exporter meanwhile.
async fn exported_trace(receiver: &Receiver, telemetry: &TelemetryGuard, trace_id: &str) -> (Trace, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        telemetry.flush();
        let all = receiver.spans();
        let trace = Trace::of(&all, trace_id);
        let payment = trace.find("ordermesh.payment.v1.PaymentService/AuthorizePayment", SERVER, None);
        if !payment.is_empty() && trace.find("send notification", PRODUCER, None).len() >= 3 {
            return (trace, all);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trace is incomplete:\n{}",
            trace.describe()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Asserts the saga's spans are ONE trace, parented as the work flowed.
fn assert_one_trace(trace: &Trace, client_span: &str, bus: &str) {
    let described = trace.describe();
    let one = |spans: Vec<&Value>, what: &str| -> Value {
        assert!(!spans.is_empty(), "no {what} span in:\n{described}");
        spans[0].clone()
    };
    // The gateway's span is the BFF's parent; the BFF's span is PlaceOrder's.
    let bff = one(trace.find("POST /api/v1/orders", SERVER, None), "BFF");
    assert_eq!(
        bff["parent_span_id"], client_span,
        "the BFF continues the gateway's trace"
    );
    assert_eq!(bff["attributes"]["http.route"], "/api/v1/orders");
    assert_eq!(bff["attributes"]["http.response.status_code"], 202);
    assert_eq!(bff["attributes"]["ordermesh.principal.kind"], "client");
    let place = one(
        trace.find("ordermesh.order.v1.OrderService/PlaceOrder", SERVER, None),
        "PlaceOrder",
    );
    assert_eq!(trace.parent_of(&place).unwrap()["span_id"], bff["span_id"]);
    assert_eq!(place["attributes"]["rpc.system"], "grpc");
    // The relay's publish and every consumer of OrderPlaced are children of PlaceOrder.
    let published = one(
        trace
            .find("send order-events", PRODUCER, None)
            .into_iter()
            .filter(|span| span["parent_span_id"] == place["span_id"])
            .collect(),
        "the relay's OrderPlaced",
    );
    assert_eq!(published["attributes"]["messaging.system"], bus);
    let reservation = one(
        trace
            .find(
                "process order-events",
                CONSUMER,
                Some(("messaging.consumer.group.name", "product-svc")),
            )
            .into_iter()
            .filter(|span| span["parent_span_id"] == place["span_id"])
            .collect(),
        "product-svc's OrderPlaced",
    );
    assert_eq!(reservation["attributes"]["messaging.system"], bus);
    // The reservation's event moves the order on in order-svc, whose payment step calls
    // payment-svc: AuthorizePayment descends from both.
    let inventory_step = one(
        trace
            .find(
                "process inventory-events",
                CONSUMER,
                Some(("messaging.consumer.group.name", "order-svc")),
            )
            .into_iter()
            .filter(|span| span["parent_span_id"] == reservation["span_id"])
            .collect(),
        "order-svc's InventoryReserved",
    );
    let authorize = one(
        trace.find("ordermesh.payment.v1.PaymentService/AuthorizePayment", SERVER, None),
        "AuthorizePayment",
    );
    let ancestors = trace.ancestors(&authorize);
    assert!(
        ancestors.contains(&inventory_step["span_id"]) && ancestors.contains(&bff["span_id"]),
        "{described}"
    );
    // notification-svc's handling, then the BFF's delivery on the client's stream.
    let notified = trace.find(
        "process order-events",
        CONSUMER,
        Some(("messaging.consumer.group.name", "notification-svc")),
    );
    assert!(notified.len() >= 2, "{described}");
    let delivered = trace.find("send notification", PRODUCER, None);
    for delivery in &delivered {
        let parent = trace.parent_of(delivery).unwrap();
        assert_eq!(
            parent["attributes"]["messaging.consumer.group.name"], "notification-svc",
            "{described}"
        );
    }
    // ONE trace: every span's parent is in it, except the BFF's (the gateway's span).
    for span in trace.spans.values() {
        if span["span_id"] != bff["span_id"] {
            assert!(
                trace.parent_of(span).is_some(),
                "{} has no parent in:\n{described}",
                span["name"]
            );
        }
    }
}

fn traceparent() -> (String, String, String) {
    let mut rng = rand::thread_rng();
    let trace_id = format!("{:032x}", rng.r#gen::<u128>());
    let span_id = format!("{:016x}", rng.r#gen::<u64>() | 1);
    (format!("00-{trace_id}-{span_id}-01"), trace_id, span_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_is_one_trace_from_the_portal_to_the_stream_on_both_buses() {
    let receiver = Receiver::start();
    let telemetry = telemetry::init(&TelemetryConfig {
        service_name: "ordermesh-e2e".into(),
        log_format: LogFormat::Pretty,
        otlp_endpoint: Some(format!("http://127.0.0.1:{}", receiver.port)),
        log_filter: Some("info".into()),
        metrics_addr: None,
    })
    .unwrap();

    for (mut platform, bus) in [
        (Platform::start(CountingGateway::sandbox()).await.unwrap(), "nats"),
        (
            Platform::start_embedded(CountingGateway::sandbox()).await.unwrap(),
            "in-process",
        ),
    ] {
        let (header, trace_id, client_span) = traceparent();
        place_and_follow(&mut platform, &header).await;
        let (trace, all) = exported_trace(&receiver, &telemetry, &trace_id).await;
        assert_one_trace(&trace, &client_span, bus);
        // No span of any trace carries the client's personal data.
        let exported = serde_json::to_string(&all).unwrap();
        for needle in [NAME, EMAIL, PHONE, STREET] {
            assert!(!exported.contains(needle), "{needle:?} in an exported span");
        }
    }
}
