//! A real browser against the BFF (issue 7): Debian's chromium, headless, driven by
//! playwright-core (`tests/peers/sse_browser.js`; both installed by `scripts/peers.sh`), opens an
//! `EventSource` with a stream ticket on the BFF's own origin and receives a notification that
//! an employee sends meanwhile.

mod bff_common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bff::Surface;
use bff_common::Api;
use ordermesh_e2e::{CountingGateway, Platform};
use ordermesh_platform::auth::Role;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Where `require('playwright-core')` is found: `$NODE_PATH` (exported by scripts/peers.sh),
/// else the peers cache.
fn node_path() -> String {
    std::env::var("NODE_PATH").unwrap_or_else(|_| {
        let cache = std::env::var("ORDERMESH_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/ordermesh"));
        cache.join("npm/node_modules").display().to_string()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_receives_a_notification_over_event_source_with_a_ticket() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let base = platform.start_bff(Surface::Both).await.unwrap();
    let api = Api::new(&base);
    let (grace, customer) = platform.client("browser-grace").await.unwrap();
    let cs = platform.auth.employee("browser-cs", &[Role::CustomerService]);

    let ticket = api
        .post("/api/v1/notifications/stream-ticket", &grace, &json!({}))
        .await;
    ticket.assert_status(200);
    let ticket = ticket.body["ticket"].as_str().unwrap().to_owned();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/sse_browser.js");
    let mut browser = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&base)
        .arg(&ticket)
        .arg("60000")
        .env("NODE_PATH", node_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node (installed by scripts/peers.sh)");
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let stderr = browser.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });

    let mut next_line = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(90), lines.next_line())
            .await
            .expect("the browser reports within 90 s")
            .expect("stdout readable");
        match line {
            Some(line) => serde_json::from_str(&line).unwrap_or_else(|e| panic!("JSON line ({e}): {line}")),
            None => Value::Null,
        }
    };

    // The browser's EventSource is open (so the notification below is live, not replayed).
    let open = next_line().await;
    if open != json!({"open": true}) {
        let status = browser.wait().await;
        panic!(
            "browser did not open the stream: {open} {status:?}\n{}",
            stderr.await.unwrap()
        );
    }

    let sent = api
        .post(
            "/api/v1/notifications",
            &cs,
            &json!({"recipient": {"customerId": customer}, "type": "message",
                    "title": "Hello from the browser test", "body": "Your parcel is on its way",
                    "data": {"order_id": "demo"}}),
        )
        .await;
    sent.assert_status(201);
    let id = sent.body["id"].as_str().unwrap().to_owned();

    let received = next_line().await;
    let status = tokio::time::timeout(Duration::from_secs(30), browser.wait())
        .await
        .expect("the browser exits")
        .unwrap();
    let log = stderr.await.unwrap();
    assert!(status.success(), "browser failed: {status:?}\n{log}");
    println!("chromium received: {received}");
    let event = &received["event"];
    assert_eq!(event["type"], "message", "{received}");
    assert_eq!(event["lastEventId"], id.as_str(), "{received}");
    assert_eq!(event["data"]["id"], id.as_str());
    assert_eq!(event["data"]["title"], "Hello from the browser test");
    assert_eq!(event["data"]["data"]["order_id"], "demo");
    assert!(
        received["userAgent"].as_str().unwrap_or_default().contains("Chrome"),
        "{received}"
    );
    // The ticket was used up by the browser.
    api.send(
        reqwest::Method::GET,
        &format!("/api/v1/notifications/stream?ticket={ticket}"),
        None,
        None,
        &[],
    )
    .await
    .assert_problem(401, Some("unauthorized"));
}
