//! The scenarios that load the whole platform (`ordermesh up` as users run it): order intake
//! against pgbench of the same transaction (P3), publishing on against off (P4), idle
//! notification streams against idle keep-alive connections (P5), placed → CONFIRMED on the
//! stream at half the maximum intake (P6), and the embedded default held at 64 clients (P7).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::orders::{self, Intake, OrderRequest};
use crate::pgbench::IntakeBaseline;
use crate::streams::{self, BareServer};
use crate::up::{Profile, Up, UpOptions};

/// What a scenario measured, printed and written as JSON.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub scenario: &'static str,
    /// Human-readable lines: the figure, the baseline, the goal.
    pub lines: Vec<String>,
    pub figures: serde_json::Value,
    pub pass: bool,
}

/// The knobs of a run.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    pub rounds: usize,
    pub seconds: u64,
    pub connections: usize,
    pub streams: usize,
    pub sustain_seconds: u64,
}

fn options(profile: Profile) -> UpOptions {
    UpOptions {
        profile,
        publish: true,
        streams_per_user: 5,
    }
}

/// Stock for any run (well above what the longest run places).
const STOCK: i64 = 1_000_000;

async fn order_request(up: &Up) -> anyhow::Result<OrderRequest> {
    let product = up.stocked_product(STOCK).await?;
    OrderRequest::new(up.bff, &up.client_token()?, &product.id)
}

fn median_by(figures: &[Intake]) -> Intake {
    let mut sorted = figures.to_vec();
    sorted.sort_by(|a, b| a.accepted_per_second.total_cmp(&b.accepted_per_second));
    sorted[sorted.len() / 2]
}

fn intake_line(label: &str, figure: &Intake) -> String {
    format!(
        "  {label:<9} {:>8.0} orders/s  p99 {:>7.1} ms  accepted {}  5xx/errors {}  4xx {}",
        figure.accepted_per_second, figure.p99_ms, figure.accepted, figure.failures, figure.refused
    )
}

fn verdict(pass: bool) -> &'static str {
    if pass { "pass" } else { "MISS" }
}

/// P3: `POST /api/v1/orders` through the BFF on PostgreSQL + NATS + Redis against pgbench of
/// the intake transaction, same client count, alternately. Goal ≥ 0.30.
pub async fn intake_postgres(knobs: Knobs) -> anyhow::Result<Report> {
    let up = Up::start(&options(Profile::Postgres)).await?;
    let request = order_request(&up).await?;
    let baseline = IntakeBaseline::create().await?;
    let duration = Duration::from_secs(knobs.seconds);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..knobs.rounds {
        ours.push(orders::closed_loop(&request, knobs.connections, duration).await);
        // The saga of the orders just taken runs before the baseline's turn, not during it.
        up.settle(Duration::from_secs(60)).await?;
        theirs.push(baseline.run(knobs.connections, duration)?);
    }
    let (ours, theirs) = (median_by(&ours), median_by(&theirs));
    let ratio = ours.accepted_per_second / theirs.accepted_per_second.max(f64::EPSILON);
    let pass = ratio >= 0.30 && ours.failures == 0;
    Ok(Report {
        scenario: "intake-postgres",
        lines: vec![
            intake_line("platform", &ours),
            format!(
                "  baseline  {:>8.0} TPS (pgbench -M prepared, the intake transaction, {} clients)",
                theirs.accepted_per_second, knobs.connections
            ),
            format!("  ratio {ratio:.3}, goal ≥ 0.30 and no 5xx: {}", verdict(pass)),
        ],
        figures: json!({"platform": ours, "pgbench": theirs, "ratio": ratio}),
        pass,
    })
}

/// P4: the same intake with the outbox relays on against off (two platforms, alternately; the
/// saga of each round settles before the next). Goal ≥ 0.90.
pub async fn intake_publishing(knobs: Knobs) -> anyhow::Result<Report> {
    let on = Up::start(&options(Profile::Postgres)).await?;
    let off = Up::start(&UpOptions {
        publish: false,
        ..options(Profile::Postgres)
    })
    .await?;
    let (with, without) = (order_request(&on).await?, order_request(&off).await?);
    let duration = Duration::from_secs(knobs.seconds);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..knobs.rounds {
        ours.push(orders::closed_loop(&with, knobs.connections, duration).await);
        on.settle(Duration::from_secs(60)).await?;
        theirs.push(orders::closed_loop(&without, knobs.connections, duration).await);
    }
    let (ours, theirs) = (median_by(&ours), median_by(&theirs));
    let ratio = ours.accepted_per_second / theirs.accepted_per_second.max(f64::EPSILON);
    let pass = ratio >= 0.90 && ours.failures == 0;
    Ok(Report {
        scenario: "intake-publishing",
        lines: vec![
            intake_line("on", &ours),
            intake_line("off", &theirs),
            format!("  ratio {ratio:.3}, goal ≥ 0.90 and no 5xx: {}", verdict(pass)),
        ],
        figures: json!({"publishing_on": ours, "publishing_off": theirs, "ratio": ratio}),
        pass,
    })
}

/// P5: what one idle notification stream costs `ordermesh up` (embedded: the BFF and
/// notification-svc in one process) against one idle keep-alive connection on bare axum; then
/// ten times as many, to see that memory per stream stays flat. Every measurement is taken on a
/// fresh process: one that held connections before keeps the freed memory and would make the
/// next ones look free.
pub async fn idle_streams(knobs: Knobs) -> anyhow::Result<Report> {
    let options = UpOptions {
        streams_per_user: knobs.streams * 10 + 10,
        ..options(Profile::Embedded)
    };
    let hold = Duration::from_secs(5);
    let platform = async |count: usize| -> anyhow::Result<streams::Held> {
        let up = Up::start(&options).await?;
        let stream = streams::get_request(up.bff, "/api/v1/notifications/stream", Some(&up.client_token()?));
        streams::hold(up.pid(), up.bff, &stream, count, hold).await
    };
    let bare = async || -> anyhow::Result<streams::Held> {
        let server = BareServer::start(streams::free_port()?, b"{}").await?;
        let keep_alive = streams::get_request(server.addr, "/", None);
        streams::hold(server.pid(), server.addr, &keep_alive, knobs.streams, hold).await
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..knobs.rounds {
        ours.push(platform(knobs.streams).await?);
        theirs.push(bare().await?);
    }
    let median = |held: &mut Vec<streams::Held>| {
        held.sort_by(|a, b| a.per_connection_kib.total_cmp(&b.per_connection_kib));
        held[held.len() / 2]
    };
    let (ours, theirs) = (median(&mut ours), median(&mut theirs));
    let many = platform(knobs.streams * 10).await?;
    let ratio = ours.per_connection_kib / theirs.per_connection_kib.max(0.1);
    // Flat: the bigger crowd costs no more per stream (allowing 25 % for allocator noise), and
    // holding it idle does not grow the process (2 %).
    let flat = many.per_connection_kib <= ours.per_connection_kib * 1.25
        && many.rss_later_kib as f64 <= many.rss_held_kib as f64 * 1.02;
    let pass = ratio <= 1.5 && flat;
    Ok(Report {
        scenario: "sse-idle",
        lines: vec![
            format!(
                "  platform  {:>6.1} KiB per idle stream ({} streams)",
                ours.per_connection_kib, ours.count
            ),
            format!(
                "  baseline  {:>6.1} KiB per idle keep-alive connection on bare axum",
                theirs.per_connection_kib
            ),
            format!(
                "  {} streams: {:.1} KiB each; RSS {} MiB held, {} MiB {} s later",
                many.count,
                many.per_connection_kib,
                many.rss_held_kib / 1024,
                many.rss_later_kib / 1024,
                hold.as_secs()
            ),
            format!("  ratio {ratio:.2}×, goal ≤ 1.5× and flat memory: {}", verdict(pass)),
        ],
        figures: json!({"platform": ours, "baseline": theirs, "many": many, "ratio": ratio}),
        pass,
    })
}

/// P6: the maximum intake (closed loop) is measured first; then, on a fresh platform, orders
/// arrive at half that rate (open loop) while a second customer places an order every 50 ms and
/// reads its stream.
/// Goal: p99 from 202 to CONFIRMED on the stream ≤ 50 ms.
pub async fn to_confirmed(profile: Profile, knobs: Knobs) -> anyhow::Result<Report> {
    let duration = Duration::from_secs(knobs.seconds);
    // The maximum on a platform of its own: the backlog it leaves in the consumers downstream
    // of the orders (notifications, audit) must not delay the measured orders.
    let max = {
        let up = Up::start(&options(profile)).await?;
        orders::closed_loop(&order_request(&up).await?, knobs.connections, duration).await
    };
    let up = Up::start(&options(profile)).await?;
    let product = up.stocked_product(STOCK).await?;
    let load = OrderRequest::new(up.bff, &up.client_token()?, &product.id)?;
    let probe = OrderRequest::new(up.bff, &up.probe_token()?, &product.id)?;
    let rate = max.accepted_per_second / 2.0;
    let (background, latency) = tokio::join!(
        orders::open_loop(&load, rate, duration),
        orders::to_confirmed(up.bff, &probe, Duration::from_millis(50), duration)
    );
    let latency = latency?;
    let pass = latency.p99_ms <= 50.0 && latency.confirmed == latency.orders && background.failures == 0;
    let name = match profile {
        Profile::Embedded => "to-confirmed-embedded",
        Profile::Postgres => "to-confirmed-postgres",
    };
    Ok(Report {
        scenario: name,
        lines: vec![
            intake_line("maximum", &max),
            intake_line("half", &background),
            format!(
                "  202 → CONFIRMED on the stream: {} orders, {} confirmed, median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                latency.orders, latency.confirmed, latency.median_ms, latency.p99_ms, latency.max_ms
            ),
            format!("  goal p99 ≤ 50 ms: {}", verdict(pass)),
        ],
        figures: json!({"maximum": max, "background": background, "to_confirmed": latency}),
        pass,
    })
}

/// P7: the embedded default at 64 concurrent clients for `sustain_seconds`: ≥ 500 orders/s,
/// no 5xx, every order settled within 5 s of the load's end; idle RSS ≤ 40 MiB and ready ≤ 1 s.
pub async fn sustained(knobs: Knobs) -> anyhow::Result<Report> {
    let started = Instant::now();
    let up = Up::start(&options(Profile::Embedded)).await?;
    let ready = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_kib = up.rss_kib()?;
    let request = order_request(&up).await?;
    let intake = orders::closed_loop(&request, 64, Duration::from_secs(knobs.sustain_seconds)).await;
    let (took, left) = up.settle(Duration::from_secs(60)).await?;
    let pass = intake.accepted_per_second >= 500.0
        && intake.failures == 0
        && left == 0
        && took <= Duration::from_secs(5)
        && idle_kib <= 40 * 1024
        && ready <= Duration::from_secs(1);
    Ok(Report {
        scenario: "sustained-embedded",
        lines: vec![
            intake_line("64 conns", &intake),
            format!(
                "  settled {:.1} s after the load ({left} left); idle RSS {:.1} MiB; ready {:.2} s after start",
                took.as_secs_f64(),
                idle_kib as f64 / 1024.0,
                ready.as_secs_f64()
            ),
            format!(
                "  goals ≥ 500 orders/s, no 5xx, settled ≤ 5 s, idle ≤ 40 MiB, ready ≤ 1 s: {}",
                verdict(pass)
            ),
        ],
        figures: json!({
            "intake": intake,
            "settle_seconds": took.as_secs_f64(),
            "unsettled": left,
            "idle_rss_kib": idle_kib,
            "ready_seconds": ready.as_secs_f64(),
        }),
        pass,
    })
}
