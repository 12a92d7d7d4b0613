//! schemathesis (PyPI, installed into the peers venv by `scripts/peers.sh`) against the live
//! BFF's OpenAPI document, once with a client token and once with an admin token: no response
//! may be a server error and every response must conform to the documented schema. Its
//! summary is written to the test's stderr unconditionally, so it shows in the CI log.
//!
//! One worker: Python 3.11's `ast` module is not thread-safe, and hypothesis uses it while
//! generating (seen as "AST constructor recursion depth mismatch" with `--workers 2`).
//!
//! Bounded for CI: `--max-examples` (default 20, `SCHEMATHESIS_MAX_EXAMPLES`) and `--max-time`
//! (default 100 s per run, `SCHEMATHESIS_MAX_TIME`). Every operation is exercised, all six
//! services running behind the BFF. `SCHEMATHESIS_ARGS` (whitespace-separated) narrows a local
//! run, e.g. `--include-path-regex orders`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;

use bff::Surface;
use ordermesh_e2e::{CountingGateway, Platform};

/// The `schemathesis` CLI of the peers venv (next to `$ORDERMESH_PYTHON`).
fn schemathesis() -> PathBuf {
    let python = std::env::var("ORDERMESH_PYTHON")
        .expect("ORDERMESH_PYTHON is not set: run `eval \"$(scripts/peers.sh)\"` (scripts/test does)");
    PathBuf::from(python)
        .parent()
        .expect("venv bin directory")
        .join("schemathesis")
}

fn say(text: &str) {
    // Straight to the process's stderr: libtest captures only the print macros.
    let _ = std::io::stderr().write_all(text.as_bytes());
}

async fn run(base: &str, who: &str, token: &str) -> (bool, String) {
    let max_examples = std::env::var("SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| "20".into());
    let max_time = std::env::var("SCHEMATHESIS_MAX_TIME").unwrap_or_else(|_| "100".into());
    let selection = std::env::var("SCHEMATHESIS_ARGS").unwrap_or_default();
    // schemathesis keeps a cache in its working directory: not in the clone.
    let workdir = std::env::temp_dir().join(format!("ordermesh-schemathesis-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&workdir).expect("schemathesis working directory");
    let output = tokio::process::Command::new(schemathesis())
        .current_dir(&workdir)
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--max-examples", &max_examples, "--max-time", &max_time])
        // The notification stream never ends by design (bff_sse.rs covers it).
        .args(["--exclude-path", "/api/v1/notifications/stream"])
        .args(selection.split_whitespace())
        .args(["--seed", "20261122", "--request-timeout", "20"])
        .args(["--no-color", "--suppress-health-check", "all"])
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run schemathesis (is it installed in the peers venv? see tests/peers/requirements.txt)");
    let _ = std::fs::remove_dir_all(&workdir);
    let mut log = format!("\n===== schemathesis as {who} =====\n");
    log.push_str(&String::from_utf8_lossy(&output.stdout));
    log.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_no_server_errors_and_no_schema_violations() {
    let mut platform = Platform::start(CountingGateway::sandbox()).await.unwrap();
    let mut config = platform.bff_config(Surface::Both);
    // Fuzzing is many requests from one principal; the limits are tested elsewhere.
    config.rate_limits.external = 1_000_000;
    config.rate_limits.internal = 1_000_000;
    let base = platform.start_bff_with(config).await.unwrap();
    // Some data to find: a product and a client with a profile.
    platform.product(1500, 10).await.unwrap();
    let (client, _) = platform.client("fuzz-client").await.unwrap();
    let admin = platform.admin.clone();

    let mut failed = Vec::new();
    for (who, token) in [("client", client), ("admin", admin)] {
        let (ok, log) = run(&base, who, &token).await;
        say(&log);
        if !ok {
            failed.push(who);
        }
    }
    assert!(
        failed.is_empty(),
        "schemathesis failed for {failed:?} (its report is above)"
    );
}
