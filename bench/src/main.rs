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

mod load;
mod targets;

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
    /// bff-product-no-tier.
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

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for name in &args.scenarios {
        anyhow::ensure!(
            SCENARIOS.iter().any(|s| s.name == name),
            "unknown scenario {name:?}; known: {}",
            SCENARIOS.map(|s| s.name).join(", ")
        );
    }
    anyhow::ensure!((1..=15).contains(&args.rounds), "--rounds must be 1 to 15");
    anyhow::ensure!((1..=300).contains(&args.seconds), "--seconds must be 1 to 300");
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
    let runtime = tokio::runtime::Runtime::new()?;
    let mut outcomes = Vec::new();
    for scenario in SCENARIOS
        .iter()
        .filter(|s| args.scenarios.is_empty() || args.scenarios.iter().any(|n| n == s.name))
    {
        let shutdown = Shutdown::new();
        let (platform, baseline) = runtime.block_on(prepare(scenario.name, &shutdown))?;
        let outcome = compare(scenario, &platform, &baseline, load, args.rounds)?;
        print(scenario, &outcome);
        outcomes.push(outcome);
        shutdown.trigger();
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&outcomes)?)?;
    }
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.pass).map(|o| o.scenario).collect();
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

fn print(scenario: &Scenario, outcome: &Outcome) {
    let p = outcome.platform_median;
    let b = outcome.baseline_median;
    println!("{} — {}", scenario.name, scenario.what);
    println!(
        "  platform  {:>10.0} req/s  p99 {:>7.2} ms  failures {}",
        p.requests_per_second, p.p99_ms, p.failures
    );
    println!(
        "  baseline  {:>10.0} req/s  p99 {:>7.2} ms  ({})",
        b.requests_per_second, b.p99_ms, scenario.baseline
    );
    let p99_goal = scenario
        .max_p99_ratio
        .map(|max| format!(", p99 ≤ {max}×"))
        .unwrap_or_default();
    println!(
        "  ratio {:.3} (p99 {:.2}×), goal ≥ {:.2}{p99_goal}: {}",
        outcome.ratio,
        outcome.p99_ratio,
        scenario.min_ratio,
        if outcome.pass { "pass" } else { "MISS" }
    );
}
