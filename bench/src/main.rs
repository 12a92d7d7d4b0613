//! `ordermesh-bench`: each scenario loads a piece of the platform and its baseline in the same
//! run, alternately (A B A B A B), and prints the median of each, their ratio, and whether the
//! ratio meets the scenario's goal (issue 12); `--json` writes the same as JSON for comparison
//! across runs. Every run ends by itself (bounded duration); only targets on this machine are
//! loaded. The test suite times nothing: the goals live here.
//!
//! ```sh
//! bench/run                         # every scenario, release build
//! bench/run health get-product      # some of them
//! ```

mod analytics;
mod load;
mod orders;
mod pgbench;
mod scenarios;
mod streams;
mod targets;
mod up;

use std::time::Duration;

use clap::Parser;
use load::{Figure, Load, Target};
use ordermesh_platform::Shutdown;
use ordermesh_platform::auth::{IssuerKind, Role};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(name = "ordermesh-bench", about = "Scenarios against same-run baselines, as ratios")]
struct Args {
    /// Scenarios to run (all when none): health, get-product, get-product-uncached, bff-product,
    /// bff-product-no-tier, intake-postgres, intake-publishing, sse-idle, to-confirmed-embedded,
    /// to-confirmed-postgres, sustained-embedded; and, only when named, the big analytics-1m.
    scenarios: Vec<String>,
    /// Measurements of each side, alternating; the median is quoted.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of each measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Idle notification streams held by `sse-idle` (and ten times as many for flatness).
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Seconds of `sustained-embedded`'s load.
    #[arg(long, default_value_t = 60)]
    sustain_seconds: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// What a scenario compares and the ratio it must reach.
struct Scenario {
    name: &'static str,
    what: &'static str,
    baseline: &'static str,
    /// The platform's throughput must be at least this share of the baseline's.
    min_ratio: f64,
    /// And its p99 at most this multiple of the baseline's, where set.
    max_p99_ratio: Option<f64>,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "health",
        what: "gRPC health Check through the platform's server stack",
        baseline: "bare tonic health Check",
        min_ratio: 0.90,
        max_p99_ratio: None,
    },
    Scenario {
        name: "get-product",
        what: "gRPC GetProduct on product-svc (embedded, admin token)",
        baseline: "bare tonic unary answering the same message",
        min_ratio: 0.75,
        max_p99_ratio: None,
    },
    Scenario {
        name: "get-product-uncached",
        what: "gRPC GetProduct with the token cache off: every call verifies ES256 (before issue 12)",
        baseline: "bare tonic unary answering the same message",
        min_ratio: 0.0,
        max_p99_ratio: None,
    },
    Scenario {
        name: "bff-product",
        what: "GET /api/v1/products/{id} through the BFF (client token)",
        baseline: "bare axum route answering the same JSON bytes",
        min_ratio: 0.40,
        max_p99_ratio: Some(3.0),
    },
    Scenario {
        name: "bff-product-no-tier",
        what: "GET /api/v1/products/{id} through the BFF with its product tier off (every read hops to product-svc)",
        baseline: "bare axum route answering the same JSON bytes",
        min_ratio: 0.0,
        max_p99_ratio: None,
    },
];

#[derive(Debug, Serialize)]
struct Outcome {
    scenario: &'static str,
    platform: Vec<Figure>,
    baseline: Vec<Figure>,
    platform_median: Figure,
    baseline_median: Figure,
    ratio: f64,
    p99_ratio: f64,
    goal: f64,
    pass: bool,
}

/// The scenarios that start the whole platform (see [`scenarios`]), each with its own goals.
const WHOLE_PLATFORM: [&str; 6] = [
    "intake-postgres",
    "intake-publishing",
    "sse-idle",
    "to-confirmed-embedded",
    "to-confirmed-postgres",
    "sustained-embedded",
];

/// Seeds a million orders: run only when named.
const ANALYTICS: &str = "analytics-1m";

fn main() -> anyhow::Result<()> {
    // The baseline server of `sse-idle` is this binary in a process of its own.
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some(streams::BARE_SERVER_FLAG) {
        return streams::serve_bare(
            raw.get(2).map(String::as_str).unwrap_or_default(),
            raw.get(3).map(String::as_str).unwrap_or_default(),
        );
    }
    let args = Args::parse();
    let known: Vec<&str> = SCENARIOS
        .iter()
        .map(|s| s.name)
        .chain(WHOLE_PLATFORM)
        .chain([ANALYTICS])
        .collect();
    for name in &args.scenarios {
        anyhow::ensure!(
            known.contains(&name.as_str()),
            "unknown scenario {name:?}; known: {}",
            known.join(", ")
        );
    }
    anyhow::ensure!((1..=15).contains(&args.rounds), "--rounds must be 1 to 15");
    anyhow::ensure!((1..=300).contains(&args.seconds), "--seconds must be 1 to 300");
    anyhow::ensure!(
        (1..=600).contains(&args.sustain_seconds),
        "--sustain-seconds must be 1 to 600"
    );
    anyhow::ensure!(
        (1..=1000).contains(&args.streams),
        "--streams must be 1 to 1000 (ten times as many are opened too)"
    );
    anyhow::ensure!(
        (1..=1024).contains(&args.connections),
        "--connections must be 1 to 1024"
    );
    ordermesh_platform::install_crypto_provider();
    let load = Load {
        connections: args.connections,
        streams: 10,
        duration: Duration::from_secs(args.seconds),
    };
    let knobs = scenarios::Knobs {
        rounds: args.rounds,
        seconds: args.seconds,
        connections: args.connections,
        streams: args.streams,
        sustain_seconds: args.sustain_seconds,
    };
    let chosen = |name: &str| args.scenarios.is_empty() || args.scenarios.iter().any(|n| n == name);
    let runtime = tokio::runtime::Runtime::new()?;
    let mut reports = Vec::new();
    for scenario in SCENARIOS.iter().filter(|s| chosen(s.name)) {
        let shutdown = Shutdown::new();
        let (platform, baseline) = runtime.block_on(prepare(scenario.name, &shutdown))?;
        let outcome = compare(scenario, &platform, &baseline, load, args.rounds)?;
        let report = report(scenario, outcome)?;
        print(&report);
        reports.push(report);
        shutdown.trigger();
    }
    for name in WHOLE_PLATFORM.into_iter().filter(|n| chosen(n)) {
        let report = runtime.block_on(async {
            match name {
                "intake-postgres" => scenarios::intake_postgres(knobs).await,
                "intake-publishing" => scenarios::intake_publishing(knobs).await,
                "sse-idle" => scenarios::idle_streams(knobs).await,
                "to-confirmed-embedded" => scenarios::to_confirmed(up::Profile::Embedded, knobs).await,
                "to-confirmed-postgres" => scenarios::to_confirmed(up::Profile::Postgres, knobs).await,
                _ => scenarios::sustained(knobs).await,
            }
        })?;
        print(&report);
        reports.push(report);
    }
    if args.scenarios.iter().any(|n| n == ANALYTICS) {
        let report = runtime.block_on(analytics::analytics_1m(args.rounds))?;
        print(&report);
        reports.push(report);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&reports)?)?;
    }
    let failed: Vec<_> = reports.iter().filter(|r| !r.pass).map(|r| r.scenario).collect();
    if failed.is_empty() {
        println!("all goals met");
    } else {
        println!("goals missed: {}", failed.join(", "));
    }
    Ok(())
}

/// Starts the scenario's two targets.
async fn prepare(name: &str, shutdown: &Shutdown) -> anyhow::Result<(Target, Target)> {
    let health = |addr| Target::Grpc {
        addr,
        path: "/grpc.health.v1.Health/Check".into(),
        request: Vec::new(),
        headers: Vec::new(),
    };
    match name {
        "health" => Ok((
            health(targets::platform_health(shutdown).await?),
            health(targets::bare_health(shutdown).await?),
        )),
        "get-product" | "get-product-uncached" | "bff-product" | "bff-product-no-tier" => {
            let issuer = targets::Issuer::start(shutdown).await?;
            // Kept for the process's life: the service's SQLite file lives in it.
            let dir = Box::leak(Box::new(tempfile::tempdir()?));
            let token_cache = name != "get-product-uncached";
            let (product_svc, product) = targets::product_svc(&issuer, dir.path(), token_cache, shutdown).await?;
            if name.starts_with("get-product") {
                let admin = issuer.token(IssuerKind::Employee, "bench-admin", vec![Role::Admin])?;
                let answer = targets::get_product_answer(product_svc, &product.id, &admin).await?;
                let request = prost::Message::encode_to_vec(&ordermesh_proto::product::GetProductRequest {
                    product_id: product.id.clone(),
                });
                let bare = targets::bare_get_product(answer, shutdown).await?;
                let call = |addr, headers| Target::Grpc {
                    addr,
                    path: "/ordermesh.product.v1.ProductService/GetProduct".into(),
                    request: request.clone(),
                    headers,
                };
                Ok((
                    call(product_svc, vec![format!("authorization: Bearer {admin}")]),
                    call(bare, vec![]),
                ))
            } else {
                let client = issuer.token(IssuerKind::Client, "bench-client", vec![])?;
                let bff = targets::bff(&issuer, product_svc, name == "bff-product", shutdown).await?;
                let path = format!("/api/v1/products/{}", product.id);
                let body = targets::get(bff, &path, Some(&client)).await?;
                let bare = targets::bare_axum(body, shutdown).await?;
                let get = |addr, headers| Target::Http {
                    url: format!("http://{addr}{path}"),
                    headers,
                };
                Ok((
                    get(bff, vec![format!("Authorization: Bearer {client}")]),
                    get(bare, vec![]),
                ))
            }
        }
        other => anyhow::bail!("unknown scenario {other}"),
    }
}

/// Runs both sides alternately, `rounds` times each, and compares their medians.
fn compare(
    scenario: &Scenario,
    platform: &Target,
    baseline: &Target,
    load: Load,
    rounds: usize,
) -> anyhow::Result<Outcome> {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..rounds {
        ours.push(platform.run(load)?);
        theirs.push(baseline.run(load)?);
    }
    let (platform_median, baseline_median) = (median(&ours), median(&theirs));
    let ratio = platform_median.requests_per_second / baseline_median.requests_per_second.max(f64::EPSILON);
    let p99_ratio = platform_median.p99_ms / baseline_median.p99_ms.max(f64::EPSILON);
    let pass = ratio >= scenario.min_ratio
        && scenario.max_p99_ratio.is_none_or(|max| p99_ratio <= max)
        && ours.iter().all(|f| f.failures == 0);
    Ok(Outcome {
        scenario: scenario.name,
        platform: ours,
        baseline: theirs,
        platform_median,
        baseline_median,
        ratio,
        p99_ratio,
        goal: scenario.min_ratio,
        pass,
    })
}

/// The run with the median throughput.
fn median(figures: &[Figure]) -> Figure {
    let mut sorted = figures.to_vec();
    sorted.sort_by(|a, b| a.requests_per_second.total_cmp(&b.requests_per_second));
    sorted[sorted.len() / 2]
}

fn print(report: &scenarios::Report) {
    println!("{}", report.scenario);
    for line in &report.lines {
        println!("{line}");
    }
}

/// A load scenario's outcome as a report like the others.
fn report(scenario: &Scenario, outcome: Outcome) -> anyhow::Result<scenarios::Report> {
    let p = outcome.platform_median;
    let b = outcome.baseline_median;
    let p99_goal = scenario
        .max_p99_ratio
        .map(|max| format!(", p99 ≤ {max}×"))
        .unwrap_or_default();
    Ok(scenarios::Report {
        scenario: scenario.name,
        lines: vec![
            format!("  {}", scenario.what),
            format!(
                "  platform  {:>10.0} req/s  p99 {:>7.2} ms  failures {}",
                p.requests_per_second, p.p99_ms, p.failures
            ),
            format!(
                "  baseline  {:>10.0} req/s  p99 {:>7.2} ms  ({})",
                b.requests_per_second, b.p99_ms, scenario.baseline
            ),
            format!(
                "  ratio {:.3} (p99 {:.2}×), goal ≥ {:.2}{p99_goal}: {}",
                outcome.ratio,
                outcome.p99_ratio,
                scenario.min_ratio,
                if outcome.pass { "pass" } else { "MISS" }
            ),
        ],
        pass: outcome.pass,
        figures: serde_json::to_value(&outcome)?,
    })
}
