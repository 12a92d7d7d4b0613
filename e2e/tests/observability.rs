//! The dashboards' queries against a real Prometheus (Debian's, `$ORDERMESH_PROMETHEUS`) that
//! scrapes the platform's `/metrics` after a few orders: each query of
//! `deploy/observability/dashboards/*.json` and each alert expression evaluates without error,
//! and the dashboards' queries return data — so a renamed metric or label fails here, not on a
//! dashboard. Queries that only have data when something fails (dead letters, redeliveries,
//! publish failures, 5xx, RPC errors) must evaluate but may be empty.
//! Its own binary: the meter provider and its endpoint belong to the process.

mod bff_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bff::Surface;
use bff_common::{Api, SseStream, order_body};
use ordermesh_e2e::{CountingGateway, Platform};
use ordermesh_proto::order::OrderStatus;
use serde_json::Value;

const SAGA: Duration = Duration::from_secs(30);

fn observability() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/observability")
}

/// Every `expr` of the dashboards, with the `$service` variable at "all".
fn dashboard_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(observability().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let board: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap().replace("$service", ".*");
                out.push((format!("{} / {}", board["title"], panel["title"]), expr));
            }
        }
    }
    assert!(out.len() >= 20, "{out:?}");
    out
}

fn alert_queries() -> Vec<(String, String)> {
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(observability().join("alerts.yaml")).unwrap()).unwrap();
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            out.push((
                rule["alert"].as_str().unwrap().to_owned(),
                rule["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

/// Data only when something went wrong.
fn failure_only(expr: &str) -> bool {
    [
        "dead_lettered",
        "redelivered",
        "publish_failures",
        "=~\"5..\"",
        "rpc_grpc_status_code!=\"0\"",
    ]
    .iter()
    .any(|needle| expr.contains(needle))
}

struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: std::net::SocketAddr) -> Self {
        let binary = std::env::var("ORDERMESH_PROMETHEUS")
            .expect("ORDERMESH_PROMETHEUS: Debian's prometheus, which scripts/peers.sh installs");
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ordermesh\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(binary)
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The result of `expr` now: `Ok(series)` or the error Prometheus gave.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/query", self.url), &[("query", expr)])
            .map_err(|e| e.to_string())?;
        let response = reqwest::get(url).await.map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(body.to_string());
        }
        Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

#[tokio::test]
async fn a_real_prometheus_evaluates_every_dashboard_query_with_data() {
    ordermesh_platform::metrics::install(&ordermesh_platform::metrics::MetricsConfig {
        service_name: "e2e-observability".into(),
        otlp_endpoint: None,
        scrape_addr: Some("127.0.0.1:0".parse().unwrap()),
    })
    .unwrap()
    .expect("the first install in this process");
    let target = ordermesh_platform::metrics::scrape_addr().unwrap();
    let prometheus = Prometheus::start(target);

    let mut platform = Platform::start_embedded(CountingGateway::sandbox()).await.unwrap();
    let api = Api::new(&platform.start_bff(Surface::Both).await.unwrap());
    let product = platform.product(990, 100).await.unwrap();
    let (token, _customer) = platform.client("observability-client").await.unwrap();
    // An open notification stream for `sse_streams_open`.
    let _stream = SseStream::notifications(&api, Some(&token), "", &[]).await;
    // Orders over a few scrapes, so that rates over the window have two points or more.
    for _ in 0..4 {
        let answer = api
            .post("/api/v1/orders", &token, &order_body(&product.id, 1, "tok_approved"))
            .await;
        answer.assert_status(202);
        let id = answer.body["id"].as_str().unwrap().to_owned();
        platform.wait_for(&id, &[OrderStatus::Confirmed], SAGA).await.unwrap();
        api.get(&format!("/api/v1/products/{}", product.id), &token)
            .await
            .assert_status(200);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    // Evaluated until every dashboard query has data (Prometheus scrapes each second), then
    // asserted on the last evaluation.
    let queries = dashboard_queries();
    let alerts = alert_queries();
    let mut problems = Vec::new();
    for _ in 0..60 {
        problems.clear();
        for (name, expr) in &queries {
            match prometheus.query(expr).await {
                Err(error) => problems.push(format!("{name}: {expr}: {error}")),
                Ok(series) if series.is_empty() && !failure_only(expr) => {
                    problems.push(format!("{name}: no data for {expr}"))
                }
                Ok(_) => {}
            }
        }
        for (name, expr) in &alerts {
            if let Err(error) = prometheus.query(expr).await {
                problems.push(format!("alert {name}: {error}"));
            }
        }
        if problems.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// `promtool check rules` and `promtool test rules` (each alert has a unit test in
/// `alerts.test.yaml`, firing and, for the objectives, quiet cases).
#[test]
fn alert_rules_pass_promtool_and_every_alert_has_a_unit_test() {
    let promtool = std::env::var("ORDERMESH_PROMTOOL")
        .expect("ORDERMESH_PROMTOOL: Debian's promtool, which scripts/peers.sh installs");
    for args in [["check", "rules", "alerts.yaml"], ["test", "rules", "alerts.test.yaml"]] {
        let output = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(observability())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tests = std::fs::read_to_string(observability().join("alerts.test.yaml")).unwrap();
    for (alert, _) in alert_queries() {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has no unit test in alerts.test.yaml"
        );
    }
}
